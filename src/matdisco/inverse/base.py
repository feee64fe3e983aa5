"""The common interface of inverse-design solvers: ``fit(X, Y)`` and ``propose(y_star, n)``.

Solvers work in normalized coordinates: inputs are mapped from the box bounds to
``[-1, 1]`` and targets are standardized. Every proposal is clipped into the bounds, and
the wall-clock time of the last ``propose`` call is kept in ``propose_seconds_``.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from matdisco import MatdiscoError
from matdisco._checks import check_float, check_int
from matdisco.training import RunDir, Trainer, TrainerConfig, set_seed


class TargetRangeWarning(UserWarning):
    """A target lies outside the range of targets seen in training."""


class SurrogateWarning(UserWarning):
    """A forward surrogate explains too little of the target variance on held-out data.

    Gradient search on such a surrogate does not localize: on the sinewave an almost
    untrained surrogate drives every start into one corner of the box.
    """


class Scaler:
    """Affine maps ``x -> [-1, 1]`` (box bounds) and ``y -> standard scores``."""

    def __init__(self, lower: np.ndarray, upper: np.ndarray, y_mean: np.ndarray,
                 y_std: np.ndarray) -> None:
        self.lower = np.asarray(lower, dtype=float)
        self.upper = np.asarray(upper, dtype=float)
        span = self.upper - self.lower
        self.span = np.where(span > 0, span, 1.0)
        self.y_mean = np.asarray(y_mean, dtype=float)
        self.y_std = np.where(np.asarray(y_std, dtype=float) > 0, y_std, 1.0)

    def x_to(self, x: np.ndarray) -> np.ndarray:
        return 2.0 * (x - self.lower) / self.span - 1.0

    def x_from(self, xn: np.ndarray) -> np.ndarray:
        return self.lower + (xn + 1.0) * 0.5 * self.span

    def y_to(self, y: np.ndarray) -> np.ndarray:
        return (y - self.y_mean) / self.y_std

    def y_from(self, yn: np.ndarray) -> np.ndarray:
        return yn * self.y_std + self.y_mean

    def state(self) -> dict[str, list[float]]:
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "y_mean": self.y_mean.tolist(), "y_std": self.y_std.tolist()}


def mlp(n_in: int, n_out: int, hidden: int = 128, depth: int = 3,
        act: type[nn.Module] = nn.SiLU) -> nn.Sequential:
    """A fully connected network with ``depth`` hidden layers of width ``hidden``."""
    layers: list[nn.Module] = []
    w = n_in
    for _ in range(depth):
        layers += [nn.Linear(w, hidden), act()]
        w = hidden
    layers.append(nn.Linear(w, n_out))
    return nn.Sequential(*layers)


class PeriodicCNN(nn.Module):
    """Forward surrogate for square binary cells given as flat vectors ``(n, side**2)``.

    Convolutions with circular padding (the cell is periodic), stride-2 stages down to
    ``side / 16``, global average pooling and a small dense head. The output is invariant
    to periodic shifts of the cell by multiples of 16 pixels (the total stride), as the
    homogenized modulus is to every periodic shift.
    """

    def __init__(self, side: int, n_out: int, channels: int = 16, hidden: int = 128) -> None:
        super().__init__()
        self.side = side
        c = channels

        def block(i: int, o: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, stride, 1, padding_mode="circular"), nn.SiLU()]

        self.net = nn.Sequential(
            *block(1, c, 1), *block(c, c, 2), *block(c, 2 * c, 2), *block(2 * c, 4 * c, 2),
            *block(4 * c, 4 * c, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(4 * c, hidden), nn.SiLU(), nn.Linear(hidden, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, 1, self.side, self.side))


def forward_network(arch: str, n_in: int, n_out: int, hidden: int, depth: int) -> nn.Module:
    """A forward surrogate: ``"mlp"`` (any inputs) or ``"cnn"`` (square periodic cells)."""
    if arch == "mlp":
        return mlp(n_in, n_out, hidden, depth)
    if arch == "cnn":
        side = math.isqrt(n_in)
        if side * side != n_in or side % 16:
            raise MatdiscoError(f"forward_arch 'cnn' needs square cells with a side divisible "
                                f"by 16 (n_in = side**2); got {n_in} inputs")
        return PeriodicCNN(side, n_out)
    raise MatdiscoError(f"unknown forward_arch {arch!r}; choose 'mlp' or 'cnn'")


def boundary_loss(xn: torch.Tensor) -> torch.Tensor:
    """Per-row penalty ``sum relu(|x| - 1)^2`` for leaving the normalized box."""
    return torch.relu(xn.abs() - 1.0).pow(2).sum(dim=-1)


def as_2d(a: Any, width: int, what: str) -> np.ndarray:
    """Validate and reshape an array to ``(n, width)``."""
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    elif arr.ndim == 1:
        arr = arr.reshape(-1, 1) if width == 1 else arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != width:
        raise MatdiscoError(
            f"{what} must have {width} column(s) (shape (n, {width})), got shape "
            f"{np.asarray(a).shape}"
        )
    return arr


class InverseSolver:
    """Base class: ``fit(X, Y)`` then ``propose(y_star, n)``.

    Parameters
    ----------
    bounds : (lower, upper), optional
        Input box; defaults to the range of the training inputs.
    hidden, depth : int
        Width and number of hidden layers of the networks.
    epochs, batch_size, lr : training settings passed to :class:`TrainerConfig`.
    patience : int or None
        Early-stopping patience on a 10 % validation split.
    min_steps : int
        Every network gets at least this many optimizer steps: ``epochs`` is raised to
        ``ceil(min_steps / batches per epoch)`` when it would give fewer. Epochs alone
        are no measure of training on small data sets (15 epochs of 2,000 pairs are 105
        steps, which leaves a forward surrogate untrained).
    seed : int
        Seed of initialisation, training and sampling.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    binary_inputs : bool
        Inputs take only their two bound values (pixels of a binary cell). Proposals are
        then rounded to the nearer bound, and gradient-based methods rank candidates by
        the surrogate error at the rounded point, which is the point proposed.
    progress : bool
        Show training progress bars.
    run_dir : path, optional
        Where trainer checkpoints and histories go (one sub-folder per network).
    """

    name = "base"
    #: every call returns the same proposals for one target (tandem)
    deterministic = False

    def __init__(self, bounds: tuple[Any, Any] | None = None, hidden: int = 128,
                 depth: int = 3, epochs: int = 100, batch_size: int = 256, lr: float = 2e-3,
                 patience: int | None = 30, min_steps: int = 3000, seed: int = 0,
                 device: str = "cpu", binary_inputs: bool = False,
                 progress: bool = False, run_dir: str | None = None) -> None:
        for what, v, least in (("epochs", epochs, 1), ("batch_size", batch_size, 1),
                               ("min_steps", min_steps, 0), ("hidden", hidden, 1),
                               ("depth", depth, 0), ("seed", seed, 0)):
            check_int(what, v, least)
        check_int("patience", patience, 0, none_ok=True)
        check_float("lr", lr, 0.0, strict=True)
        if not isinstance(device, str):
            raise MatdiscoError(f"device must be 'cpu', 'cuda' or 'auto', got {device!r}")
        if device != "auto":
            try:
                torch.device(device)
            except (RuntimeError, ValueError):
                raise MatdiscoError(f"device must be 'cpu', 'cuda' (or 'cuda:N') or 'auto', "
                                    f"got {device!r}") from None
        if run_dir is not None and not isinstance(run_dir, (str, os.PathLike)):
            raise MatdiscoError(f"run_dir must be a path or None, got {run_dir!r}")
        self.bounds = bounds
        self.hidden = hidden
        self.depth = depth
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.min_steps = min_steps
        self.seed = seed
        self.device = device
        self.binary_inputs = binary_inputs
        self.progress = progress
        self.run_dir = run_dir
        self.propose_seconds_: float | None = None
        #: CPU time of the last ``propose`` (process time; on a shared machine a fairer
        #: measure than the wall clock when torch uses one thread)
        self.propose_cpu_seconds_: float | None = None
        self.fit_seconds_: float | None = None
        #: epochs and optimizer steps actually used, by network tag
        self.training_: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------------ helpers
    @classmethod
    def param_names(cls) -> list[str]:
        """Names of every constructor parameter, the class's own and those of the base
        classes it passes ``**kwargs`` on to (training settings such as ``epochs``)."""
        import inspect

        names: list[str] = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) \
                        and p.name not in names:
                    names.append(p.name)
        return names

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, the base class's training settings included
        (JSON-able ones; a solver object such as ``forward_from`` is left out)."""
        def plain(v: Any) -> Any:
            if isinstance(v, np.ndarray | np.generic):
                return v.tolist()
            if isinstance(v, list | tuple):
                return [plain(e) for e in v]
            if isinstance(v, dict):
                return {str(k): plain(e) for k, e in v.items()}
            return v

        out = {}
        for k in self.param_names():
            v = getattr(self, k, None)
            if isinstance(v, int | float | str | bool | type(None) | list | tuple | dict
                          | np.ndarray | np.generic):
                out[k] = plain(v)
        return out

    def _trainer_config(self, epochs: int | None = None, lr: float | None = None,
                        scheduled_loss: bool = False) -> TrainerConfig:
        # a loss whose weights follow a schedule cannot be compared across epochs:
        # no early stopping and no "best epoch" restore then
        return TrainerConfig(
            epochs=epochs or self.epochs, batch_size=self.batch_size, lr=lr or self.lr,
            optimizer="adam", scheduler="cosine",
            patience=None if scheduled_loss else self.patience, seed=self.seed,
            device=self.device, progress=self.progress,
            checkpoint_every=1 if self.run_dir else 0, grad_clip=5.0,
            restore_best=not scheduled_loss,
        )

    def _train(self, model: nn.Module, data: tuple[torch.Tensor, ...], compute_loss: Any,
               tag: str, epochs: int | None = None, lr: float | None = None,
               callbacks: list[Any] | None = None,
               scheduled_loss: bool = False) -> Trainer:
        """Train ``model`` with the shared :class:`Trainer` (10 % validation split)."""
        n = len(data[0])
        g = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(n, generator=g)
        n_val = max(1, n // 10) if n >= 20 else 0
        val = tuple(t[perm[:n_val]] for t in data) if n_val else None
        train = tuple(t[perm[n_val:]] for t in data)
        run_dir = None
        if self.run_dir is not None:
            run_dir = RunDir(f"{self.run_dir}/{tag}").path
        per_epoch = max(1, math.ceil(len(train[0]) / self.batch_size))
        asked = int(epochs or self.epochs)
        ep = max(asked, math.ceil(max(0, self.min_steps) / per_epoch))
        cfg = self._trainer_config(ep, lr, scheduled_loss)
        if cfg.patience is not None and ep > asked:
            # patience counts in units of the requested budget, not of tiny epochs
            cfg.patience = math.ceil(cfg.patience * ep / asked)
        trainer = Trainer(model, cfg, compute_loss=compute_loss,
                          run_dir=run_dir, callbacks=callbacks)
        trainer.fit(train, val)
        model.eval()
        self.training_[tag] = {"epochs": trainer.epoch, "steps": trainer._step}
        return trainer

    def project(self, xn: torch.Tensor) -> torch.Tensor:
        """Map normalized inputs onto what is proposed: clipped into ``[-1, 1]``, and
        rounded to ``-1`` / ``1`` when ``binary_inputs``."""
        xc = xn.clamp(-1.0, 1.0)
        if self.binary_inputs:
            xc = torch.where(xc >= 0, 1.0, -1.0)
        return xc

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32)

    # ------------------------------------------------------------------ API
    def fit(self, X: Any, Y: Any) -> InverseSolver:
        """Fit the solver on inputs ``X (n, dx)`` and targets ``Y (n, dy)``."""
        x = np.asarray(X, dtype=float)
        if x.ndim != 2:
            raise MatdiscoError(f"X must be 2-D (n, dx), got shape {x.shape}")
        y = as_2d(Y, np.asarray(Y).shape[-1] if np.asarray(Y).ndim == 2 else 1, "Y")
        if len(x) != len(y):
            raise MatdiscoError(f"X has {len(x)} rows but Y has {len(y)}")
        if len(x) < 2:
            raise MatdiscoError("at least two training pairs are needed")
        for arr, what in ((x, "X"), (y, "Y")):
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                raise MatdiscoError(f"{what} row {int(np.where(bad)[0][0]) + 1} contains NaN/inf")
        if self.bounds is not None:
            lo = np.broadcast_to(np.asarray(self.bounds[0], float), (x.shape[1],)).copy()
            hi = np.broadcast_to(np.asarray(self.bounds[1], float), (x.shape[1],)).copy()
            if np.any(hi < lo):
                raise MatdiscoError(f"bounds: upper < lower for columns "
                                    f"{np.where(hi < lo)[0].tolist()}")
        else:
            lo, hi = x.min(axis=0), x.max(axis=0)
        self.x_dim_, self.y_dim_ = x.shape[1], y.shape[1]
        self.y_min_, self.y_max_ = y.min(axis=0), y.max(axis=0)
        self.scaler_ = Scaler(lo, hi, y.mean(axis=0), y.std(axis=0))
        set_seed(self.seed)
        t0 = time.perf_counter()
        self._fit(self._t(self.scaler_.x_to(x)), self._t(self.scaler_.y_to(y)))
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "scaler_"):
            raise MatdiscoError(f"{self.name}: call fit(X, Y) before propose")

    def check_targets(self, y_star: Any) -> np.ndarray:
        """Validate targets: right dimension, finite; warn when outside the training range."""
        self._check_fitted()
        y = as_2d(y_star, self.y_dim_, "y_star")
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            raise MatdiscoError(f"target row {int(np.where(bad)[0][0]) + 1} contains NaN/inf")
        out = (y < self.y_min_) | (y > self.y_max_)
        if out.any():
            cols = sorted(set(np.where(out)[1].tolist()))
            rng = ", ".join(f"y[{c}] in [{self.y_min_[c]:.4g}, {self.y_max_[c]:.4g}]"
                            for c in cols)
            warnings.warn(f"{int(out.any(axis=1).sum())} target(s) lie outside the range "
                          f"seen in training ({rng}); proposals are extrapolations",
                          TargetRangeWarning, stacklevel=3)
        return y

    def propose_many(self, Y_star: Any, n: int) -> np.ndarray:
        """``n`` proposals for each of ``m`` targets: array ``(m, n, dx)`` inside the bounds."""
        return self._propose_checked(self.check_targets(Y_star), n)

    def _propose_checked(self, y: np.ndarray, n: int) -> np.ndarray:
        """:meth:`propose_many` for targets already through :meth:`check_targets` (which
        warns once, not again here)."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
            raise MatdiscoError(f"n must be a positive integer, got {n!r}")
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.random.fork_rng():
            torch.manual_seed(self.seed + 7919)
            xn = self.project(self._propose(self._t(self.scaler_.y_to(y)), int(n)))
        x = self.scaler_.x_from(xn.detach().cpu().double().numpy())
        x = np.clip(x, self.scaler_.lower, self.scaler_.upper)
        self.propose_seconds_ = time.perf_counter() - t0
        self.propose_cpu_seconds_ = time.process_time() - c0
        return x

    def propose(self, y_star: Any, n: int = 1) -> np.ndarray:
        """``n`` proposed inputs ``(n, dx)`` for one target ``y_star``."""
        y = self.check_targets(y_star)
        if len(y) != 1:
            raise MatdiscoError(f"propose takes one target; got {len(y)} (use propose_many)")
        # the target is checked (and warned about) once, above
        return self._propose_checked(y, n)[0]

    def save(self, path: str) -> RunDir:
        """Write ``config.json`` and the weights of every network to a run directory."""
        self._check_fitted()
        rd = RunDir(path)
        rd.write_config({"method": self.name, "params": self.get_params(),
                         "scaler": self.scaler_.state(), "x_dim": self.x_dim_,
                         "y_dim": self.y_dim_})
        for tag, module in self.networks().items():
            rd.save_weights(tag, module.state_dict())
        return rd

    def networks(self) -> dict[str, nn.Module]:
        """The trained networks by name (for saving)."""
        return {}

    # ------------------------------------------------------------------ to implement
    def _fit(self, xn: torch.Tensor, yn: torch.Tensor) -> None:
        raise NotImplementedError

    def _propose(self, yn: torch.Tensor, n: int) -> torch.Tensor:
        raise NotImplementedError
