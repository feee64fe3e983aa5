"""Checks of numeric settings shared by the estimators (a setting can come from a
command line, a JSON config or ``--param name=value``, so it can be any value)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from matdisco import MatdiscoError


def check_int(name: str, value: Any, least: int, none_ok: bool = False) -> None:
    """Raise :class:`MatdiscoError` unless ``value`` is an integer ``>= least`` (or
    ``None`` where ``none_ok``)."""
    if none_ok and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        rule = f"an integer >= {least}" + (" or None" if none_ok else "")
        raise MatdiscoError(f"{name} must be {rule}, got {value!r}")


def check_float(name: str, value: Any, least: float = 0.0, strict: bool = False,
                none_ok: bool = False, below: float | None = None) -> None:
    """Raise :class:`MatdiscoError` unless ``value`` is a finite number ``>= least``
    (``> least`` where ``strict``) and ``< below`` (when given), or ``None`` where
    ``none_ok``."""
    if none_ok and value is None:
        return
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.integer,
                                                             np.floating))
          and math.isfinite(float(value))
          and (float(value) > least if strict else float(value) >= least)
          and (below is None or float(value) < below))
    if not ok:
        rule = (f"a finite number {'>' if strict else '>='} {least:g}"
                + (f" and < {below:g}" if below is not None else "")
                + (" or None" if none_ok else ""))
        raise MatdiscoError(f"{name} must be {rule}, got {value!r}")
