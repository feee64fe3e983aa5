"""The one training loop of matdisco.

Every network in the package (property models, screening distillation, inverse-design
networks, OMNet, PADNet, refiners) is trained by :class:`Trainer`. It provides seeding,
device choice (CUDA when present), mini-batching of in-memory tensors or any
``torch.utils.data.Dataset``, an optimizer and learning-rate schedule, gradient clipping,
early stopping with patience (restoring the best weights), checkpoint + resume to a
single atomic ``.safetensors`` file, a progress bar and a per-epoch metrics log.

Custom objectives are supplied as ``compute_loss(model, batch)``, which returns a loss
tensor or ``(loss, {"name": float, ...})``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from matdisco import MatdiscoError
from matdisco._io import write_text
from matdisco.training.rundir import load_weights, save_weights

Batch = Sequence[torch.Tensor]
LossOut = torch.Tensor | tuple[torch.Tensor, dict[str, float]]

_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULERS = ("cosine", "onecycle", "plateau", "step", "none")
# settings that may differ when a checkpoint is resumed: they do not change the training
# trajectory up to the checkpoint (patience may be changed, as the ebsd workflow allows)
_RESUME_FREE = frozenset({"patience", "device", "progress", "checkpoint_every",
                          "eval_batch_size", "restore_best", "extra"})


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """Return ``cuda`` when available for ``"auto"``, else the named device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:  # torch's error for a string it does not know
        raise MatdiscoError(f"device={device!r} is not a device: use auto, cpu or cuda "
                            "(e.g. cuda:0)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MatdiscoError(f"device={device!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise MatdiscoError(f"device={device!r} requested but only "
                            f"{torch.cuda.device_count()} CUDA device(s) are present")
    return dev


@dataclass
class TrainerConfig:
    """Hyper-parameters of :class:`Trainer`.

    Parameters
    ----------
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Mini-batch size.
    lr : float
        Peak learning rate.
    weight_decay : float
        Weight decay (decoupled for AdamW, L2 for Adam/SGD).
    optimizer : {"adamw", "adam", "sgd"}
        Optimizer.
    scheduler : {"cosine", "onecycle", "plateau", "step", "none"}
        Learning-rate schedule. ``cosine`` and ``onecycle`` are stepped per batch,
        ``plateau`` reduces by ``plateau_factor`` after ``plateau_patience`` epochs
        without improvement, ``step`` multiplies by 0.1 every ``step_epochs``.
    warmup_epochs : float
        Linear warm-up length for ``cosine``.
    min_lr_ratio : float
        Final learning rate of ``cosine`` as a fraction of ``lr``.
    patience : int or None
        Early-stopping patience in epochs on the validation loss; None disables. Without
        validation data the whole schedule runs (the training loss is still monitored
        for restoring the best weights).
    min_delta : float
        Minimum improvement that resets the patience counter.
    grad_clip : float or None
        Clip the global gradient norm to this value.
    seed : int
        Random seed for initialisation and shuffling.
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda[:i]"``.
    progress : bool
        Show a progress bar.
    checkpoint_every : int
        Write a resumable checkpoint every this many epochs (0 disables).
    eval_batch_size : int
        Batch size for validation.
    restore_best : bool
        Load the best weights at the end of training.
    ema : float or None
        Keep an exponential moving average of the weights with this decay (e.g. 0.999);
        validation, early stopping and the final weights then use the averaged weights,
        which removes most of the epoch-to-epoch noise of deep regressors.
    dropout_anneal_epochs : int
        Scale every dropout probability of the model linearly down to zero over the last
        this many epochs (0: off). A deep dropout network evaluated deterministically
        (eval mode) can be far worse than the stochastic network it was trained as (the
        dropout "variance shift"); annealing lets the final epochs train the very network
        that is evaluated. With early stopping, running out of patience before the
        annealing phase starts the annealing instead of stopping.
    dropout_scale : float
        Multiplier of every dropout probability of the model (1: as built, 0: dropout
        off). Fine-tuning a network whose final epochs were trained without dropout
        (transfer learning after annealing) keeps it the deterministic network it is.
    """

    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.01
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    step_epochs: int = 30
    patience: int | None = 20
    min_delta: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    checkpoint_every: int = 1
    eval_batch_size: int = 4096
    restore_best: bool = True
    ema: float | None = None
    dropout_anneal_epochs: int = 0
    dropout_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 0, ">= 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("optimizer", self.optimizer in _OPTIMIZERS, f"one of {', '.join(_OPTIMIZERS)}"),
            ("scheduler", self.scheduler in _SCHEDULERS, f"one of {', '.join(_SCHEDULERS)}"),
            ("warmup_epochs", self.warmup_epochs >= 0, ">= 0"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("plateau_factor", 0 < self.plateau_factor <= 1, "in (0, 1]"),
            ("plateau_patience", self.plateau_patience >= 0, ">= 0"),
            ("step_epochs", self.step_epochs >= 1, ">= 1"),
            ("patience", self.patience is None or self.patience >= 0, ">= 0 or None"),
            ("min_delta", self.min_delta >= 0, ">= 0"),
            ("checkpoint_every", self.checkpoint_every >= 0, ">= 0"),
            ("grad_clip", self.grad_clip is None or self.grad_clip > 0, "> 0 or None"),
            ("ema", self.ema is None or 0.0 <= self.ema < 1.0, "in [0, 1) or None"),
            ("dropout_anneal_epochs", self.dropout_anneal_epochs >= 0, ">= 0"),
            ("dropout_scale", self.dropout_scale >= 0, ">= 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise MatdiscoError(f"trainer setting {name}={getattr(self, name)!r} must be "
                                    f"{rule}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainerConfig:
        """Build from a dict, ignoring unknown keys."""
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


class _TensorBatches:
    """Shuffled mini-batches of in-memory tensors (much faster than a DataLoader)."""

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int) -> None:
        n = len(tensors[0])
        for t in tensors:
            if len(t) != n:
                raise MatdiscoError(
                    f"training tensors disagree in length: {[len(t) for t in tensors]}"
                )
        self.tensors = tuple(tensors)
        self.n = n
        self.batch_size = batch_size

    def __len__(self) -> int:
        nb = math.ceil(self.n / self.batch_size)
        if nb > 1 and self.n % self.batch_size == 1:
            nb -= 1  # drop a final batch of one sample (breaks batch norm)
        return nb

    def iterate(self, generator: torch.Generator | None, shuffle: bool) -> Any:
        if shuffle:
            order = torch.randperm(self.n, generator=generator)
        else:
            order = None
        for b in range(len(self)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            if order is None:
                yield tuple(t[sl] for t in self.tensors)
            else:
                idx = order[sl]
                yield tuple(t[idx] for t in self.tensors)


def _as_batches(data: Any, batch_size: int) -> Any:
    if isinstance(data, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in data):
        return _TensorBatches(data, batch_size)
    if isinstance(data, torch.Tensor):
        return _TensorBatches((data,), batch_size)
    if isinstance(data, torch.utils.data.Dataset):
        return data
    raise MatdiscoError(
        "training data must be a tensor, a tuple of tensors or a torch Dataset, "
        f"got {type(data).__name__}"
    )


def _n_rows(batches: Any) -> int | None:
    """Number of rows of batched data (None for a Dataset without a length)."""
    if isinstance(batches, _TensorBatches):
        return batches.n
    try:
        return len(batches)
    except TypeError:
        return None


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, pstate in state["state"].items():
        for k, v in pstate.items():
            key = f"{pid}.{k}"
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{key}"] = v
            else:
                scalars[key] = v
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            pid, name = k[len("optim."):].split(".", 1)
            state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


class Trainer:
    """Train a ``torch.nn.Module``.

    Parameters
    ----------
    model : nn.Module
        The network. Only parameters with ``requires_grad`` are optimized (so frozen
        sub-networks, e.g. a classifier behind a refiner, stay fixed).
    config : TrainerConfig
        Hyper-parameters.
    loss_fn : callable, optional
        ``loss_fn(prediction, target)`` for the default ``(x, y)`` batches.
        Defaults to L1 (mean absolute error).
    compute_loss : callable, optional
        ``compute_loss(model, batch)`` returning a loss tensor or ``(loss, logs)``;
        overrides ``loss_fn``.
    run_dir : path, optional
        Where ``history.jsonl`` and the checkpoint go.
    checkpoint_name : str
        File stem of the checkpoint inside ``run_dir``.
    callbacks : list of callables, optional
        ``cb(trainer, logs)`` called after every epoch (``trainer.epoch`` is set).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        compute_loss: Callable[[nn.Module, Batch], LossOut] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        checkpoint_name: str = "checkpoint",
        callbacks: list[Callable[[Trainer, dict[str, Any]], None]] | None = None,
    ) -> None:
        self.config = config or TrainerConfig()
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn or nn.L1Loss()
        self._compute_loss = compute_loss
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_name = checkpoint_name
        self.callbacks = list(callbacks or [])
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.resumed_epochs = 0  # epochs read from a checkpoint by the last fit
        self.best_score = math.inf
        self.best_epoch = -1
        self.stopped_early = False
        self._best_state: dict[str, torch.Tensor] | None = None  # set by fit
        self._ema: dict[str, torch.Tensor] | None = None  # set by fit
        # shuffling generator (re-seeded by fit); set here so evaluate works before fit
        self._gen = torch.Generator().manual_seed(self.config.seed)

    # ------------------------------------------------------------------ helpers
    def compute_loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss (and extra logs) of one batch, already on the device."""
        if self._compute_loss is not None:
            out = self._compute_loss(self.model, batch)
        else:
            x, y = batch[0], batch[1]
            out = self.loss_fn(self.model(x), y)
        if isinstance(out, tuple):
            return out[0], dict(out[1])
        return out, {}

    def _to_device(self, batch: Any) -> Batch:
        if isinstance(batch, torch.Tensor):
            batch = (batch,)
        return tuple(b.to(self.device, non_blocking=True) if isinstance(b, torch.Tensor) else b
                     for b in batch)

    def _iterate(self, batches: Any, shuffle: bool, batch_size: int) -> Any:
        if isinstance(batches, _TensorBatches):
            return batches.iterate(self._gen, shuffle)
        loader = torch.utils.data.DataLoader(
            batches, batch_size=batch_size, shuffle=shuffle, generator=self._gen,
            drop_last=False,
        )
        return iter(loader)

    def _n_batches(self, batches: Any, batch_size: int) -> int:
        if isinstance(batches, _TensorBatches):
            return len(batches)
        return math.ceil(len(batches) / batch_size)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise MatdiscoError("the model has no trainable parameters")
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9,
                                   weight_decay=cfg.weight_decay, nesterov=True)
        raise MatdiscoError(f"unknown optimizer {cfg.optimizer!r} (adamw, adam, sgd)")

    def _lr_factor(self, step: int) -> float:
        cfg = self.config
        total = max(1, cfg.epochs * self._steps_per_epoch)
        if cfg.scheduler == "cosine":
            warm = int(cfg.warmup_epochs * self._steps_per_epoch)
            if step < warm:
                return (step + 1) / warm
            prog = min(1.0, (step - warm) / max(1, total - warm))
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog))
        if cfg.scheduler == "onecycle":
            warm = max(1, int(0.3 * total))
            if step < warm:
                return 0.04 + 0.96 * step / warm
            prog = min(1.0, (step - warm) / max(1, total - warm))
            return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * prog))
        return 1.0

    def _set_lr(self, factor: float) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor

    # ------------------------------------------------------------------ checkpoint
    @property
    def checkpoint_path(self) -> Path | None:
        """Path of the resumable checkpoint, if a run directory is set."""
        if self.run_dir is None:
            return None
        return self.run_dir / f"{self.checkpoint_name}.safetensors"

    def save_checkpoint(self, finished: bool = False) -> None:
        """Write model, optimizer, best weights, RNG and progress into one file."""
        path = self.checkpoint_path
        if path is None:
            return
        tensors: dict[str, torch.Tensor] = {
            f"model.{k}": v for k, v in self.model.state_dict().items()
        }
        if self._best_state is not None:
            tensors.update({f"best.{k}": v for k, v in self._best_state.items()})
        if self._ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self._ema.items()})
        otensors, ometa = _flatten_optimizer(self.optimizer.state_dict())
        tensors.update(otensors)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.shuffle"] = self._gen.get_state()
        if self.device.type == "cuda":  # dropout on the GPU draws from the CUDA generator
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {
            "epoch": self.epoch,
            "step": self._step,
            "steps_per_epoch": self._steps_per_epoch,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self._bad_epochs,
            "plateau_best": self._plateau_best,
            "plateau_bad": self._plateau_bad,
            "lr_scale": self._lr_scale,
            "final_epoch": self._final_epoch,
            "finished": finished,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "optimizer": ometa,
            "config": self.config.to_dict(),
        }
        save_weights(path, tensors, metadata={"trainer": json.dumps(meta)})

    def _load_checkpoint(self, path: Path) -> dict[str, Any]:
        from safetensors import safe_open

        tensors = load_weights(path)
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("trainer", "{}"))
        if not meta:
            raise MatdiscoError(f"{path}: not a matdisco trainer checkpoint")
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        own = self.model.state_dict()
        if set(model_state) != set(own) or any(
            model_state[k].shape != own[k].shape for k in own
        ):
            raise MatdiscoError(f"{path}: checkpoint does not match this model's parameters")
        old = meta.get("config", {})
        new = json.loads(json.dumps(self.config.to_dict(), default=str))
        diff = [f"{k}: {old[k]!r} in the checkpoint, {new[k]!r} now"
                for k in sorted(set(old) & set(new) - _RESUME_FREE) if old[k] != new[k]]
        if diff:
            raise MatdiscoError(f"{path}: cannot resume a checkpoint trained with other "
                                f"settings ({'; '.join(diff)}); use the same settings, or "
                                "train afresh without resume")
        spe = meta.get("steps_per_epoch")
        if spe is not None and spe != self._steps_per_epoch:
            raise MatdiscoError(f"{path}: cannot resume: the checkpoint was trained with "
                                f"{spe} batches per epoch, the training data now gives "
                                f"{self._steps_per_epoch} (other training data?)")
        self.model.load_state_dict(model_state)
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self._best_state = best or None
        ema = {k[4:]: v.to(self.device) for k, v in tensors.items() if k.startswith("ema.")}
        if self._ema is not None and ema:
            self._ema = ema
        try:
            self.optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
        except (ValueError, KeyError, RuntimeError) as exc:
            raise MatdiscoError(f"{path}: the checkpoint's optimizer state does not match "
                                f"this model's trainable parameters ({exc})") from exc
        torch.set_rng_state(tensors["rng.torch"])
        self._gen.set_state(tensors["rng.shuffle"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.epoch = meta["epoch"]
        self._step = meta["step"]
        self.best_score = meta["best_score"]
        self.best_epoch = meta["best_epoch"]
        self._bad_epochs = meta["bad_epochs"]
        self._plateau_best = meta["plateau_best"]
        self._plateau_bad = meta["plateau_bad"]
        self._lr_scale = meta["lr_scale"]
        self._final_epoch = meta.get("final_epoch", self.config.epochs)
        self.stopped_early = meta["stopped_early"]
        self.history = meta["history"]
        return meta

    def _write_history(self) -> None:
        if self.run_dir is None:
            return
        lines = "".join(json.dumps(h) + "\n" for h in self.history)
        write_text(self.run_dir / f"{self.checkpoint_name.replace('checkpoint', 'history')}.jsonl",
                   lines)

    def _dropout_scale(self) -> float:
        """Dropout multiplier of the epoch about to run (linear anneal to 0 at the end)."""
        k = self.config.dropout_anneal_epochs
        base = float(self.config.dropout_scale)
        if k <= 0:
            return base
        start = self._final_epoch - k
        return base * max(0.0, min(1.0, 1.0 - (self.epoch - start + 1) / k))

    # ------------------------------------------------------------------ EMA
    @torch.no_grad()
    def _ema_update(self) -> None:
        assert self._ema is not None and self.config.ema is not None
        decay = min(self.config.ema, (1 + self._step) / (10 + self._step))
        floats_e, floats_m = [], []
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                floats_e.append(self._ema[k])
                floats_m.append(v)
            else:
                self._ema[k].copy_(v)
        torch._foreach_mul_(floats_e, decay)
        torch._foreach_add_(floats_e, floats_m, alpha=1 - decay)

    def _swap_in_ema(self) -> dict[str, torch.Tensor] | None:
        if self._ema is None:
            return None
        backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self._ema)
        return backup

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, data: Any) -> dict[str, float]:
        """Mean loss and logs over ``data`` with the model in eval mode."""
        batches = _as_batches(data, self.config.eval_batch_size)
        self.model.eval()
        total, n = 0.0, 0
        sums: dict[str, float] = {}
        for batch in self._iterate(batches, False, self.config.eval_batch_size):
            batch = self._to_device(batch)
            loss, logs = self.compute_loss(batch)
            m = len(batch[0])
            total += float(loss) * m
            n += m
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v) * m
        if n == 0:
            raise MatdiscoError("no rows to evaluate (empty validation/evaluation data)")
        out = {"loss": total / n}
        out.update({k: v / n for k, v in sums.items()})
        return out

    # ------------------------------------------------------------------ fit
    def fit(self, train: Any, val: Any | None = None, resume: bool = False) -> list[dict]:
        """Train, with early stopping on the validation loss (or training loss).

        Parameters
        ----------
        train : tensor, tuple of tensors or Dataset
            Training data; tuples are ``(x, y, ...)`` batched together.
        val : same as ``train``, optional
            Validation data for early stopping and the LR plateau schedule.
        resume : bool
            Continue from the checkpoint in ``run_dir`` when one exists.

        Returns
        -------
        list of dict
            The per-epoch history.
        """
        cfg = self.config
        set_seed(cfg.seed)
        self._gen = torch.Generator().manual_seed(cfg.seed)
        batches = _as_batches(train, cfg.batch_size)
        self._steps_per_epoch = self._n_batches(batches, cfg.batch_size)
        if self._steps_per_epoch == 0:
            raise MatdiscoError("the training data is empty")
        if val is not None and _n_rows(_as_batches(val, cfg.eval_batch_size)) == 0:
            raise MatdiscoError("the validation data is empty (pass val=None to train "
                                "without validation)")
        self.optimizer = self._make_optimizer()
        for g in self.optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self._step = 0
        self._bad_epochs = 0
        self._plateau_best = math.inf
        self._plateau_bad = 0
        self._lr_scale = 1.0
        self._final_epoch = cfg.epochs
        dropouts = [m for m in self.model.modules()
                    if isinstance(m, nn.modules.dropout._DropoutNd)]
        dropout_p = [m.p for m in dropouts]
        if cfg.dropout_scale < 0 or any(p * cfg.dropout_scale > 1 for p in dropout_p):
            raise MatdiscoError(
                f"dropout_scale={cfg.dropout_scale} gives dropout probabilities outside "
                f"[0, 1] (the model's are {sorted(set(dropout_p))})"
            )
        if (cfg.ema and cfg.dropout_scale > 0 and not cfg.dropout_anneal_epochs
                and any(p > 0 for p in dropout_p)):
            warnings.warn(
                f"ema={cfg.ema} with dropout on until the last epoch (probabilities "
                f"{sorted({round(p * cfg.dropout_scale, 3) for p in dropout_p})}, no "
                "dropout_anneal_epochs): the averaged deterministic network can be much "
                "worse than the dropout network it averages (measured on ElemNet: MAE 2x "
                "its training loss); anneal dropout (dropout_anneal_epochs / "
                "--dropout-anneal) or turn it off (dropout_scale=0)",
                UserWarning, stacklevel=3)  # the caller of NeuralRegressor.fit
        # a fresh fit forgets an earlier fit of this trainer (its best score, its history)
        self.best_score = math.inf
        self.best_epoch = -1
        self.stopped_early = False
        self.history = []
        self._best_state = None
        self._ema = None
        if cfg.ema:
            self._ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.epoch = 0
        self.resumed_epochs = 0
        ckpt = self.checkpoint_path
        if resume and ckpt is not None and ckpt.exists():
            meta = self._load_checkpoint(ckpt)
            self.resumed_epochs = len(self.history)
            if meta["finished"]:
                self._load_final_weights()
                return self.history

        monitor = "val_loss" if val is not None else "train_loss"
        bar = None
        if cfg.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self._final_epoch, initial=self.epoch, desc="train", unit="epoch",
                       leave=False, dynamic_ncols=True)
        try:
            while self.epoch < self._final_epoch:
                t0 = time.perf_counter()
                self.model.train()
                drop_scale = self._dropout_scale()
                for m, p0 in zip(dropouts, dropout_p, strict=True):
                    m.p = p0 * drop_scale
                tot, n = 0.0, 0
                sums: dict[str, float] = {}
                for batch in self._iterate(batches, True, cfg.batch_size):
                    batch = self._to_device(batch)
                    if cfg.scheduler in ("cosine", "onecycle"):
                        self._set_lr(self._lr_factor(self._step))
                    loss, logs = self.compute_loss(batch)
                    if not torch.isfinite(loss):
                        raise MatdiscoError(
                            f"non-finite training loss at epoch {self.epoch + 1}; "
                            "lower the learning rate or check the data for NaN/inf"
                        )
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if cfg.grad_clip:
                        nn.utils.clip_grad_norm_(
                            [p for p in self.model.parameters() if p.requires_grad],
                            cfg.grad_clip,
                        )
                    self.optimizer.step()
                    self._step += 1
                    if self._ema is not None:
                        self._ema_update()
                    bsz = len(batch[0])
                    tot += float(loss.detach()) * bsz
                    n += bsz
                    for k, v in logs.items():
                        sums[k] = sums.get(k, 0.0) + float(v) * bsz
                self.epoch += 1
                dt = time.perf_counter() - t0
                rec: dict[str, Any] = {
                    "epoch": self.epoch,
                    "train_loss": tot / max(n, 1),
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "seconds": dt,
                    "samples_per_s": n / dt if dt > 0 else float("nan"),
                }
                if (cfg.dropout_anneal_epochs or cfg.dropout_scale != 1.0) and dropouts:
                    rec["dropout_scale"] = drop_scale
                rec.update({f"train_{k}": v / max(n, 1) for k, v in sums.items()})
                backup = self._swap_in_ema()
                if val is not None:
                    rec.update({f"val_{k}": v for k, v in self.evaluate(val).items()})
                score = rec[monitor]
                if score < self.best_score - cfg.min_delta:
                    self.best_score = float(score)
                    self.best_epoch = self.epoch
                    self._bad_epochs = 0
                    self._best_state = copy.deepcopy(
                        {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                    )
                else:
                    self._bad_epochs += 1
                if backup is not None:
                    self.model.load_state_dict(backup)
                if not math.isfinite(score):
                    raise MatdiscoError(
                        f"non-finite {monitor.replace('_', ' ')} at epoch {self.epoch}; "
                        "check the validation data for NaN/inf or lower the learning rate"
                    )
                if cfg.scheduler == "plateau":
                    if score < self._plateau_best - cfg.min_delta:
                        self._plateau_best, self._plateau_bad = float(score), 0
                    else:
                        self._plateau_bad += 1
                        if self._plateau_bad > cfg.plateau_patience:
                            self._lr_scale *= cfg.plateau_factor
                            self._plateau_bad = 0
                    self._set_lr(self._lr_scale)
                elif cfg.scheduler == "step":
                    self._set_lr(0.1 ** (self.epoch // max(1, cfg.step_epochs)))
                self.history.append(rec)
                for cb in self.callbacks:
                    cb(self, rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items()
                                     if k in ("train_loss", "val_loss")})
                # patience applies to a validation loss only: without validation rows
                # the whole schedule runs (a noisy training loss, e.g. with dropout,
                # would stop it mid-schedule at a high learning rate)
                # (patience=0: stop at the first epoch that does not improve)
                stop = (cfg.patience is not None and val is not None
                        and self._bad_epochs >= max(1, cfg.patience))
                n_anneal = cfg.dropout_anneal_epochs
                if (stop and n_anneal and dropouts and cfg.dropout_scale > 0
                        and self.epoch < self._final_epoch - n_anneal):
                    # out of patience with dropout still on: anneal it now, then stop
                    self._final_epoch = self.epoch + n_anneal
                    self._bad_epochs = 0
                    stop = False
                    if bar is not None:
                        bar.total = self._final_epoch
                        bar.refresh()
                self.stopped_early = bool(stop) or self._final_epoch < cfg.epochs
                last = stop or self.epoch >= self._final_epoch
                if cfg.checkpoint_every and (last or self.epoch % cfg.checkpoint_every == 0):
                    self.save_checkpoint(finished=last)
                self._write_history()
                if stop:
                    break
        finally:
            if bar is not None:
                bar.close()
            for m, p0 in zip(dropouts, dropout_p, strict=True):
                m.p = p0
        self._load_final_weights()
        return self.history

    def _load_final_weights(self) -> None:
        """Leave the weights a fit returns in the model: the best ones or the average."""
        if self.config.restore_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        elif self._ema is not None:
            self.model.load_state_dict(self._ema)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Run the model in eval mode over ``x`` in batches; returns a CPU tensor."""
        self.model.eval()
        bs = batch_size or self.config.eval_batch_size
        outs = [self.model(x[i:i + bs].to(self.device)).cpu() for i in range(0, len(x), bs)]
        return torch.cat(outs) if outs else torch.empty(0)
