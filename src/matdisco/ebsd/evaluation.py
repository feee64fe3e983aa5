"""Metrics, inverse-pole-figure maps, disorientation histograms and CrystalMap output."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from matdisco import MatdiscoError
from matdisco.ebsd.rotations import disorientation_angle

__all__ = ["disorientation_deg", "ipf_colors", "orientation_metrics", "plot_histograms",
           "orientation_table", "plot_ipf_map", "write_crystal_map"]


def disorientation_deg(q_pred: np.ndarray, q_true: np.ndarray) -> np.ndarray:
    """Disorientation angles (degrees, m-3m) between two ``(n, 4)`` quaternion arrays."""
    a = torch.as_tensor(np.asarray(q_pred, dtype=np.float64))
    b = torch.as_tensor(np.asarray(q_true, dtype=np.float64))
    if a.shape != b.shape:
        raise MatdiscoError(f"orientation arrays differ in shape: {tuple(a.shape)} vs "
                            f"{tuple(b.shape)}")
    return disorientation_angle(a, b, degrees=True).numpy()


def orientation_metrics(q_pred: np.ndarray, q_true: np.ndarray,
                        seconds: float | None = None) -> dict[str, float]:
    """Mean/median disorientation, fraction within 1 and 2 degrees, patterns per second."""
    d = disorientation_deg(q_pred, q_true)
    out = {
        "mean_disorientation_deg": float(d.mean()),
        "median_disorientation_deg": float(np.median(d)),
        "frac_within_1deg": float((d <= 1.0).mean()),
        "frac_within_2deg": float((d <= 2.0).mean()),
        "n": int(len(d)),
    }
    if seconds is not None:
        out["patterns_per_s"] = float(len(d) / seconds) if seconds > 0 else float("nan")
    return out


def ipf_colors(quaternions: np.ndarray, direction: str = "z") -> np.ndarray:
    """IPF colours (RGB in [0, 1]) of m-3m orientations along a sample direction."""
    from orix.plot import IPFColorKeyTSL
    from orix.quaternion import Orientation
    from orix.quaternion.symmetry import Oh
    from orix.vector import Vector3d

    vec = {"x": Vector3d.xvector(), "y": Vector3d.yvector(), "z": Vector3d.zvector()}
    if direction not in vec:
        raise MatdiscoError(f"IPF direction must be x, y or z, got {direction!r}")
    key = IPFColorKeyTSL(Oh, direction=vec[direction])
    return key.orientation2color(Orientation(np.asarray(quaternions), symmetry=Oh))


def plot_ipf_map(quaternions: np.ndarray, shape: tuple[int, int], direction: str = "z",
                 title: str | None = None) -> Any:
    """Matplotlib figure of an inverse-pole-figure colour map of an orientation map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = ipf_colors(quaternions, direction)
    if shape[0] * shape[1] != len(rgb):
        raise MatdiscoError(f"map shape {shape} does not hold {len(rgb)} orientations")
    fig, ax = plt.subplots(figsize=(4, 4 * shape[0] / max(shape[1], 1) + 0.5))
    ax.imshow(rgb.reshape(*shape, 3), interpolation="nearest")
    ax.set_title(title or f"IPF-{direction.upper()}")
    ax.set_axis_off()
    return fig


def plot_histograms(disorientations: dict[str, np.ndarray], bins: int = 50) -> Any:
    """Overlayed histograms of disorientation angles (degrees), one per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    hi = max([float(np.max(v)) for v in disorientations.values() if len(v)] + [1.0])
    edges = np.linspace(0.0, hi, bins + 1)
    for name, d in disorientations.items():
        # matplotlib's stubs omit arrays from `bins`, which accepts any array-like
        ax.hist(d, bins=cast(Sequence[float], edges), histtype="step",
                label=f"{name} (mean {np.mean(d):.2f} deg)")
    ax.set_xlabel("disorientation (deg)")
    ax.set_ylabel("patterns")
    ax.legend()
    return fig


def write_crystal_map(path: str | os.PathLike[str], quaternions: np.ndarray,
                      shape: tuple[int, int] | None = None,
                      scores: np.ndarray | None = None, step: float = 1.0) -> Path:
    """Write orientations as an orix CrystalMap (``.ang`` or orix ``.h5``) atomically.

    With ``scores`` (the refinement's NCC scores) the map carries a ``scores`` property;
    in an ``.ang`` file they fill the confidence-index (CI) column that EBSD software reads.
    ``step`` is the scan step (x and y coordinates are ``col * step``, ``row * step``).
    """
    from orix import io as oio

    from matdisco._io import atomic_path
    from matdisco.ebsd.dictionary import crystal_map

    path = Path(path)
    if path.suffix not in (".ang", ".h5"):
        raise MatdiscoError(f"{path}: CrystalMap output must end in .ang or .h5")
    xmap = crystal_map(quaternions, shape, scores, step=step)
    with atomic_path(path) as tmp:
        target = tmp.with_name(tmp.stem + "_w" + path.suffix)
        try:
            extra = ({"confidence_index_prop": "scores"}
                     if scores is not None and path.suffix == ".ang" else {})
            oio.save(str(target), xmap, overwrite=True, **extra)
            os.replace(target, tmp)
        finally:
            target.unlink(missing_ok=True)
    return path


def orientation_table(quaternions: np.ndarray, shape: tuple[int, int] | None = None,
                      scores: np.ndarray | None = None, step: float = 1.0) -> Any:
    """One row per pattern, in input order, of the CrystalMap :func:`write_crystal_map`
    writes for the same arguments: a key back to the patterns and the map.

    Columns: ``index`` (pattern position in the input, from 0), ``row`` and ``col`` (its
    place in the ``(rows, cols)`` map, a single row when ``shape`` is omitted), ``x`` and
    ``y`` (the map's coordinates, as in the ``.ang``), ``qw, qx, qy, qz`` (unit
    quaternion), ``phi1_deg, Phi_deg, phi2_deg`` (Bunge Euler angles, degrees) and
    ``score`` (the refinement's NCC score; empty, NaN, without scores).
    """
    import pandas as pd

    from matdisco.ebsd.dictionary import crystal_map

    xmap = crystal_map(quaternions, shape, scores, step=step)
    n = xmap.size
    cols = shape[1] if shape is not None else n
    row, col = np.divmod(np.arange(n), max(cols, 1))
    q = xmap.rotations.data.reshape(n, 4)  # normalized, as the map stores them
    euler = np.rad2deg(xmap.rotations.to_euler()).reshape(n, 3)
    return pd.DataFrame({
        "index": np.arange(n), "row": row, "col": col,
        # the map's coordinates (orix drops a constant y, i.e. a one-row map: y is 0,
        # as the .ang file writes it)
        "x": col * float(step), "y": row * float(step),
        "qw": q[:, 0], "qx": q[:, 1], "qy": q[:, 2], "qz": q[:, 3],
        "phi1_deg": euler[:, 0], "Phi_deg": euler[:, 1], "phi2_deg": euler[:, 2],
        "score": (np.full(n, np.nan) if scores is None
                  else np.asarray(scores, dtype=float).reshape(n))})
