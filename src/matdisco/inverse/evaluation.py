"""Evaluation of inverse solvers by re-simulation with the task's forward model.

* :func:`resimulation_errors` -- squared error ``mean_d (f(x) - y*)^2`` per proposal.
* :func:`r_t_curve` -- for many targets, the mean over targets of the best-of-T
  re-simulation error (``T = 1`` is the one-proposal error ``resim_mse_multi``).
* :func:`single_target` -- many proposals for one target: mean re-simulation error and
  the time to produce them.
* :func:`sinewave_modes` / :func:`mode_coverage` -- the disconnected components of the
  sinewave level set ``{x : f(x) = y*}``, found numerically on a grid, and the fraction
  of them that receive solutions, with two diversity measures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco.inverse.base import InverseSolver
from matdisco.inverse.tasks import InverseTask, Sinewave


def resimulation_errors(task: InverseTask, x: np.ndarray, y_star: np.ndarray) -> np.ndarray:
    """Per-proposal re-simulation error ``mean_d (f(x) - y*)^2``.

    ``x`` is ``(..., dx)`` and ``y_star`` broadcasts against ``(..., dy)``.
    """
    x = np.asarray(x, dtype=float)
    lead = x.shape[:-1]
    y = task.forward(x.reshape(-1, task.x_dim)).reshape(*lead, task.y_dim)
    return np.mean((y - np.asarray(y_star, dtype=float)) ** 2, axis=-1)


def r_t_curve(solver: InverseSolver, task: InverseTask, targets: np.ndarray,
              ts: tuple[int, ...] = (1, 10, 100)) -> dict[str, Any]:
    """Best-of-T re-simulation error averaged over targets.

    Parameters
    ----------
    solver : fitted solver.
    task : the task whose forward model re-simulates.
    targets : (m, dy) targets.
    ts : proposal budgets T (the largest is drawn once; smaller T use its first T).

    Returns
    -------
    dict
        ``{"T": [...], "r_T": [...], "r_T_std": [...], "seconds": s, "n_targets": m}``.
    """
    targets = np.asarray(targets, dtype=float).reshape(-1, task.y_dim)
    tmax = max(ts)
    x = solver.propose_many(targets, tmax)
    err = resimulation_errors(task, x, targets[:, None, :])
    r, sd = [], []
    for t in ts:
        best = err[:, :t].min(axis=1)
        r.append(float(best.mean()))
        sd.append(float(best.std()))
    return {"T": list(ts), "r_T": r, "r_T_std": sd, "seconds": solver.propose_seconds_,
            "n_targets": len(targets)}


def single_target(solver: InverseSolver, task: InverseTask, n: int = 1000,
                  y_star: np.ndarray | None = None) -> dict[str, Any]:
    """``n`` proposals for one target: mean re-simulation error and time.

    Returns
    -------
    dict
        ``resim_mse_single``, ``seconds`` (to produce the ``n`` proposals),
        ``seconds_per_1000`` (wall clock), ``cpu_seconds_per_1000`` (process CPU time) and
        ``x`` (the proposals), ``y`` (their re-simulated outputs) and ``errors`` (their
        re-simulation errors).
    """
    y = task.single_target if y_star is None else np.asarray(y_star, dtype=float)
    y = np.ravel(y)
    x = solver.propose(y, n)
    secs = float(solver.propose_seconds_ or 0.0)
    cpu = float(solver.propose_cpu_seconds_ or 0.0)
    y_sim = task.forward(x)
    err = np.mean((y_sim - y[None, :]) ** 2, axis=-1)
    return {"resim_mse_single": float(err.mean()), "resim_mse_single_median":
            float(np.median(err)), "seconds": secs, "seconds_per_1000": secs * 1000.0 / n,
            "cpu_seconds_per_1000": cpu * 1000.0 / n, "x": x, "y": y_sim, "errors": err}


def proposals_table(task: InverseTask, x: np.ndarray, y: np.ndarray | None = None,
                    y_star: Any = None) -> Any:
    """Proposals as a data frame: one column per input (:meth:`InverseTask.input_names`),
    the re-simulated outputs (``y_resim``, or ``y0_resim``, ``y1_resim``, ... for several
    outputs) and, with ``y_star``, the re-simulation error ``resim_error``
    (``mean_d (f(x) - y*)^2``). ``y`` is re-simulated when not given."""
    import pandas as pd

    x = np.asarray(x, dtype=float).reshape(-1, task.x_dim)
    y = task.forward(x) if y is None else np.asarray(y, dtype=float).reshape(-1, task.y_dim)
    df = pd.DataFrame(x, columns=task.input_names())
    for i in range(task.y_dim):
        df["y_resim" if task.y_dim == 1 else f"y{i}_resim"] = y[:, i]
    if y_star is not None:
        ys = np.ravel(np.asarray(y_star, dtype=float))
        df["resim_error"] = np.mean((y - ys[None, :]) ** 2, axis=1)
    return df


def sinewave_modes(y_star: float = 1.2, grid: int = 601,
                   margin: float = 0.3) -> tuple[np.ndarray, np.ndarray, int]:
    """Label the disconnected solution modes of the sinewave level set on a grid.

    Each closed level curve ``f = y*`` bounds one component of ``{f >= y*}``; the
    components of the slightly larger set ``{f > y* - margin}`` that contain such a
    component label the neighbourhood of one mode.

    Returns
    -------
    labels : (grid, grid) int array (0 = no mode), indexed ``[i1, i2]``.
    axis : (grid,) grid coordinates on [-1, 1].
    n_modes : int
    """
    from scipy import ndimage

    axis = np.linspace(-1, 1, grid)
    g1, g2 = np.meshgrid(axis, axis, indexing="ij")
    f = np.sin(3 * np.pi * g1) + np.cos(3 * np.pi * g2)
    if not (f.min() < y_star < f.max()):
        raise MatdiscoError(f"sinewave target {y_star} outside the range (-2, 2)")
    labels, n = ndimage.label(f > y_star - margin)
    keep = [lab for lab in range(1, n + 1) if np.any(f[labels == lab] >= y_star)]
    out = np.zeros_like(labels)
    for new, lab in enumerate(keep, start=1):
        out[labels == lab] = new
    return out, axis, len(keep)


def mode_coverage(x: np.ndarray, y_star: float = 1.2, tol: float = 0.05,
                  grid: int = 601) -> dict[str, Any]:
    """Fraction of sinewave solution modes that receive a solution, and diversity.

    A proposal is a solution when ``|f(x) - y*| <= tol``; it belongs to the mode whose
    neighbourhood (see :func:`sinewave_modes`) contains it.

    Returns
    -------
    dict
        ``coverage`` (modes hit / modes), ``n_modes``, ``modes_hit``, ``valid_fraction``,
        ``mode_entropy`` (normalized entropy of the solutions over the modes, 1 = even)
        and ``mean_pairwise_distance`` of the valid solutions.
    """
    x = np.asarray(x, dtype=float).reshape(-1, 2)
    labels, axis, n_modes = sinewave_modes(y_star, grid)
    err = np.abs(Sinewave().forward(x)[:, 0] - y_star)
    valid = err <= tol
    idx = np.clip(np.rint((x + 1) / 2 * (grid - 1)).astype(int), 0, grid - 1)
    lab = labels[idx[:, 0], idx[:, 1]]
    hit_labels = lab[valid & (lab > 0)]
    counts = np.bincount(hit_labels, minlength=n_modes + 1)[1:]
    p = counts / max(counts.sum(), 1)
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(n_modes)) if n_modes > 1 else 0.0
    xv = x[valid]
    if len(xv) > 1:
        from scipy.spatial.distance import pdist

        mpd = float(pdist(xv).mean())
    else:
        mpd = 0.0
    return {"coverage": float((counts > 0).sum() / n_modes), "n_modes": n_modes,
            "modes_hit": int((counts > 0).sum()), "valid_fraction": float(valid.mean()),
            "mode_entropy": entropy, "mean_pairwise_distance": mpd}


# ---------------------------------------------------------------------------- plots
def plot_sinewave_solutions(x: np.ndarray, y_star: float = 1.2, title: str = "") -> Any:
    """Proposals over the sinewave's true level set ``f = y*``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axis = np.linspace(-1, 1, 401)
    g1, g2 = np.meshgrid(axis, axis, indexing="ij")
    f = np.sin(3 * np.pi * g1) + np.cos(3 * np.pi * g2)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.contourf(g1, g2, f, levels=30, cmap="Greys", alpha=0.5)
    ax.contour(g1, g2, f, levels=[y_star], colors="k", linewidths=1.2)
    ax.scatter(x[:, 0], x[:, 1], s=6, c="tab:red", alpha=0.6)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title or f"solutions for y* = {y_star}")
    return fig


