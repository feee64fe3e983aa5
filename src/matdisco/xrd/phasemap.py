"""Phase mapping: decompose a library of patterns into K basis patterns ("phases").

Two methods:

* ``"nmf"``: scikit-learn's NMF (``X ≈ W H``, ``H`` the K basis patterns).
* ``"gibbs"``: a constrained NMF. Starting from the NMF solution, every sample may use at
  most ``max_phases`` phases (the Gibbs phase rule of a ternary system at fixed
  temperature and pressure allows at most three coexisting phases) and each basis pattern
  is kept at unit maximum; it is refined by multiplicative updates, under which the
  pruned activations stay exactly zero.

Basis patterns are matched to the library's true phases (when known, for evaluation) by
maximum total correlation (Hungarian assignment).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from matdisco import MatdiscoError
from matdisco.xrd.simulate import validate_signals


@dataclass
class PhaseMapResult:
    """Result of :func:`phasemap`.

    Attributes
    ----------
    basis : ndarray (K, L)
        Basis patterns, each scaled to maximum 1.
    weights : ndarray (n_samples, K)
        Activations (phase amounts) of every sample, in the units of the scaled basis.
    method : str
        ``"nmf"`` or ``"gibbs"``.
    reconstruction_error : float
        Relative Frobenius error ``‖X − WH‖ / ‖X‖``.
    """

    basis: np.ndarray
    weights: np.ndarray
    method: str
    reconstruction_error: float


def _scale(w: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = h.max(1, keepdims=True)
    m[m <= 0] = 1.0
    return w * m.T, h / m


def phasemap(patterns: np.ndarray, n_phases: int, method: str = "nmf", *,
             max_phases: int = 3, max_iter: int = 500, seed: int = 0) -> PhaseMapResult:
    """Decompose ``patterns`` (n_samples, L; non-negative) into ``n_phases`` basis patterns.

    Parameters
    ----------
    patterns : array (n_samples, L)
        Library patterns, non-negative, no NaN.
    n_phases : int
        Number of basis patterns K.
    method : {"nmf", "gibbs"}
        Plain NMF or the Gibbs-constrained variant (see module docstring).
    max_phases : int
        Maximum number of phases per sample for ``"gibbs"``.
    max_iter : int
        Iterations of NMF (and of the constrained refinement).
    seed : int
        Random seed of the NMF initialisation.
    """
    from sklearn.decomposition import NMF

    x = validate_signals(patterns, name="phasemap patterns").astype(np.float64)
    if not 1 <= n_phases <= min(x.shape):
        raise MatdiscoError(
            f"n_phases={n_phases} must be between 1 and min(n_samples, length)={min(x.shape)}"
        )
    if method not in ("nmf", "gibbs"):
        raise MatdiscoError(f"unknown phase-mapping method {method!r} (nmf, gibbs)")
    model = NMF(n_components=n_phases, init="nndsvda", max_iter=max_iter, random_state=seed,
                tol=1e-5)
    w = model.fit_transform(x)
    h = model.components_
    w, h = _scale(w, h)
    if method == "gibbs" and max_phases < n_phases:
        eps = 1e-12
        for _ in range(max_iter):
            # prune: keep the max_phases largest activations of every sample
            cut = np.sort(w, 1)[:, -max_phases][:, None]
            w[w < cut] = 0.0
            w *= (x @ h.T) / (w @ h @ h.T + eps)
            h *= (w.T @ x) / (w.T @ w @ h + eps)
            w, h = _scale(w, h)
    err = float(np.linalg.norm(x - w @ h) / max(float(np.linalg.norm(x)), 1e-12))
    return PhaseMapResult(h.astype(np.float32), w.astype(np.float32), method, err)


def match_phases(basis: np.ndarray, true_phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Match basis patterns to true phases by maximum total Pearson correlation.

    Returns
    -------
    assignment : ndarray of int (K_basis,)
        Index of the true phase matched to each basis pattern (-1 when there are more
        basis patterns than true phases).
    correlation : ndarray (K_basis,)
        Correlation of each basis pattern with its match (nan when unmatched).
    """
    b = np.asarray(basis, float)
    t = np.asarray(true_phases, float)
    if b.shape[1] != t.shape[1]:
        raise MatdiscoError(
            f"basis length {b.shape[1]} differs from true-phase length {t.shape[1]}"
        )
    bz = (b - b.mean(1, keepdims=True)) / (b.std(1, keepdims=True) + 1e-12)
    tz = (t - t.mean(1, keepdims=True)) / (t.std(1, keepdims=True) + 1e-12)
    corr = bz @ tz.T / b.shape[1]
    rows, cols = linear_sum_assignment(-corr)
    assign = np.full(len(b), -1, dtype=np.int64)
    cc = np.full(len(b), np.nan)
    assign[rows] = cols
    cc[rows] = corr[rows, cols]
    return assign, cc


