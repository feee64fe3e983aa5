"""Distances between refined and true signals, and their summaries."""

from __future__ import annotations

from typing import Any

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


def compare_refinement(classifier: Any, raw: np.ndarray, refined: np.ndarray,
                       y: np.ndarray | None = None, true: np.ndarray | None = None
                       ) -> dict[str, dict[str, Any]]:
    """Raw against refined signals: the classifier's class fractions, its accuracy (with
    labels ``y``) and the distances to the true signals (with ``true``)."""
    n = len(raw)
    if y is not None and np.shape(y) != (n,):
        raise MatdiscoError(f"labels y have shape {np.shape(y)}, expected ({n},) for {n} "
                            "signals")
    if true is not None:
        bad = ~np.isfinite(np.asarray(true, float)).reshape(len(true), -1).all(axis=1)
        if bad.any():
            raise MatdiscoError(f"true signals: row {int(np.flatnonzero(bad)[0]) + 1} contains "
                                "NaN/inf")
    res: dict[str, dict[str, Any]] = {}
    for name, X in (("raw", raw), ("refined", refined)):
        pred = classifier.predict(X)
        m: dict[str, Any] = {"class_fraction": {
            str(c): float((pred == i).mean()) for i, c in enumerate(classifier.class_names_)}}
        if y is not None:
            m["accuracy"] = float((pred == np.asarray(y)).mean())
        if true is not None:
            m.update(summarize_distances(signal_distances(X, true)))
        res[name] = m
    return res


def plot_refinement(raw: np.ndarray, refined: np.ndarray, true: np.ndarray | None = None,
                    two_theta: np.ndarray | None = None, n: int = 6,
                    image_side: int | None = None) -> Any:
    """Raw, refined (and true) signals of the first ``n`` samples.

    1D signals: one panel per sample with the curves overlaid. Images (``image_side``):
    rows of raw, refined (and true) images.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [("raw", raw), ("refined", refined)] + ([("true", true)] if true is not None
                                                    else [])
    n = min(n, len(raw))
    if image_side:
        fig, axes = plt.subplots(len(sets), n, figsize=(n * 0.9, 1.0 * len(sets) + 0.3),
                                 squeeze=False)
        for r, (name, X) in enumerate(sets):
            for i in range(n):
                axes[r, i].imshow(np.asarray(X[i]).reshape(image_side, image_side),
                                  cmap="gray_r")
                axes[r, i].axis("off")
            axes[r, 0].set_title(name, fontsize=8, loc="left")
        return fig
    x = np.arange(raw.shape[1]) if two_theta is None else np.asarray(two_theta)
    fig, axes = plt.subplots(n, 1, figsize=(7, 1.5 * n + 0.4), sharex=True, squeeze=False)
    styles = {"raw": dict(color="0.6", lw=0.8), "refined": dict(color="tab:red", lw=0.9),
              "true": dict(color="k", lw=0.7, ls="--")}
    for i in range(n):
        ax = axes[i, 0]
        for name, X in sets:
            ax.plot(x, np.asarray(X[i]), label=name, **styles[name])
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, ncol=len(sets), loc="upper right")
    axes[-1, 0].set_xlabel("2θ (°)" if two_theta is not None else "index")
    fig.tight_layout()
    return fig
