"""scikit-learn style estimator around the deep networks and the shared Trainer."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin

from matdisco import MatdiscoError
from matdisco.models.nets import build_network
from matdisco.training import Trainer, TrainerConfig, resolve_device, set_seed
from matdisco.training.rundir import load_state_into


def _check_xy(X: Any, y: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise MatdiscoError(f"X must be 2-D (samples x features), got shape {X.shape}")
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise MatdiscoError(f"X row {r + 1}, column {c} is {X[r, c]} (not finite)")
    if y is None:
        return X, None
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if len(y) != len(X):
        raise MatdiscoError(f"X has {len(X)} rows but y has {len(y)}")
    bad_y = ~np.isfinite(y)
    if bad_y.any():
        r = int(np.flatnonzero(bad_y)[0])
        raise MatdiscoError(f"target row {r + 1} is {y[r]} (not finite)")
    return X, y


def check_fine_tuning(options: dict[str, Any], has_source: bool) -> None:
    """Refuse fine-tuning-only options (``l2sp``, ``freeze_layers``, ``probe_head``) that
    are negative, or set without source weights to fine-tune."""
    what = {"l2sp": "the L2-SP penalty pulls toward them", "freeze_layers": "freezing needs them",
            "probe_head": "there are no source features to probe"}
    for key, why in what.items():
        value = options.get(key) or 0
        if value < 0 or (value > 0 and not has_source):
            raise MatdiscoError(f"{key}={value} needs source weights to fine-tune "
                                f"(init / --init) and a value >= 0; {why}")


def _output_layer(net: torch.nn.Module) -> tuple[str, torch.nn.Linear]:
    """Name and module of the last linear layer (the output layer of every regressor)."""
    name, head = [(n, m) for n, m in net.named_modules()
                  if isinstance(m, torch.nn.Linear)][-1]
    if head.out_features != 1:
        raise MatdiscoError(f"expected a single-output last layer, got {head.out_features} "
                            "outputs")
    return name, head


class _FidelityHeads(torch.nn.Module):
    """A regressor whose output layer is duplicated, for multi-fidelity training.

    Both heads read the same features (the network with its output layer taken out):
    column 0 of the output predicts the target fidelity, column 1 the auxiliary one
    (e.g. DFT energies beside experimental enthalpies). :meth:`unwrap` puts head 0 back,
    so the trained network is the original architecture.
    """

    def __init__(self, net: torch.nn.Module, aux_head: torch.nn.Linear) -> None:
        super().__init__()
        name, head = _output_layer(net)
        self._parent_name, _, self._attr = name.rpartition(".")
        setattr(net.get_submodule(self._parent_name), self._attr, torch.nn.Identity())
        self.net = net
        self.heads = torch.nn.ModuleList([head, aux_head])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net(x)
        return torch.stack([h(f).reshape(-1) for h in self.heads], dim=1)

    def unwrap(self) -> torch.nn.Module:
        setattr(self.net.get_submodule(self._parent_name), self._attr, self.heads[0])
        return self.net


class NeuralRegressor(BaseEstimator, RegressorMixin):
    """Deep regression network (ElemNet, IRNet, plain, SRNet, MLP) with fit/predict.

    Parameters
    ----------
    arch : str
        Architecture name (see :func:`matdisco.models.nets.build_network`).
    epochs, batch_size, lr, weight_decay, optimizer, scheduler, warmup_epochs, patience,
    grad_clip, seed, device, progress : see :class:`matdisco.training.TrainerConfig`.
    val_fraction : float
        Fraction of the training rows held out for early stopping when no validation
        set is given. 0 (or fewer than 20 rows) disables early stopping: without
        validation rows the whole schedule runs and ``patience`` has no effect.
    scale_inputs : bool
        Standardize input columns (recommended for physical attributes; off for
        element fractions, as in ElemNet).
    scale_target : bool
        Standardize the target for training (predictions are returned in target units).
    loss : {"l1", "mse", "huber"}
        Training loss.
    ema : float or None
        Exponential moving average of the weights (see ``TrainerConfig.ema``).
    dropout_anneal_epochs : int
        Anneal dropout to zero over the last epochs (see
        ``TrainerConfig.dropout_anneal_epochs``); recommended for ElemNet, whose
        deterministic network is otherwise much worse than the one it was trained as.
    dropout_scale : float
        Multiplier of the architecture's dropout probabilities (0: dropout off, e.g. to
        fine-tune an annealed ElemNet; see ``TrainerConfig.dropout_scale``).
    l2sp : float
        Transfer learning only (``fit(init=...)``): the L2-SP penalty of Li et al. (2018),
        ``l2sp · Σ (θ − θ_source)²`` over every weight, added to the training loss (not
        to the validation loss), which keeps the fine-tuned network near the source
        network instead of near zero. 0 disables it.
    freeze_layers : int
        Transfer learning only: keep the first ``freeze_layers`` linear layers (in module
        order, i.e. from the input) at the source weights and fine-tune the rest.
    probe_head : bool
        Transfer learning only: before fine-tuning, refit the last linear layer on the new
        target by ridge least squares on the source network's features (a linear probe),
        then fine-tune as set by the other options ("LP-FT", Kumar et al. 2022). The probe
        adapts the output to the new target's offset and scale before the body moves, so
        the early, large gradients of a mis-fitted head do not distort the source
        features. With ``l2sp`` the penalty then pulls toward the probed weights.
    aux_weight : float
        Multi-fidelity training only (``fit(X_aux=..., y_aux=...)``): weight of the
        auxiliary-fidelity rows in the training loss (1: each row counts as much as a
        target row).
    arch_kwargs : dict, optional
        Extra arguments for ``mlp``.
    """

    def __init__(self, arch: str = "elemnet", epochs: int = 100, batch_size: int = 256,
                 lr: float = 1e-3, weight_decay: float = 0.0, optimizer: str = "adamw",
                 scheduler: str = "cosine", warmup_epochs: float = 1.0,
                 patience: int | None = 30, grad_clip: float | None = None, seed: int = 0,
                 device: str = "auto", progress: bool = False, val_fraction: float = 0.1,
                 scale_inputs: bool = False, scale_target: bool = True, loss: str = "l1",
                 ema: float | None = None, dropout_anneal_epochs: int = 0,
                 dropout_scale: float = 1.0, l2sp: float = 0.0, freeze_layers: int = 0,
                 probe_head: bool = False, aux_weight: float = 1.0,
                 arch_kwargs: dict | None = None) -> None:
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.warmup_epochs = warmup_epochs
        self.patience = patience
        self.grad_clip = grad_clip
        self.seed = seed
        self.device = device
        self.progress = progress
        self.val_fraction = val_fraction
        self.scale_inputs = scale_inputs
        self.scale_target = scale_target
        self.loss = loss
        self.ema = ema
        self.dropout_anneal_epochs = dropout_anneal_epochs
        self.dropout_scale = dropout_scale
        self.l2sp = l2sp
        self.freeze_layers = freeze_layers
        self.probe_head = probe_head
        self.aux_weight = aux_weight
        self.arch_kwargs = arch_kwargs

    # ---------------------------------------------------------------- internals
    def trainer_config(self) -> TrainerConfig:
        """The trainer settings implied by the hyper-parameters (validated: a bad value
        raises :class:`~matdisco.MatdiscoError` naming the setting)."""
        if not 0.0 <= self.val_fraction < 1.0:
            raise MatdiscoError(f"val_fraction={self.val_fraction!r} must be in [0, 1)")
        try:
            resolve_device(self.device)
        except RuntimeError as exc:  # torch's error for a device string it does not know
            raise MatdiscoError(f"device={self.device!r} is not a device: use auto, cpu or "
                                "cuda (e.g. cuda:0)") from exc
        return TrainerConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
            weight_decay=self.weight_decay, optimizer=self.optimizer,
            scheduler=self.scheduler, warmup_epochs=self.warmup_epochs,
            patience=self.patience, grad_clip=self.grad_clip, seed=self.seed,
            device=self.device, progress=self.progress, ema=self.ema,
            dropout_anneal_epochs=self.dropout_anneal_epochs, dropout_scale=self.dropout_scale,
        )

    def _loss_fn(self, reduction: str = "mean") -> torch.nn.Module:
        losses: dict[str, Callable[..., torch.nn.Module]] = {
            "l1": torch.nn.L1Loss, "mse": torch.nn.MSELoss,
            "huber": lambda reduction: torch.nn.SmoothL1Loss(reduction=reduction, beta=0.1)}
        if self.loss not in losses:
            raise MatdiscoError(f"unknown loss {self.loss!r}; choose from {sorted(losses)}")
        return losses[self.loss](reduction=reduction)

    @staticmethod
    def _l2sp_penalty(module: torch.nn.Module) -> Any:
        """A function returning ``Σ (θ − θ_now)²`` over the trainable weights of
        ``module``, anchored at their current (source) values."""
        params = [p for p in module.parameters() if p.requires_grad]
        anchors = [p.detach().clone() for p in params]

        def penalty() -> torch.Tensor:
            if anchors and anchors[0].device != params[0].device:
                anchors[:] = [a.to(params[0].device) for a in anchors]
            return torch.stack([((p - a) ** 2).sum() for p, a in zip(params, anchors,
                                                                       strict=True)]).sum()

        return penalty

    def _objective(self, module: torch.nn.Module, fit: Any, l2sp: bool) -> Any:
        """``compute_loss`` for the trainer: ``fit(model, batch)`` (a loss, or a loss and
        extra logs), plus, with ``l2sp`` and while training, the L2-SP penalty toward the
        current (source) weights of ``module``. Whenever logs are returned, the fit term
        is logged apart as ``fit_loss``."""
        lam = float(self.l2sp)
        penalty = self._l2sp_penalty(module) if l2sp else None

        def compute(model: torch.nn.Module, batch: Any) -> Any:
            out = fit(model, batch)
            loss, logs = out if isinstance(out, tuple) else (out, None)
            total = loss
            if penalty is not None and model.training:
                pen = penalty()
                total = loss + lam * pen
                logs = {**(logs or {}), "l2sp": float(pen.detach())}
            if logs is None:
                return total
            return total, {"fit_loss": float(loss.detach()), **logs}

        return compute

    def _fidelity_fit(self) -> Any:
        """The fit term of multi-fidelity training: batches are ``(x, y, fidelity)`` (0:
        target rows, 1: auxiliary rows, weighted by ``aux_weight``); each row's error is
        taken on its fidelity's head. Validation batches ``(x, y)`` are target rows."""
        per_row, mean = self._loss_fn("none"), self._loss_fn()
        w_aux = float(self.aux_weight)

        def fit(model: torch.nn.Module, batch: Any) -> Any:
            out = model(batch[0])
            if len(batch) < 3:
                return mean(out[:, 0], batch[1])
            is_aux = batch[2] > 0
            err = per_row(torch.where(is_aux, out[:, 1], out[:, 0]), batch[1])
            weight = torch.where(is_aux, torch.full_like(err, w_aux), torch.ones_like(err))
            logs = {}
            if (~is_aux).any():
                logs["target_loss"] = float(err[~is_aux].mean().detach())
            if is_aux.any():
                logs["aux_loss"] = float(err[is_aux].mean().detach())
            return (weight * err).sum() / len(err), logs

        return fit

    def _freeze(self, n: int) -> None:
        linears = [m for m in self.network_.modules() if isinstance(m, torch.nn.Linear)]
        if n >= len(linears):
            raise MatdiscoError(f"freeze_layers={n}, but {self.arch!r} has only "
                                f"{len(linears)} linear layers (at least one must train)")
        for m in linears[:n]:
            for p in m.parameters():
                p.requires_grad_(False)

    @torch.no_grad()
    def _probe_head(self, train: tuple[torch.Tensor, ...]) -> dict[str, float]:
        """Refit the last linear layer on the new target in closed form (the LP of LP-FT).

        Ridge least squares of the (scaled) target on the inputs of the last linear layer,
        computed with the network in eval mode; the ridge weight is 1e-3 of the mean
        feature variance. Deterministic, so a resumed fine-tuning repeats it exactly
        before its checkpoint (which holds every weight) is loaded.
        """
        name, head = [(n, m) for n, m in self.network_.named_modules()
                      if isinstance(m, torch.nn.Linear)][-1]
        if head.out_features != 1:
            raise MatdiscoError(f"probe_head needs a single-output last layer, got "
                                f"{head.out_features} outputs")
        parent_name, _, attr = name.rpartition(".")
        parent = self.network_.get_submodule(parent_name)
        x, y = train[0], train[1].double().reshape(-1)
        was_training = self.network_.training
        self.network_.eval()
        try:
            # the features are what the network returns with its last layer taken out
            # (row order kept, even for networks that regroup rows internally)
            setattr(parent, attr, torch.nn.Identity())
            try:
                F_ = torch.cat([self.network_(x[i:i + 8192]) for i in range(0, len(x), 8192)])
            finally:
                setattr(parent, attr, head)
            F_ = F_.double().reshape(len(x), -1)
            is_output = F_.shape[1] == head.in_features
            if is_output:
                before = F_ @ head.weight.double().reshape(-1) + (
                    0.0 if head.bias is None else float(head.bias))
                mu_f, mu_y = F_.mean(0), y.mean()
                Fc = F_ - mu_f
                gram = Fc.T @ Fc / len(Fc)
                ridge = 1e-3 * float(torch.diagonal(gram).mean()) + 1e-12
                w = torch.linalg.solve(gram + ridge * torch.eye(len(gram), dtype=gram.dtype),
                                       Fc.T @ (y - mu_y) / len(Fc))
                b = mu_y - mu_f @ w
                head.weight.copy_(w.reshape(1, -1).to(head.weight.dtype))
                if head.bias is not None:
                    head.bias.copy_(b.reshape(1).to(head.bias.dtype))
                after = F_ @ w + b
                # the refitted layer must be what the network's output is computed from
                check = self.network_(x[:256]).double().reshape(-1)
                is_output = torch.allclose(check, after[:256],
                                           atol=1e-3 * (1 + float(after.abs().max())))
        finally:
            self.network_.train(was_training)
        if not is_output:
            raise MatdiscoError(f"probe_head: the last linear layer of {self.arch!r} is not "
                                "its output layer; this architecture cannot be probed")
        return {"l1_before": float((before - y).abs().mean()),
                "l1_after": float((after - y).abs().mean())}

    def _build(self, n_features: int) -> None:
        set_seed(self.seed)
        self.network_ = build_network(self.arch, n_features, **(self.arch_kwargs or {}))
        self.n_features_in_ = n_features

    def _xs(self, X: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((X - self.x_mean_) / self.x_std_).float()

    # ---------------------------------------------------------------- API
    def fit(self, X: Any, y: Any, X_val: Any | None = None, y_val: Any | None = None,
            init: dict[str, torch.Tensor] | None = None, run_dir: str | Path | None = None,
            checkpoint_name: str = "checkpoint", resume: bool = False,
            X_extra: Any | None = None, y_extra: Any | None = None,
            X_aux: Any | None = None, y_aux: Any | None = None) -> NeuralRegressor:
        """Train the network.

        Parameters
        ----------
        X, y : array-like
            Training data.
        X_val, y_val : array-like, optional
            Early-stopping data; if absent, ``val_fraction`` of ``X`` is held out.
        init : dict of tensors, optional
            Weights and scalers of a previous model (:meth:`state_tensors`) to start from
            (transfer learning: all weights are then fine-tuned). Scalers are taken over.
        run_dir : path, optional
            Where the trainer writes its checkpoint and history.
        resume : bool
            Continue an interrupted training from the checkpoint in ``run_dir``.
        X_extra, y_extra : array-like, optional
            More training rows that never go into the early-stopping split (e.g. synthetic
            compositions labelled by a teacher model, :mod:`matdisco.property.distill`).
        X_aux, y_aux : array-like, optional
            Rows of another fidelity of the same property (e.g. DFT formation energies
            beside experimental enthalpies), trained alongside ``X`` (multi-fidelity
            co-training; never in the early-stopping split). The output layer is
            duplicated for them; the second head starts as a copy of the initial output
            layer (with ``init``: the source's, which was trained on that fidelity) and
            is dropped after training, so the fitted network keeps its architecture.
            Targets are in the same units as ``y`` (and share its scaling).
        """
        X, y = _check_xy(X, y)
        assert y is not None
        if X_val is None and self.val_fraction > 0 and len(X) >= 20:
            rng = np.random.default_rng(self.seed + 7919)
            perm = rng.permutation(len(X))
            n_val = max(1, int(round(self.val_fraction * len(X))))
            vi, ti = perm[:n_val], perm[n_val:]
            X, X_val, y, y_val = X[ti], X[vi], y[ti], y[vi]
        if X_extra is not None:
            Xe, ye = _check_xy(X_extra, y_extra)
            if ye is None or Xe.shape[1] != X.shape[1]:
                raise MatdiscoError(f"extra training rows need targets and {X.shape[1]} "
                                    f"features, got {Xe.shape}")
            X, y = np.concatenate([X, Xe]), np.concatenate([y, ye])
        Xa = ya = None
        if X_aux is not None:
            Xa, ya = _check_xy(X_aux, y_aux)
            if ya is None or Xa.shape[1] != X.shape[1] or len(Xa) == 0:
                raise MatdiscoError(f"auxiliary-fidelity rows need targets and {X.shape[1]} "
                                    f"features, got {Xa.shape}")
        if not np.isfinite(self.aux_weight) or self.aux_weight < 0:
            raise MatdiscoError(f"aux_weight={self.aux_weight!r} must be >= 0")
        check_fine_tuning({"l2sp": self.l2sp, "freeze_layers": self.freeze_layers,
                           "probe_head": self.probe_head}, init is not None)
        if init is not None:
            self.load_state_tensors(init, expected_features=X.shape[1])
            self._freeze(self.freeze_layers)  # checks the layer count before any training
        else:
            self._build(X.shape[1])
            if self.scale_inputs:
                self.x_mean_ = X.mean(axis=0)
                self.x_std_ = np.where(X.std(axis=0) > 1e-8, X.std(axis=0), 1.0)
            else:
                self.x_mean_ = np.zeros(X.shape[1], np.float32)
                self.x_std_ = np.ones(X.shape[1], np.float32)
            self.y_mean_ = float(y.mean()) if self.scale_target else 0.0
            self.y_std_ = float(y.std()) if self.scale_target and y.std() > 0 else 1.0
        train: tuple[torch.Tensor, ...] = (
            self._xs(X), torch.from_numpy((y - self.y_mean_) / self.y_std_).float())
        val = None
        if X_val is not None and y_val is not None:
            Xv, yv = _check_xy(X_val, y_val)
            assert yv is not None
            val = (self._xs(Xv), torch.from_numpy((yv - self.y_mean_) / self.y_std_).float())
        n_rows = len(train[0]) + (0 if Xa is None else len(Xa))
        if n_rows < 2 and self.epochs > 0 and any(
                isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                for m in self.network_.modules()):
            # torch's "Expected more than 1 value per channel" would stop the first batch
            raise MatdiscoError(f"{self.arch!r} has batch normalization, which needs at "
                                f"least 2 training rows; got {n_rows}")
        self.probe_: dict[str, float] = {}
        # the auxiliary head starts as the initial (source) output layer, before any probe
        aux_head = copy.deepcopy(_output_layer(self.network_)[1]) if Xa is not None else None
        if init is not None and self.probe_head:
            self.probe_ = self._probe_head(train)
        model: torch.nn.Module = self.network_
        l2sp = init is not None and self.l2sp > 0
        objective = None
        if aux_head is not None:
            assert Xa is not None and ya is not None
            model = _FidelityHeads(self.network_, aux_head)
            try:
                with torch.no_grad():
                    was = model.training
                    shape = tuple(model.eval()(train[0][:2]).shape)
                    model.train(was)
            except RuntimeError as exc:
                shape = (str(exc),)
            if shape != (min(2, len(train[0])), 2):
                self.network_ = model.unwrap()
                raise MatdiscoError(f"multi-fidelity training: {self.arch!r} cannot be given "
                                    f"a second output head (its last linear layer is not "
                                    f"its output layer: {shape})")
            fid = torch.cat([torch.zeros(len(train[0]), dtype=torch.long),
                             torch.ones(len(Xa), dtype=torch.long)])
            train = (torch.cat([train[0], self._xs(Xa)]),
                     torch.cat([train[1], torch.from_numpy(
                         (ya - self.y_mean_) / self.y_std_).float()]), fid)
            objective = self._objective(model, self._fidelity_fit(), l2sp)
        elif l2sp:
            loss_fn = self._loss_fn()
            objective = self._objective(self.network_, lambda m, b: loss_fn(m(b[0]), b[1]),
                                        True)
        trainer = Trainer(model, self.trainer_config(), loss_fn=self._loss_fn(),
                          compute_loss=objective, run_dir=run_dir,
                          checkpoint_name=checkpoint_name)
        try:
            self.history_ = trainer.fit(train, val, resume=resume)
        finally:
            if isinstance(model, _FidelityHeads):
                self.network_ = model.unwrap()
        self.resumed_epochs_ = trainer.resumed_epochs  # epochs read from a checkpoint
        self.network_.cpu()
        return self

    @torch.no_grad()
    def predict(self, X: Any, batch_size: int = 8192) -> np.ndarray:
        """Predict targets (in target units)."""
        if not hasattr(self, "network_"):
            raise MatdiscoError("the model is not fitted")
        X, _ = _check_xy(X)
        if X.shape[1] != self.n_features_in_:
            raise MatdiscoError(
                f"X has {X.shape[1]} features, the model was trained on {self.n_features_in_}"
            )
        dev = resolve_device(self.device)
        net = self.network_.to(dev).eval()
        xs = self._xs(X)
        out = [net(xs[i:i + batch_size].to(dev)).cpu() for i in range(0, len(xs), batch_size)]
        self.network_.cpu()
        pred = torch.cat(out).numpy() if out else np.zeros(0, np.float32)
        return pred * self.y_std_ + self.y_mean_

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Weights and scalers as a flat dict for ``.safetensors``."""
        tensors = {f"net.{k}": v for k, v in self.network_.state_dict().items()}
        tensors["scaler.x_mean"] = torch.from_numpy(np.asarray(self.x_mean_, np.float32))
        tensors["scaler.x_std"] = torch.from_numpy(np.asarray(self.x_std_, np.float32))
        tensors["scaler.y"] = torch.tensor([self.y_mean_, self.y_std_], dtype=torch.float64)
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           expected_features: int | None = None,
                           source: str = "weights") -> NeuralRegressor:
        """Rebuild the fitted model from :meth:`state_tensors`, checking every shape."""
        if "scaler.x_mean" not in tensors or "scaler.y" not in tensors:
            raise MatdiscoError(f"{source}: not a matdisco NeuralRegressor weights file")
        for k, v in tensors.items():
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                raise MatdiscoError(f"{source}: tensor {k!r} holds NaN or inf values (a "
                                    "diverged training or a damaged file)")
        n_features = int(tensors["scaler.x_mean"].numel())
        if expected_features is not None and n_features != expected_features:
            raise MatdiscoError(
                f"{source}: weights expect {n_features} input features, the data has "
                f"{expected_features}"
            )
        self._build(n_features)
        state = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        load_state_into(self.network_, state, source, f"architecture {self.arch!r}")
        self.x_mean_ = tensors["scaler.x_mean"].numpy().astype(np.float32)
        self.x_std_ = tensors["scaler.x_std"].numpy().astype(np.float32)
        self.y_mean_, self.y_std_ = (float(v) for v in tensors["scaler.y"])
        return self