def plot_phases(basis: np.ndarray, two_theta: np.ndarray | None = None,
                true: np.ndarray | None = None, correlation: np.ndarray | None = None
                ) -> Any:
    """One panel per basis pattern (scaled to unit maximum), with its matched true phase
    dashed and their correlation in the panel title when given.

    ``true`` rows follow ``basis`` (row ``i`` is the match of basis pattern ``i``); a row
    of NaN (an unmatched basis pattern) is not drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = np.asarray(basis, float)
    x = np.arange(b.shape[1]) if two_theta is None else np.asarray(two_theta, float)
    fig, axes = plt.subplots(len(b), 1, figsize=(7, 1.3 * len(b) + 0.5), sharex=True,
                             squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(x, b[i] / max(float(b[i].max()), 1e-12), color="tab:red", lw=0.9,
                label="extracted")
        if true is not None and np.all(np.isfinite(true[i])):
            t = np.asarray(true[i], float)
            ax.plot(x, t / max(float(t.max()), 1e-12), color="k", lw=0.7, ls="--",
                    label="true (matched)")
        title = f"phase {i}"
        if correlation is not None and np.isfinite(correlation[i]):
            title += f": correlation {float(correlation[i]):.3f} with its true phase"
        elif correlation is not None:
            title += ": no true phase left to match"
        ax.set_title(title, fontsize=8, loc="left")
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("2θ (°)" if two_theta is not None else "index")
    fig.tight_layout()
    return fig


def run_phasemap(input: str | os.PathLike[str], n_phases: int,
                 out: str | os.PathLike[str], *, method: str = "nmf", max_phases: int = 3,
                 seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Phase-map a signal file into a run directory (the ``xrd phasemap`` command).

    Parameters
    ----------
    input : path
        Library ``.npz`` (``X``, optional ``two_theta``, ``true_phases`` and label/name
        columns) or ``.npy``/``.csv`` patterns, read by :func:`matdisco.refine.load_signals`.
    n_phases : int
        Number of basis patterns K.
    out : path
        Run directory. It receives ``phases.npz`` (``X`` = the basis, ``weights``,
        ``two_theta``, and ``true`` = the matched true phase of every basis pattern when
        each has one), ``weights.csv`` (one row per input signal, after its ID columns),
        ``config.json``, ``metrics.json`` and ``phases.png``.
    method, max_phases, seed
        As in :func:`phasemap`.
    overwrite : bool
        Replace a run that ``out`` already holds (it stays in place until the new one is
        complete); without it an existing run is refused before any work.

    Returns
    -------
    dict
        The metrics: method, n_phases, reconstruction_error and, with true phases,
        assignment, correlation (and a ``note`` when some phase matches no true phase).
    """
    import pandas as pd

    from matdisco._io import save_npz
    from matdisco.refine.io import check_ids, load_signals, signal_ids, with_ids
    from matdisco.training import RunDir, prepare_run_dir, publish_run_dir, staged_run_dir

    if method == "gibbs" and max_phases < 1:
        raise MatdiscoError(f"max_phases must be ≥ 1, got {max_phases}")
    input, out = Path(input), Path(out)
    # an existing run (a phase map or any other) is never silently replaced; an
    # overwritten one stays in place until the new phase map is published whole
    prepare_run_dir(out, overwrite=overwrite, can_resume=False, staged=True)
    data = load_signals(input)
    ids = signal_ids(data)
    check_ids(ids, [f"phase{i}" for i in range(n_phases)], input)  # before the work
    res = phasemap(data["X"], n_phases, method=method, max_phases=max_phases, seed=seed)
    arrays = {"X": res.basis, "weights": res.weights}
    if "two_theta" in data:
        arrays["two_theta"] = data["two_theta"]
    metrics: dict[str, Any] = {"method": method, "n_phases": n_phases,
                               "reconstruction_error": res.reconstruction_error}
    matched: np.ndarray | None = None  # the true phase of each basis pattern, if known
    corr: np.ndarray | None = None
    if "true_phases" in data:
        true = np.asarray(data["true_phases"])
        if true.ndim != 2 or true.shape[1] != res.basis.shape[1]:
            raise MatdiscoError(f"{input}: true_phases has shape {true.shape}; expected "
                                f"(K, {res.basis.shape[1]}) like the patterns X")
        assign, corr = match_phases(res.basis, true)
        matched = true[np.clip(assign, 0, None)].astype(float)
        matched[assign < 0] = np.nan  # more basis patterns than true phases
        if (assign >= 0).all():  # `refine evaluate` measures distances to these
            arrays["true"] = matched
        else:
            metrics["note"] = (f"{int((assign < 0).sum())} of the {n_phases} phases match no "
                               "true phase (the library has fewer); phases.npz has no "
                               "'true' array")
        metrics["assignment"] = assign.tolist()
        metrics["correlation"] = [float(c) if np.isfinite(c) else None for c in corr]
    rd = RunDir(staged_run_dir(out))
    try:
        save_npz(rd / "phases.npz", **arrays)
        # one row per input signal, in order, after its label and name/ID columns
        rd.save_table("weights.csv", with_ids(ids, pd.DataFrame(
            res.weights, columns=[f"phase{i}" for i in range(n_phases)]), input))
        rd.write_config({"input": str(input), "n_phases": n_phases, "method": method,
                         "max_phases": max_phases, "seed": seed})
        rd.write_metrics(metrics)
        rd.save_plot("phases", plot_phases(res.basis, data.get("two_theta"), matched, corr))
        publish_run_dir(rd.path, out)
    except BaseException:
        shutil.rmtree(rd.path, ignore_errors=True)
        raise
    return metrics