def plot_r_t(curves: dict[str, dict[str, Any]], title: str = "") -> Any:
    """Re-simulation error versus the number of proposals T, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, c in curves.items():
        ax.plot(c["T"], c["r_T"], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("T (proposals per target)")
    ax.set_ylabel("r_T (re-simulation MSE)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return fig


def plot_arm(task: Any, x: np.ndarray, y_star: np.ndarray, max_arms: int = 100,
             title: str = "") -> Any:
    """Robotic-arm configurations for one target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = task.joints(x[:max_arms])
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for p in pts:
        ax.plot(p[:, 0], p[:, 1], "-", color="tab:blue", alpha=0.15, lw=1)
        ax.plot(p[-1, 0], p[-1, 1], ".", color="tab:blue", ms=3)
    ax.plot([y_star[0]], [y_star[1]], "r+", ms=12, mew=2)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_aspect("equal")
    ax.set_title(title or f"arm configurations for y* = {tuple(np.round(y_star, 3))}")
    return fig


def plot_cells(x: np.ndarray, y: np.ndarray, y_star: float, size: int = 32,
               n: int = 12, title: str = "") -> Any:
    """Proposed binary unit cells (architecture task) with their re-simulated moduli.

    Each cell is tiled 2 x 2 so that its periodic structure is visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = min(n, len(x))
    cols = min(6, k)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.3 * rows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < k:
            cell = np.asarray(x[i]).reshape(size, size)
            ax.imshow(np.tile(cell, (2, 2)), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(f"E = {float(np.ravel(y[i])[0]):.3f}", fontsize=8)
    fig.suptitle(title or f"proposed cells for E* = {y_star:.3g}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_proposals(task: Any, x: np.ndarray, y_star: np.ndarray,
                   errors: np.ndarray | None = None, title: str = "") -> Any:
    """The proposals for one target, in the task's own picture where it has one.

    Sinewave: over the true level set; robotic arm: the arm configurations; architecture:
    the unit cells. Other tasks: a scatter of the first two inputs (or the input against
    its index for one input) coloured by each proposal's re-simulation error.
    """
    y_star = np.ravel(np.asarray(y_star, dtype=float))
    name = getattr(task, "name", "")
    if name == "sinewave":
        return plot_sinewave_solutions(x, float(y_star[0]), title)
    if name == "robotic_arm":
        return plot_arm(task, x, y_star, title=title)
    if name == "architecture":
        return plot_cells(x, task.forward(x[:12]), float(y_star[0]), title=title)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.asarray(x, dtype=float)
    if errors is None:
        errors = np.ones(len(x))
    err = np.maximum(np.asarray(errors, dtype=float), 1e-12)
    fig, ax = plt.subplots(figsize=(5, 4))
    names = (task.input_names() if hasattr(task, "input_names")
             else [f"x{i}" for i in range(x.shape[1])])
    xs, ys = (x[:, 0], x[:, 1]) if x.shape[1] > 1 else (np.arange(len(x)), x[:, 0])
    sc = ax.scatter(xs, ys, c=np.log10(err), cmap="viridis", s=18)
    fig.colorbar(sc, ax=ax, label="log10 re-simulation error")
    ax.set_xlabel(names[0] if x.shape[1] > 1 else "proposal")
    ax.set_ylabel(names[1] if x.shape[1] > 1 else names[0])
    ax.set_title(title or f"{name}: proposals for y* = {np.round(y_star, 3).tolist()}",
                 fontsize=9)
    fig.tight_layout()
    return fig
