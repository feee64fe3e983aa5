"""Random Forest baselines (RF-Comp, RF-Phys) stored without pickle.

The fitted scikit-learn trees are exported to flat arrays in a ``.safetensors`` file and
predicted with a vectorized NumPy traversal, so loading a model never unpickles anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor

from matdisco import MatdiscoError
from matdisco.models.neural import _check_xy


class ForestRegressor(BaseEstimator, RegressorMixin):
    """Random forest regression (scikit-learn) with safetensors export.

    Parameters
    ----------
    n_estimators : int
        Number of trees.
    max_features : float, int or str
        Features considered per split (scikit-learn's meaning).
    min_samples_leaf : int
        Minimum samples per leaf.
    n_jobs : int
        Parallel jobs for fitting.
    seed : int
        Random state.
    """

    def __init__(self, n_estimators: int = 100, max_features: Any = 1.0,
                 min_samples_leaf: int = 1, n_jobs: int = -1, seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.n_jobs = n_jobs
        self.seed = seed

    def check_params(self) -> None:
        """Refuse bad hyper-parameters with a :class:`~matdisco.MatdiscoError` naming the
        setting (call it before anything is written)."""
        for name in ("n_estimators", "min_samples_leaf"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise MatdiscoError(f"forest setting {name}={value!r} must be an integer >= 1")
        mf = self.max_features
        ok = (mf is None or mf in ("sqrt", "log2")
              or (isinstance(mf, int | np.integer) and not isinstance(mf, bool) and mf >= 1)
              or (isinstance(mf, float) and 0.0 < mf <= 1.0))
        if not ok:
            raise MatdiscoError(f"forest setting max_features={mf!r} must be an integer >= 1, "
                                "a fraction in (0, 1], 'sqrt', 'log2' or None")

    def fit(self, X: Any, y: Any, **_: Any) -> ForestRegressor:
        """Fit the forest and export its trees to arrays."""
        self.check_params()
        X, y = _check_xy(X, y)
        rf = RandomForestRegressor(n_estimators=self.n_estimators,
                                   max_features=self.max_features,
                                   min_samples_leaf=self.min_samples_leaf,
                                   n_jobs=self.n_jobs, random_state=self.seed)
        rf.fit(X, y)
        self._export(rf)
        self.n_features_in_ = X.shape[1]
        return self

    def _export(self, rf: RandomForestRegressor) -> None:
        offs, left, right, feat, thr, val = [0], [], [], [], [], []
        for est in rf.estimators_:
            t = est.tree_
            base = offs[-1]
            leaf = t.children_left < 0
            left.append(np.where(leaf, -1, t.children_left + base))
            right.append(np.where(leaf, -1, t.children_right + base))
            feat.append(np.where(leaf, 0, t.feature))
            thr.append(t.threshold)
            val.append(t.value[:, 0, 0])
            offs.append(base + t.node_count)
        self.roots_ = np.array(offs[:-1], dtype=np.int64)
        self.left_ = np.concatenate(left).astype(np.int64)
        self.right_ = np.concatenate(right).astype(np.int64)
        self.feature_ = np.concatenate(feat).astype(np.int64)
        self.threshold_ = np.concatenate(thr).astype(np.float64)
        self.value_ = np.concatenate(val).astype(np.float64)

    def predict_trees(self, X: Any) -> np.ndarray:
        """Per-tree predictions, shape (n_trees, n_samples)."""
        if not hasattr(self, "roots_"):
            raise MatdiscoError("the model is not fitted")
        X, _ = _check_xy(X)
        if X.shape[1] != self.n_features_in_:
            raise MatdiscoError(
                f"X has {X.shape[1]} features, the model was trained on {self.n_features_in_}"
            )
        Xd = X.astype(np.float32)
        out = np.empty((len(self.roots_), len(X)))
        rows = np.arange(len(X))
        # scikit-learn compares the float32 feature with the float64 threshold: for a
        # float32 x, ``x <= t`` is ``x <= t32`` with t32 the largest float32 <= t (a plain
        # cast may round up, sending a value just above the threshold to the left)
        thr32 = self.threshold_.astype(np.float32)
        up = thr32.astype(np.float64) > self.threshold_
        thr32[up] = np.nextafter(thr32[up], np.float32(-np.inf))
        for i, root in enumerate(self.roots_):
            node = np.full(len(X), root, dtype=np.int64)
            active = self.left_[node] >= 0
            while active.any():
                n = node[active]
                go_left = Xd[rows[active], self.feature_[n]] <= thr32[n]
                node[active] = np.where(go_left, self.left_[n], self.right_[n])
                active = self.left_[node] >= 0
            out[i] = self.value_[node]
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Mean prediction of the trees."""
        return self.predict_trees(X).mean(axis=0)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tree arrays for ``.safetensors``."""
        return {
            "rf.roots": torch.from_numpy(self.roots_), "rf.left": torch.from_numpy(self.left_),
            "rf.right": torch.from_numpy(self.right_),
            "rf.feature": torch.from_numpy(self.feature_),
            "rf.threshold": torch.from_numpy(self.threshold_),
            "rf.value": torch.from_numpy(self.value_),
            "rf.n_features": torch.tensor([self.n_features_in_]),
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           expected_features: int | None = None,
                           source: str = "weights") -> ForestRegressor:
        """Rebuild from :meth:`state_tensors`, validating the arrays."""
        need = ["rf.roots", "rf.left", "rf.right", "rf.feature", "rf.threshold", "rf.value",
                "rf.n_features"]
        missing = [k for k in need if k not in tensors]
        if missing:
            raise MatdiscoError(f"{source}: not a forest weights file (missing {missing})")
        self.roots_ = tensors["rf.roots"].numpy()
        self.left_ = tensors["rf.left"].numpy()
        self.right_ = tensors["rf.right"].numpy()
        self.feature_ = tensors["rf.feature"].numpy()
        self.threshold_ = tensors["rf.threshold"].numpy()
        self.value_ = tensors["rf.value"].numpy()
        self.n_features_in_ = int(tensors["rf.n_features"][0])
        n = len(self.value_)
        ok = (len(self.left_) == n == len(self.right_) == len(self.feature_)
              == len(self.threshold_)
              and (self.left_ < n).all() and (self.right_ < n).all()
              and (self.feature_ >= 0).all() and (self.feature_ < self.n_features_in_).all()
              and (self.roots_ >= 0).all() and (self.roots_ < n).all()
              and np.isfinite(self.value_).all())
        if not ok:
            raise MatdiscoError(f"{source}: corrupt forest arrays")
        if expected_features is not None and expected_features != self.n_features_in_:
            raise MatdiscoError(
                f"{source}: forest expects {self.n_features_in_} features, got "
                f"{expected_features}"
            )
        return self
