"""1D baselines for phase-region classification (after Bunn et al.).

Each detector image is integrated to a 1D pattern with pyFAI, an envelope background is
subtracted, and a scikit-learn classifier (AdaBoost of decision trees, logistic regression
or random forest) is trained, with or without the composition as extra features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco.xrd.detector import DetectorGeometry, validate_image

BASELINES: tuple[str, ...] = ("adaboost", "logreg", "rf")


def integrate_images(images: np.ndarray, geometries: Sequence[DetectorGeometry],
                     npt: int = 500) -> np.ndarray:
    """Azimuthally integrate ``(N, F, H, W)`` images to ``(N, F·npt)`` 1D patterns (pyFAI).

    Frames are integrated with their own geometry and concatenated.
    """
    x = validate_image(images, name="images")
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[1] != len(geometries):
        raise MatdiscoError(f"images have {x.shape[1]} frame(s) but {len(geometries)} "
                            "geometries were given")
    out = np.zeros((len(x), len(geometries) * npt), np.float32)
    for fi, g in enumerate(geometries):
        if tuple(x.shape[-2:]) != tuple(g.shape):
            raise MatdiscoError(f"image size {x.shape[-2:]} differs from the detector {g.shape}")
        ai = g.integrator()
        for i in range(len(x)):
            res = ai.integrate1d(x[i, fi], npt, unit="2th_deg", method=("bbox", "csr", "cython"))
            out[i, fi * npt:(fi + 1) * npt] = np.nan_to_num(res.intensity)
    return out


def envelope_background(patterns: np.ndarray, window: int = 25, iterations: int = 40
                        ) -> np.ndarray:
    """Lower envelope of 1D patterns by iterative clipped smoothing (peak stripping).

    At each step the estimate is replaced by the minimum of itself and its running mean,
    so peaks are stripped while the slowly varying background is followed.
    """
    from scipy.ndimage import uniform_filter1d

    p = np.asarray(patterns, np.float64)
    if p.ndim == 1:
        p = p[None]
    if not np.all(np.isfinite(p)):
        raise MatdiscoError("patterns contain NaN/inf values")
    b = p.copy()
    for _ in range(iterations):
        b = np.minimum(b, uniform_filter1d(b, window, axis=-1, mode="nearest"))
    return b


def subtract_envelope(patterns: np.ndarray, window: int = 25, iterations: int = 40,
                      normalize: bool = True) -> np.ndarray:
    """Patterns minus their envelope background, optionally scaled to maximum 1."""
    p = np.asarray(patterns, np.float64)
    if p.ndim == 1:
        p = p[None]
    out = np.clip(p - envelope_background(p, window, iterations), 0, None)
    if normalize:
        out /= np.maximum(out.max(-1, keepdims=True), 1e-12)
    return out.astype(np.float32)


class PatternClassifier:
    """1D-pattern baseline: envelope subtraction + a scikit-learn classifier.

    Parameters
    ----------
    method : {"adaboost", "logreg", "rf"}
        AdaBoost of decision trees (Bunn et al.), logistic regression or random forest.
    use_composition : bool
        Append the composition (scaled) to the features.
    subtract : bool
        Subtract the envelope background first.
    window, iterations : int
        Envelope settings.
    seed : int
        Random seed.
    """

    def __init__(self, method: str = "adaboost", use_composition: bool = False,
                 subtract: bool = True, window: int = 25, iterations: int = 40,
                 seed: int = 0) -> None:
        self.method = method
        self.use_composition = use_composition
        self.subtract = subtract
        self.window = window
        self.iterations = iterations
        self.seed = seed

    def _features(self, patterns: Any, compositions: Any | None) -> np.ndarray:
        p = np.asarray(patterns, np.float64)
        if p.ndim != 2:
            raise MatdiscoError(f"patterns must be (N, L), got {p.shape}")
        if self.subtract:
            p = subtract_envelope(p, self.window, self.iterations)
        else:
            p = p / np.maximum(p.max(-1, keepdims=True), 1e-12)
        if self.use_composition:
            if compositions is None:
                raise MatdiscoError("use_composition=True needs compositions")
            c = np.asarray(compositions, np.float64)
            if c.shape != (len(p), 3):
                raise MatdiscoError(f"compositions must be ({len(p)}, 3), got {c.shape}")
            p = np.hstack([p, 3.0 * c])
        return p

    def _estimator(self) -> Any:
        from sklearn.ensemble import AdaBoostClassifier, RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.tree import DecisionTreeClassifier

        if self.method == "adaboost":
            return AdaBoostClassifier(DecisionTreeClassifier(max_depth=2,
                                                             random_state=self.seed),
                                      n_estimators=100, random_state=self.seed)
        if self.method == "logreg":
            return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        if self.method == "rf":
            return RandomForestClassifier(300, random_state=self.seed, n_jobs=1)
        raise MatdiscoError(f"unknown baseline {self.method!r} ({', '.join(BASELINES)})")

    def fit(self, patterns: Any, y: Any, compositions: Any | None = None
            ) -> PatternClassifier:
        """Fit on ``(N, L)`` patterns and labels."""
        self.estimator_ = self._estimator().fit(self._features(patterns, compositions),
                                                np.asarray(y))
        return self

    def predict(self, patterns: Any, compositions: Any | None = None) -> np.ndarray:
        """Predicted labels."""
        if not hasattr(self, "estimator_"):
            raise MatdiscoError("PatternClassifier is not fitted")
        return self.estimator_.predict(self._features(patterns, compositions))

    def score(self, patterns: Any, y: Any, compositions: Any | None = None) -> float:
        """Accuracy."""
        return float(np.mean(self.predict(patterns, compositions) == np.asarray(y)))


def cross_validate_baseline(patterns: np.ndarray, y: np.ndarray,
                            compositions: np.ndarray | None = None, *,
                            n_splits: int = 10, max_folds: int | None = None, seed: int = 0,
                            first_fold: int = 0, **params: Any) -> dict[str, Any]:
    """k-fold accuracy (mean, std, folds) of a :class:`PatternClassifier`.

    ``first_fold`` and ``max_folds`` select folds ``first_fold .. first_fold + max_folds - 1``
    of the same split (to run a long cross-validation in parts).
    """
    from matdisco.xrd.padnet import kfold_indices

    y = np.asarray(y)
    accs = []
    stop = None if max_folds is None else first_fold + max_folds
    for tr, te in kfold_indices(y, n_splits, seed)[first_fold:stop]:
        clf = PatternClassifier(seed=seed, **params)
        clf.fit(patterns[tr], y[tr], None if compositions is None else compositions[tr])
        accs.append(clf.score(patterns[te], y[te],
                              None if compositions is None else compositions[te]))
    return {"mean": float(np.mean(accs)), "std": float(np.std(accs)),
            "folds": [float(a) for a in accs]}
