"""Distances between refined and true signals, and their summaries."""

from __future__ import annotations

import numpy as np

from matdisco import MatdiscoError


def _check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.atleast_2d(np.asarray(a, float))
    b = np.atleast_2d(np.asarray(b, float))
    if a.shape != b.shape:
        raise MatdiscoError(f"signal arrays differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _maxnorm(a: np.ndarray) -> np.ndarray:
    m = a.max(1, keepdims=True)
    return a / np.where(m > 0, m, 1.0)


def signal_distances(pred: np.ndarray, true: np.ndarray, eps: float = 1e-6
                     ) -> dict[str, np.ndarray]:
    """Per-signal distances of ``pred`` to ``true``.

    Both are scaled to maximum 1 first. Returns arrays of length ``n``:

    * ``l1``: mean absolute difference;
    * ``l2``: root-mean-square difference;
    * ``kl``: ``KL(true ‖ pred)`` of the signals normalised to sum 1 (``eps`` added);
    * ``ncc``: normalised cross-correlation at zero lag (Pearson correlation, higher is
      better).
    """
    p, t = _check(pred, true)
    p, t = _maxnorm(np.clip(p, 0, None)), _maxnorm(np.clip(t, 0, None))
    l1 = np.abs(p - t).mean(1)
    l2 = np.sqrt(((p - t) ** 2).mean(1))
    pp = (p + eps) / (p + eps).sum(1, keepdims=True)
    tt = (t + eps) / (t + eps).sum(1, keepdims=True)
    kl = (tt * np.log(tt / pp)).sum(1)
    pz = p - p.mean(1, keepdims=True)
    tz = t - t.mean(1, keepdims=True)
    ncc = (pz * tz).sum(1) / np.sqrt((pz ** 2).sum(1) * (tz ** 2).sum(1) + 1e-12)
    return {"l1": l1, "l2": l2, "kl": kl, "ncc": ncc}


def summarize_distances(d: dict[str, np.ndarray]) -> dict[str, float]:
    """Sums and medians of :func:`signal_distances` (``l1_sum``, ``l1_median``, ...)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        out[f"{k}_sum"] = float(np.sum(v))
        out[f"{k}_median"] = float(np.median(v))
    return out
