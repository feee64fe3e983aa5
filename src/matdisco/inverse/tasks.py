"""Benchmark tasks of inverse design, each with a true (or oracle) forward model.

Every task exposes ``sample_prior(n, seed)``, ``forward(x)``, the input bounds
(``lower``, ``upper``), the dimensions (``x_dim``, ``y_dim``), the single target used in
the one-target benchmark (``single_target``) and ``dataset(n, seed)``.

* :class:`Sinewave` -- ``y = sin(3 pi x1) + cos(3 pi x2)`` on ``[-1, 1]^2``.
* :class:`RoboticArm` -- a planar arm on a vertical rail (Kruse et al. 2021).
* :class:`Ballistics` -- a throw under gravity and linear air drag (Kruse et al. 2021).
* :class:`Architecture` -- 32 x 32 binary unit cell -> effective Young's modulus from
  periodic FE homogenization (:mod:`matdisco.inverse.fem`).
* :class:`MoS2Bandgap` -- real DFT data; re-simulation uses an *oracle surrogate*
  (an extra-trees ensemble fitted on all the data), not DFT.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def cache_dir() -> Path:
    """Cache folder for generated data sets (``$MATDISCO_CACHE`` or ``~/.cache/matdisco``)."""
    root = os.environ.get("MATDISCO_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "matdisco"
    return path / "inverse"


class InverseTask:
    """Base class of the inverse-design benchmark tasks.

    Attributes
    ----------
    name : str
        Task name used in benchmark records.
    x_dim, y_dim : int
        Input and target dimensions.
    lower, upper : ndarray
        Box bounds of the inputs; every solver clips its proposals into them.
    single_target : ndarray
        The target of the one-target (1,000 solutions) benchmark.
    oracle : bool
        True when ``forward`` is a surrogate rather than the true simulator.
    binary_inputs : bool
        True when inputs are pixels that ``forward`` rounds to {0, 1}.
    """

    name: str = "task"
    x_dim: int = 0
    y_dim: int = 0
    oracle: bool = False
    binary_inputs: bool = False
    #: architecture of the forward surrogate that suits the task ("mlp" or "cnn")
    surrogate: str = "mlp"
    #: names of the inputs where they have physical ones (see :meth:`input_names`)
    x_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.lower = np.zeros(self.x_dim)
        self.upper = np.ones(self.x_dim)
        self.single_target = np.zeros(self.y_dim)

    # -- to implement ---------------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def _forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------
    def sample_prior(self, n: int, seed: int | np.random.Generator | None = 0) -> np.ndarray:
        """Draw ``n`` inputs from the prior (truncated to the bounds)."""
        if int(n) <= 0:
            raise MatdiscoError(f"{self.name}: n must be positive, got {n}")
        rng = _rng(seed)
        out = self._sample(int(n), rng)
        for _ in range(100):
            bad = ~self.in_bounds(out)
            if not bad.any():
                break
            out[bad] = self._sample(int(bad.sum()), rng)
        return np.clip(out, self.lower, self.upper)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """True forward model: ``(n, x_dim) -> (n, y_dim)``."""
        x = np.asarray(x, dtype=float)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.x_dim:
            raise MatdiscoError(
                f"{self.name}: inputs must have shape (n, {self.x_dim}), got {x.shape}"
            )
        if not np.all(np.isfinite(x)):
            row = int(np.where(~np.isfinite(x).all(axis=1))[0][0])
            raise MatdiscoError(f"{self.name}: input row {row + 1} contains NaN or inf")
        return np.asarray(self._forward(x), dtype=float).reshape(len(x), self.y_dim)

    def input_names(self) -> list[str]:
        """Column names of the inputs: ``x_names`` where the task has them (MoS2: ``a, b,
        c, alpha, beta, gamma, field``), else ``x0, x1, ...``."""
        if len(self.x_names) == self.x_dim:
            return list(self.x_names)
        return [f"x{i}" for i in range(self.x_dim)]

    def in_bounds(self, x: np.ndarray) -> np.ndarray:
        """Boolean mask of rows inside the box bounds."""
        return np.all((x >= self.lower) & (x <= self.upper), axis=1)

    def dataset(self, n: int = 10_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Training pairs ``(X, Y)`` drawn from the prior and the forward model."""
        x = self.sample_prior(n, seed)
        return x, self.forward(x)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (constants, bounds, target)."""
        return {"task": self.name, "x_dim": self.x_dim, "y_dim": self.y_dim,
                **({"x_names": list(self.x_names)} if self.x_names else {}),
                "lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "single_target": np.asarray(self.single_target).tolist(),
                "oracle": self.oracle}


class Sinewave(InverseTask):
    """``y = sin(3 pi x1) + cos(3 pi x2)``, ``x ~ U([-1, 1]^2)``; target ``y* = 1.2``."""

    name = "sinewave"
    x_dim = 2
    y_dim = 1

    def __init__(self) -> None:
        super().__init__()
        self.lower = -np.ones(2)
        self.upper = np.ones(2)
        self.single_target = np.array([1.2])

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(n, 2))

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return (np.sin(3 * np.pi * x[:, 0]) + np.cos(3 * np.pi * x[:, 1]))[:, None]


class RoboticArm(InverseTask):
    """Planar arm on a vertical rail (Kruse et al., 2021).

    ``x = (height, theta1, theta2, theta3)`` with prior
    ``N(0, diag(1/16, 1/4, 1/4, 1/4))`` truncated to +-4 standard deviations; arm lengths
    0.5, 0.5, 1.0; ``y = (horizontal, vertical)`` position of the end point with
    ``y1 = sum_i l_i cos(phi_i)``, ``y2 = h + sum_i l_i sin(phi_i)``,
    ``phi_i = theta_1 + ... + theta_i``. Target ``y* = (1.5, 0)``.
    """

    name = "robotic_arm"
    x_dim = 4
    y_dim = 2
    lengths = (0.5, 0.5, 1.0)
    sigmas = np.array([0.25, 0.5, 0.5, 0.5])

    def __init__(self) -> None:
        super().__init__()
        self.lower = -4 * self.sigmas
        self.upper = 4 * self.sigmas
        self.single_target = np.array([1.5, 0.0])

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(size=(n, 4)) * self.sigmas

    def joints(self, x: np.ndarray) -> np.ndarray:
        """Positions of the rail joint, the two elbows and the end point: ``(n, 4, 2)``."""
        x = np.asarray(x, dtype=float).reshape(-1, 4)
        phi = np.cumsum(x[:, 1:], axis=1)
        pts = [np.stack([np.zeros(len(x)), x[:, 0]], axis=1)]
        for i, ln in enumerate(self.lengths):
            step = ln * np.stack([np.cos(phi[:, i]), np.sin(phi[:, i])], axis=1)
            pts.append(pts[-1] + step)
        return np.stack(pts, axis=1)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return self.joints(x)[:, -1, :]


class Ballistics(InverseTask):
    """A throw under gravity and linear air drag (Kruse et al., 2021).

    ``x = (x1, x2, angle, speed)``: start position (horizontal ``x1 ~ N(0, 1/4)``, height
    ``x2 ~ N(3/2, 1/4)``), angle ``~ U(9 deg, 72 deg)`` (radians) and speed
    ``~ Poisson(15)``. The trajectory with drag force ``-k v`` is analytic:

    ``x(t) = x1 + (m v cos a / k) (1 - exp(-k t / m))``,
    ``y(t) = x2 - (m g / k) t + (m / k) (v sin a + m g / k) (1 - exp(-k t / m))``;

    the landing time ``y(t) = 0`` is found by bisection and ``y = x(t_land)``.
    Constants: ``g = 9.81 m/s^2``, ``m = 0.2 kg``, ``k = 0.25 kg/s``. Bounds: ``x1`` in
    ``[-2, 2]``, ``x2`` in ``[0, 3.5]`` (the prior is truncated so the throw starts above
    ground), angle in ``[9, 72]`` degrees, speed in ``[1, 35]`` (treated as continuous by
    the solvers). Target ``y* = 5``.
    """

    name = "ballistics"
    x_dim = 4
    y_dim = 1
    g = 9.81
    m = 0.2
    k = 0.25

    def __init__(self) -> None:
        super().__init__()
        self.lower = np.array([-2.0, 0.0, math.radians(9.0), 1.0])
        self.upper = np.array([2.0, 3.5, math.radians(72.0), 35.0])
        self.single_target = np.array([5.0])

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([
            rng.normal(0.0, 0.5, n),
            rng.normal(1.5, 0.5, n),
            rng.uniform(math.radians(9.0), math.radians(72.0), n),
            rng.poisson(15, n).astype(float),
        ], axis=1)

    def _height(self, t: np.ndarray, x2: np.ndarray, vy: np.ndarray) -> np.ndarray:
        mk = self.m / self.k
        return x2 - mk * self.g * t + mk * (vy + mk * self.g) * (1 - np.exp(-t / mk))

    def landing_time(self, x: np.ndarray) -> np.ndarray:
        """Time at which the projectile reaches height 0 (bisection, 80 halvings)."""
        mk = self.m / self.k
        x2 = np.maximum(x[:, 1], 0.0)
        vy = x[:, 3] * np.sin(x[:, 2])
        # y(t) <= x2 + mk (vy + mk g) - mk g t, so this upper bound lands below ground
        hi = (x2 + mk * (np.abs(vy) + mk * self.g)) / (mk * self.g) + 1.0
        lo = np.zeros_like(hi)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = self._height(mid, x2, vy) > 0
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        return 0.5 * (lo + hi)

    def trajectory(self, x: np.ndarray, n_points: int = 50) -> np.ndarray:
        """Sampled trajectories ``(n, n_points, 2)`` up to landing."""
        x = np.asarray(x, dtype=float).reshape(-1, 4)
        t = self.landing_time(x)[:, None] * np.linspace(0, 1, n_points)[None, :]
        mk = self.m / self.k
        vx = (x[:, 3] * np.cos(x[:, 2]))[:, None]
        vy = (x[:, 3] * np.sin(x[:, 2]))[:, None]
        px = x[:, :1] + mk * vx * (1 - np.exp(-t / mk))
        py = self._height(t, np.maximum(x[:, 1:2], 0.0), vy)
        return np.stack([px, py], axis=2)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        t = self.landing_time(x)
        mk = self.m / self.k
        return (x[:, 0] + mk * x[:, 3] * np.cos(x[:, 2]) * (1 - np.exp(-t / mk)))[:, None]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"g": self.g, "m": self.m, "k": self.k})
        return d


class Architecture(InverseTask):
    """32 x 32 binary unit cell (1,024 inputs, 1 = solid) -> effective Young's modulus.

    The modulus (in units of the solid's, direction x) comes from the periodic
    plane-stress FE homogenization of :mod:`matdisco.inverse.fem` with void stiffness
    ``1e-3``. Prior: a periodic Gaussian-smoothed random field thresholded so that the
    porosity is ``U(0.25, 0.75)``. ``forward`` rounds inputs at 0.5.
    """

    name = "architecture"
    binary_inputs = True
    surrogate = "cnn"
    size = 32
    x_dim = 32 * 32
    y_dim = 1

    def __init__(self, smoothing: float = 2.0) -> None:
        super().__init__()
        self.smoothing = smoothing
        self.lower = np.zeros(self.x_dim)
        self.upper = np.ones(self.x_dim)
        self.single_target = np.array([0.15])
        self.seconds_per_solve: float | None = None

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        from scipy.ndimage import gaussian_filter

        out = np.empty((n, self.x_dim))
        for i in range(n):
            field = gaussian_filter(rng.normal(size=(self.size, self.size)), self.smoothing,
                                    mode="wrap")
            porosity = rng.uniform(0.25, 0.75)
            out[i] = (field > np.quantile(field, porosity)).ravel()
        return out

    def _forward(self, x: np.ndarray) -> np.ndarray:
        from matdisco.inverse.fem import effective_youngs_modulus

        t0 = time.perf_counter()
        cells = x.reshape(-1, self.size, self.size)
        y = np.array([effective_youngs_modulus(c) for c in cells])
        self.seconds_per_solve = (time.perf_counter() - t0) / max(len(cells), 1)
        return y[:, None]

    def dataset(self, n: int = 10_000, seed: int = 0,
                cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Training pairs, cached as ``.npz`` under :func:`cache_dir`."""
        path = cache_dir() / f"architecture_n{n}_seed{seed}_s{self.smoothing}.npz"
        if cache and path.exists():
            with np.load(path, allow_pickle=False) as z:
                if "seconds_per_solve" in z:
                    self.seconds_per_solve = float(z["seconds_per_solve"])
                return z["x"].astype(float), z["y"].astype(float)
        x, y = super().dataset(n, seed)
        if cache:
            from matdisco._io import atomic_path

            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.savez_compressed(fh, x=x.astype(np.uint8), y=y,
                                    seconds_per_solve=self.seconds_per_solve or np.nan)
        return x, y


class MoS2Bandgap(InverseTask):
    """Strained MoS2 under an applied field -> DFT band gap (eV).

    Inputs: lattice ``a, b, c`` (angstrom), angles ``alpha, beta, gamma`` (degrees) and the
    applied field. There is no DFT here: ``forward`` is an **oracle surrogate**, an
    extra-trees ensemble fitted on all the data; ``oracle_holdout`` reports its own error
    on a 20 % hold-out (fitted on the other 80 %). Target ``y* = 0.5`` eV.

    Parameters
    ----------
    data_dir : path, optional
        Folder with ``data_x.csv`` and ``data_y.csv``; defaults to
        ``shared_data_dir() / "inverse" / "mos2_bandgap"``.
    """

    name = "mos2"
    x_dim = 7
    y_dim = 1
    oracle = True
    x_names = ("a", "b", "c", "alpha", "beta", "gamma", "field")

    def __init__(self, data_dir: str | os.PathLike[str] | None = None,
                 n_estimators: int = 200) -> None:
        super().__init__()
        found = Path(data_dir) if data_dir else self.default_dir()
        if found is None or not (found / "data_x.csv").exists():
            raise MatdiscoError(
                f"MoS2 data not found (looked for data_x.csv in {found}); set "
                "MATDISCO_SHARED_DATA to the shared data folder"
            )
        self.data_dir = found
        self.x_data, self.y_data = self._load()
        self.lower = self.x_data.min(axis=0)
        self.upper = self.x_data.max(axis=0)
        self.single_target = np.array([0.5])
        self.n_estimators = n_estimators
        self._model: Any = None
        self.oracle_holdout: dict[str, float] = {}

    @staticmethod
    def default_dir() -> Path | None:
        from matdisco.data import shared_data_dir

        root = shared_data_dir()
        return None if root is None else root / "inverse" / "mos2_bandgap"

    def _load(self) -> tuple[np.ndarray, np.ndarray]:
        import pandas as pd

        out = []
        for name, width in (("data_x.csv", 7), ("data_y.csv", 1)):
            path = self.data_dir / name
            df = pd.read_csv(path, header=None)
            if df.shape[1] != width:
                raise MatdiscoError(f"{path}: expected {width} columns, found {df.shape[1]}")
            arr = df.to_numpy(dtype=float)
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                raise MatdiscoError(f"{path}: row {int(np.where(bad)[0][0]) + 1} is not numeric")
            out.append(arr)
        if len(out[0]) != len(out[1]):
            raise MatdiscoError(f"{self.data_dir}: data_x.csv has {len(out[0])} rows but "
                                f"data_y.csv has {len(out[1])}")
        return out[0], out[1]

    def fit_oracle(self, seed: int = 0) -> dict[str, float]:
        """Fit the oracle; returns its hold-out MSE/MAE (80/20 split)."""
        from sklearn.ensemble import ExtraTreesRegressor

        rng = np.random.default_rng(seed)
        idx = rng.permutation(len(self.x_data))
        cut = int(0.8 * len(idx))
        tr, te = idx[:cut], idx[cut:]
        m = ExtraTreesRegressor(n_estimators=self.n_estimators, min_samples_leaf=2,
                                random_state=seed, n_jobs=1)
        m.fit(self.x_data[tr], self.y_data[tr, 0])
        err = m.predict(self.x_data[te]) - self.y_data[te, 0]
        self.oracle_holdout = {"oracle_holdout_mse": float(np.mean(err**2)),
                               "oracle_holdout_mae": float(np.mean(np.abs(err))),
                               "oracle_n_holdout": len(te)}
        self._model = ExtraTreesRegressor(n_estimators=self.n_estimators, min_samples_leaf=2,
                                          random_state=seed, n_jobs=1)
        self._model.fit(self.x_data, self.y_data[:, 0])
        return self.oracle_holdout

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.x_data[rng.integers(0, len(self.x_data), n)].copy()

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self._model is None:
            self.fit_oracle()
        return self._model.predict(x)[:, None]

    def dataset(self, n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The real DFT data (all rows, or ``n`` rows drawn without replacement)."""
        if n is None or n >= len(self.x_data):
            return self.x_data.copy(), self.y_data.copy()
        idx = np.random.default_rng(seed).permutation(len(self.x_data))[:n]
        return self.x_data[idx].copy(), self.y_data[idx].copy()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["oracle_model"] = f"ExtraTreesRegressor(n_estimators={self.n_estimators})"
        d.update(self.oracle_holdout)
        return d


TASKS: dict[str, type[InverseTask]] = {
    "sinewave": Sinewave,
    "robotic_arm": RoboticArm,
    "ballistics": Ballistics,
    "architecture": Architecture,
    "mos2": MoS2Bandgap,
}
_ALIASES = {"arm": "robotic_arm", "robot": "robotic_arm", "sine": "sinewave",
            "architected": "architecture", "mos2_bandgap": "mos2"}


def get_task(name: str, **kwargs: Any) -> InverseTask:
    """Build a task by name (``sinewave``, ``robotic_arm``, ``ballistics``,
    ``architecture``, ``mos2``)."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in TASKS:
        raise MatdiscoError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[key](**kwargs)
