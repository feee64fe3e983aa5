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

from dataclasses import dataclass
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
