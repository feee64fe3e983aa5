"""Discrete-wavelet denoising baseline (PyWavelets)."""

from __future__ import annotations

import numpy as np

from matdisco import MatdiscoError


def wavelet_denoise(x: np.ndarray, wavelet: str = "db4", level: int | None = None,
                    mode: str = "soft", clip_negative: bool = True) -> np.ndarray:
    """Denoise signals by thresholding their wavelet detail coefficients.

    Uses the universal threshold ``σ √(2 ln n)`` with ``σ`` estimated from the median
    absolute deviation of the finest detail coefficients (VisuShrink).

    Parameters
    ----------
    x : array (n, L) or (L,)
        Signals.
    wavelet : str
        PyWavelets wavelet name.
    level : int, optional
        Decomposition level (default: the maximum useful level, at most 5).
    mode : {"soft", "hard"}
        Thresholding mode.
    clip_negative : bool
        Clip the result at zero (intensities).
    """
    import pywt

    a = np.atleast_2d(np.asarray(x, float))
    if wavelet not in pywt.wavelist():
        raise MatdiscoError(f"unknown wavelet {wavelet!r}")
    n = a.shape[1]
    lev = level if level is not None else min(5, pywt.dwt_max_level(n, wavelet))
    out = np.empty_like(a)
    for i, s in enumerate(a):
        coeffs = pywt.wavedec(s, wavelet, level=lev)
        sigma = np.median(np.abs(coeffs[-1])) / 0.6745
        thr = sigma * np.sqrt(2 * np.log(n))
        coeffs = [coeffs[0]] + [pywt.threshold(c, thr, mode=mode) for c in coeffs[1:]]
        out[i] = pywt.waverec(coeffs, wavelet)[:n]
    if clip_negative:
        out = np.clip(out, 0, None)
    return out if np.ndim(x) == 2 else out[0]
