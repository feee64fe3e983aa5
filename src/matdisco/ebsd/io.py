"""Readers for users' EBSD data (through kikuchipy) with standard background corrections."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError

__all__ = ["background_correct", "load_patterns", "load_bundled_nickel"]


def background_correct(signal: Any, static: bool = True, dynamic: bool = True,
                       std: float = 8.0) -> Any:
    """Apply kikuchipy's static (stored background) and dynamic (Gaussian) corrections."""
    if static and getattr(signal, "static_background", None) is not None:
        signal.remove_static_background(show_progressbar=False)
    if dynamic:
        signal.remove_dynamic_background(std=std, show_progressbar=False)
    return signal


def _check_cubic(signal: Any, path: Any) -> None:
    xmap = getattr(signal, "xmap", None)
    if xmap is None:
        return
    for _, phase in xmap.phases:
        pg = getattr(phase.point_group, "name", None)
        if pg is not None and pg not in ("m-3m", "432"):
            raise MatdiscoError(
                f"{path}: phase {phase.name!r} has point group {pg}; only cubic m-3m "
                "symmetry is implemented in matdisco.ebsd")


def load_patterns(path: str | os.PathLike[str], static: bool = True, dynamic: bool = True,
                  ) -> tuple[np.ndarray, tuple[int, ...], Any]:
    """Read patterns with kikuchipy (h5ebsd, EMsoft, NORDIF, Oxford .ebsp, ...).

    Returns
    -------
    patterns : ndarray (n, rows, cols) float32
    map_shape : tuple
        Navigation shape (rows, cols) of the scan.
    signal : kikuchipy EBSD
        The corrected signal (with its detector when the file stores one).
    """
    import kikuchipy as kp

    path = Path(path)
    if not path.exists():
        raise MatdiscoError(f"{path}: EBSD file not found")
    try:
        s = kp.load(path)
    except Exception as exc:  # noqa: BLE001 - kikuchipy/rosettasciio raise many types
        raise MatdiscoError(f"{path}: kikuchipy cannot read this file ({exc})") from exc
    if isinstance(s, list):
        s = s[0]
    if not hasattr(s, "remove_dynamic_background"):
        raise MatdiscoError(f"{path}: does not hold EBSD patterns")
    _check_cubic(s, path)
    if s._lazy:
        s.compute()  # in place (HyperSpy's compute() returns None)
    else:
        s = s.deepcopy()
    background_correct(s, static, dynamic)
    nav = tuple(s.axes_manager.navigation_shape[::-1]) or (1,)
    x = np.asarray(s.data, dtype=np.float32).reshape(-1, *s.axes_manager.signal_shape[::-1])
    return x, nav, s


def load_bundled_nickel(static: bool = True, dynamic: bool = True
                        ) -> tuple[np.ndarray, tuple[int, int], Any]:
    """kikuchipy's real 3x3 Ni map (60x60 patterns) after background correction.

    Returns ``(patterns (9, 60, 60), (3, 3), signal)``; ``signal.xmap`` holds the
    orientations shipped with the data and ``signal.detector`` the calibrated PCs.
    """
    import kikuchipy as kp

    s = kp.data.nickel_ebsd_small()
    background_correct(s, static, dynamic)
    x = np.asarray(s.data, dtype=np.float32).reshape(-1, *s.data.shape[-2:])
    return x, (3, 3), s
