"""Scikit-learn-style estimators: a signal classifier trained on ideal data and the
imitation refiner trained against it (classifier frozen).

Both train with :class:`matdisco.training.Trainer` and save to run directories
(``config.json`` + ``.safetensors``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from matdisco import MatdiscoError
from matdisco.refine.losses import (
    highpass,
    kl_discrepancy,
    prediction_loss,
    prototype_loss,
    regularization_loss,
)
from matdisco.refine.nets import PrototypeClassifier, UNet, build_classifier
from matdisco.training import (
    RunDir,
    Trainer,
    TrainerConfig,
    load_state_checked,
    resolve_device,
    set_seed,
)
from matdisco.xrd.simulate import validate_signals


class _FeatureNet(Protocol):
    """The feature maps and embedding every classifier of
    :func:`~matdisco.refine.nets.build_classifier` exposes."""

    def features(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...


def _fingerprint(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def _batched(fn: Any, x: torch.Tensor, device: torch.device, bs: int = 512) -> torch.Tensor:
    outs = [fn(x[i:i + bs].to(device)).cpu() for i in range(0, len(x), bs)]
    return torch.cat(outs) if outs else torch.empty(0)


class SignalClassifier:
    """Classifier of 1D signals (or flattened images) trained on ideal simulated data.

    Parameters
    ----------
    arch : {"cnn1d", "lstm", "densenet1d", "lenet"}
        Network (see :mod:`matdisco.refine.nets`).
    prototypical : bool
        Learn an embedding with one prototype per class (running prototype update) and
        classify by the nearest prototype.
    class_names : list of str, optional
        Names of the classes (default ``"0", "1", ...``).
    epochs, batch_size, lr, weight_decay, patience : training hyper-parameters
    allow_negative : bool
        Accept negative signal values (False for intensities).
    two_theta : array, optional
        Grid of the training signals; when set, inputs given with a grid are checked.
    arch_kwargs : dict, optional
        Extra constructor arguments of the network.
    adversarial_eps : float
        When > 0, train on clean and FGSM-perturbed signals (``x + ε·sign(∇ₓℓ)``, clipped
        to ``[0, clip_max]``, no lower bound with ``allow_negative``), half and half. A
        classifier less sensitive to tiny perturbations makes the refiner's changes more
        meaningful (it cannot "fool" the classifier with imperceptible edits as easily).
        Costs about 2.5× training time.
    clip_max : float, optional
        Upper bound of the signal values (e.g. 1 for images), used for the perturbed
        signals.
    seed : int
        Seed of initialisation and shuffling.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    progress : bool
        Show a progress bar.
    """

    def __init__(self, arch: str = "cnn1d", prototypical: bool = False,
                 class_names: list[str] | None = None, epochs: int = 20, batch_size: int = 64,
                 lr: float = 2e-3, weight_decay: float = 1e-4, patience: int | None = 8,
                 allow_negative: bool = False, two_theta: np.ndarray | None = None,
                 arch_kwargs: dict[str, Any] | None = None, adversarial_eps: float = 0.0,
                 clip_max: float | None = None, seed: int = 0,
                 device: str = "auto", progress: bool = False) -> None:
        self.arch = arch
        self.adversarial_eps = float(adversarial_eps)
        self.clip_max = clip_max
        self.prototypical = prototypical
        self.class_names = class_names
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.allow_negative = allow_negative
        self.two_theta = None if two_theta is None else np.asarray(two_theta, float)
        self.arch_kwargs = dict(arch_kwargs or {})
        self.seed = seed
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------------ helpers
    def _check(self, x: Any, name: str = "signals", two_theta: Any = None) -> torch.Tensor:
        length = getattr(self, "length_", None)
        a = validate_signals(x, length, allow_negative=self.allow_negative, name=name,
                             two_theta=two_theta, expected_two_theta=self.two_theta)
        return torch.from_numpy(a)

    def _build(self) -> nn.Module:
        set_seed(self.seed)
        return build_classifier(self.arch, self.length_, self.n_classes_,
                                prototypical=self.prototypical, **self.arch_kwargs)

    def _loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, y = batch[0], batch[1]
        if self.prototypical:
            pm = cast(PrototypeClassifier, model)
            e = pm.embed(x)
            if pm.training:
                pm.update_prototypes(e.detach(), y)
            logits = pm.logits_from_embedding(e)
        else:
            logits = model(x)
        loss = F.cross_entropy(logits, y)
        if self.prototypical:  # the softmax head is trained too: it gives the refiner's ℓ_pred
            loss = loss + F.cross_entropy(pm.head_logits(e), y)
        if self.adversarial_eps > 0 and model.training:
            loss = 0.5 * (loss + F.cross_entropy(self._forward_logits(model, self._fgsm(
                model, x, y)), y))
        return loss, {"acc": float((logits.argmax(1) == y).float().mean())}

    def _forward_logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.prototypical:
            pm = cast(PrototypeClassifier, model)
            return pm.logits_from_embedding(pm.embed(x))
        return model(x)

    def _fgsm(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """FGSM-perturbed copy of ``x`` (adversarial training)."""
        xg = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(self._forward_logits(model, xg), y), xg)
        xa = x.detach() + self.adversarial_eps * g.sign()
        lo = None if self.allow_negative else 0.0
        return xa.clamp(min=lo, max=self.clip_max).detach()

    # ------------------------------------------------------------------ API
    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None,
            run_dir: str | os.PathLike[str] | None = None, two_theta: Any = None
            ) -> SignalClassifier:
        """Train on ideal signals ``X`` (n, L) with integer labels ``y``.

        Without ``X_val``, 10% of the data is held out for early stopping.
        """
        xt = self._check(X, "training signals", two_theta)
        ya = np.asarray(y)
        if ya.shape != (len(xt),):
            raise MatdiscoError(f"labels have shape {ya.shape}, expected ({len(xt)},)")
        if not len(ya):
            raise MatdiscoError("no training signals")
        if not np.issubdtype(ya.dtype, np.integer) or ya.min() < 0:
            raise MatdiscoError("labels must be non-negative integers (class indices)")
        self.length_ = xt.shape[1]
        n_classes = int(ya.max()) + 1
        if self.class_names is not None:
            if len(self.class_names) < n_classes:
                raise MatdiscoError(
                    f"{len(self.class_names)} class names but label {n_classes - 1} present"
                )
            n_classes = len(self.class_names)
        self.n_classes_ = n_classes
        self.class_names_ = list(self.class_names or [str(i) for i in range(n_classes)])
        self.class_prior_ = np.bincount(ya, minlength=n_classes) / len(ya)
        yt = torch.from_numpy(ya.astype(np.int64))
        if X_val is None:
            rng = np.random.default_rng(self.seed)
            perm = rng.permutation(len(xt))
            nv = max(1, len(xt) // 10)
            vi, ti = torch.from_numpy(perm[:nv]), torch.from_numpy(perm[nv:])
            train, val = (xt[ti], yt[ti]), (xt[vi], yt[vi])
        else:
            train = (xt, yt)
            xv, yv = self._check(X_val, "validation signals"), np.asarray(y_val)
            if yv.shape != (len(xv),) or not np.issubdtype(yv.dtype, np.integer) or (
                    len(yv) and (yv.min() < 0 or yv.max() >= n_classes)):
                raise MatdiscoError(f"validation labels must be {len(xv)} integer class "
                                    f"indices in [0, {n_classes})")
            val = (xv, torch.from_numpy(yv.astype(np.int64)))
        self.model_ = self._build()
        cfg = TrainerConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            weight_decay=self.weight_decay, patience=self.patience,
                            seed=self.seed, device=self.device, progress=self.progress,
                            grad_clip=5.0, checkpoint_every=1 if run_dir else 0)
        trainer = Trainer(self.model_, cfg, compute_loss=self._loss, run_dir=run_dir,
                          checkpoint_name="classifier_checkpoint")
        self.history_ = trainer.fit(train, val)
        self.model_.eval()
        self._device = trainer.device
        if self.prototypical:
            # final prototypes from eval-mode embeddings (dropout and batch-norm statistics
            # make training-mode embeddings differ in scale from the ones used at inference)
            pm = cast(PrototypeClassifier, self.model_)
            e = _batched(pm.embed, train[0], self._device)
            ytr = train[1]
            with torch.no_grad():
                for c in torch.unique(ytr):
                    pm.prototypes[int(c)] = e[ytr == c].mean(0).to(pm.prototypes.device)
        return self

    def _fitted(self) -> nn.Module:
        if not hasattr(self, "model_"):
            raise MatdiscoError("the classifier is not fitted; call fit() or load() first")
        return self.model_

    def logits(self, X: Any, two_theta: Any = None) -> np.ndarray:
        """Class logits of ``X``."""
        m = self._fitted().eval()
        return _batched(m, self._check(X, two_theta=two_theta), self._dev()).numpy()

    def predict_proba(self, X: Any, two_theta: Any = None) -> np.ndarray:
        """Class probabilities of ``X``."""
        lg = self.logits(X, two_theta)
        e = np.exp(lg - lg.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def predict(self, X: Any, two_theta: Any = None) -> np.ndarray:
        """Predicted class indices."""
        return self.logits(X, two_theta).argmax(1)

    def score(self, X: Any, y: Any) -> float:
        """Accuracy."""
        return float((self.predict(X) == np.asarray(y)).mean())

    def embed(self, X: Any) -> np.ndarray:
        """Embeddings (inputs of the classification head / prototype space)."""
        m = self._fitted().eval()
        return _batched(m.embed, self._check(X), self._dev()).numpy()

    def _dev(self) -> torch.device:
        dev = getattr(self, "_device", None) or resolve_device(self.device)
        self._fitted().to(dev)
        return dev

    @property
    def fingerprint(self) -> str:
        """Hash of the classifier's weights (identifies it to a refiner)."""
        return _fingerprint(self._fitted())

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the classifier."""
        return {"kind": "signal_classifier", "arch": self.arch,
                "prototypical": self.prototypical, "class_names": self.class_names_,
                "length": self.length_, "n_classes": self.n_classes_,
                "class_prior": list(map(float, self.class_prior_)),
                "allow_negative": self.allow_negative,
                "two_theta": None if self.two_theta is None else self.two_theta.tolist(),
                "arch_kwargs": self.arch_kwargs, "seed": self.seed,
                "training": {"epochs": self.epochs, "batch_size": self.batch_size,
                             "lr": self.lr, "weight_decay": self.weight_decay,
                             "adversarial_eps": self.adversarial_eps,
                             "clip_max": self.clip_max},
                "fingerprint": self.fingerprint}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save into a run directory (``config.json`` + ``classifier.safetensors``)."""
        rd = RunDir(path)
        rd.save_weights("classifier", self._fitted().state_dict())
        rd.write_config(self.config())
        return rd.path

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> SignalClassifier:
        """Load a classifier saved by :meth:`save`."""
        rd = RunDir.open(path)
        cfg = rd.read_config()
        if cfg.get("kind") != "signal_classifier":
            raise MatdiscoError(f"{rd / 'config.json'}: not a saved signal classifier")
        _require(cfg, rd, "arch", "prototypical", "class_names", "allow_negative", "length",
                  "n_classes", "class_prior")
        obj = cls(arch=cfg["arch"], prototypical=cfg["prototypical"],
                  class_names=cfg["class_names"], allow_negative=cfg["allow_negative"],
                  two_theta=cfg.get("two_theta"), arch_kwargs=cfg.get("arch_kwargs"),
                  seed=cfg.get("seed", 0), device=device)
        obj.length_, obj.n_classes_ = int(cfg["length"]), int(cfg["n_classes"])
        obj.class_names_ = list(cfg["class_names"])
        obj.class_prior_ = np.asarray(cfg["class_prior"], float)
        obj.model_ = obj._build()
        load_state_checked(obj.model_, rd / "classifier.safetensors")
        obj.model_.eval()
        return obj


def _highpass_image(x: torch.Tensor, side: int, window: int) -> list[torch.Tensor]:
    """:func:`~matdisco.refine.losses.highpass` of flattened images ``(N, side·W)``."""
    return [h.reshape(x.shape) for h in highpass(x.reshape(len(x), side, -1), window)]


def _require(cfg: dict[str, Any], rd: RunDir, *keys: str) -> None:
    """Raise naming the file and field when ``cfg`` lacks one of ``keys``."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise MatdiscoError(f"{rd / 'config.json'}: missing field(s) {missing}")


class ImitationRefiner:
    """Refiner network trained so that a frozen classifier recognises refined signals.

    Parameters
    ----------
    classifier : SignalClassifier
        Fitted classifier (trained on ideal data); frozen during refiner training.
    arch : {"unet1d", "unet2d"}
        Refiner network.
    lam, alpha, beta, gamma : float
        Weights of ℓ_pred, ℓ_proto, ℓ_reg and ℓ_kl (see :mod:`matdisco.refine.losses`).
        ``alpha > 0`` requires a prototypical classifier.
    p : float
        Norm of the regulariser.
    psi : {"identity", "features", "highpass"}
        Space of the regulariser: the signal itself, the classifier's feature maps, or the
        signal minus its moving average over ``psi_window`` points (slowly varying
        changes, such as removing a background, then cost nothing; peaks stay guarded).
    psi_window : int
        Width of the moving average of ``psi="highpass"`` (points, or pixels per side).
    channels : tuple of int
        U-Net widths.
    output : {"residual", "mask", "background"}
        What the U-Net predicts: an additive correction, a multiplicative attenuation
        in ``(0, 1]`` (the refiner may only remove intensity), or a background to
        subtract (slowly varying, non-negative, never more than the signal's running
        minimum). See :class:`~matdisco.refine.nets.UNet`.
    smooth_window, floor_window : int
        Windows of ``output="background"``: the moving average that makes the
        background smooth, and the running minimum that bounds it (points).
    epochs, batch_size, lr : training hyper-parameters
    seed, device, progress : as for :class:`SignalClassifier`
    prior : array, optional
        Class distribution targeted by ℓ_kl (default: the classifier's training prior).
    """

    #: set by :meth:`fit`; ``None`` for a loaded refiner whose config does not say
    targeted_: bool | None

    def __init__(self, classifier: SignalClassifier, arch: str = "unet1d", lam: float = 1.0,
                 alpha: float = 0.0, beta: float = 1.0, gamma: float = 0.0, p: float = 1.0,
                 psi: str = "identity", channels: tuple[int, ...] = (16, 32, 64),
                 output: str = "residual", epochs: int = 30, batch_size: int = 32,
                 lr: float = 1e-3, seed: int = 0, device: str = "auto", progress: bool = False,
                 prior: np.ndarray | None = None, psi_window: int = 101,
                 smooth_window: int = 101, floor_window: int = 9) -> None:
        self.classifier = classifier
        self.prior = None if prior is None else np.asarray(prior, float)
        self.arch = arch
        self.lam, self.alpha, self.beta, self.gamma, self.p = lam, alpha, beta, gamma, p
        self.psi, self.psi_window = psi, psi_window
        self.smooth_window, self.floor_window = smooth_window, floor_window
        self.channels = tuple(channels)
        self.output = output
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.seed, self.device, self.progress = seed, device, progress

    def _build(self) -> nn.Module:
        if self.arch not in ("unet1d", "unet2d"):
            raise MatdiscoError(f"unknown refiner {self.arch!r} (unet1d, unet2d)")
        set_seed(self.seed)
        return UNet(dim=1 if self.arch == "unet1d" else 2, channels=self.channels,
                    nonneg=not self.classifier.allow_negative, output=self.output,
                    smooth_window=self.smooth_window, floor_window=self.floor_window)

    def fit(self, X: Any, y: Any = None, run_dir: str | os.PathLike[str] | None = None,
            two_theta: Any = None) -> ImitationRefiner:
        """Train the refiner on imperfect signals ``X``.

        With target labels ``y`` the refinement is targeted (cross-entropy), without it is
        non-targeted (entropy).
        """
        clf = self.classifier
        cmod = clf._fitted()
        if self.alpha > 0 and not clf.prototypical:
            raise MatdiscoError("alpha > 0 (prototype loss) needs a prototypical classifier")
        if self.psi not in ("identity", "features", "highpass"):
            raise MatdiscoError(
                f"psi must be 'identity', 'features' or 'highpass', got {self.psi!r}")
        if self.psi == "highpass" and (int(self.psi_window) != self.psi_window
                                       or self.psi_window < 3 or self.psi_window % 2 == 0):
            raise MatdiscoError(f"psi_window must be an odd integer >= 3, got {self.psi_window!r}")
        xt = clf._check(X, "imperfect signals", two_theta)
        tensors: tuple[torch.Tensor, ...] = (xt,)
        self.targeted_ = y is not None
        if y is not None:
            yr = np.asarray(y)
            if not np.issubdtype(yr.dtype, np.integer) and not (
                    np.issubdtype(yr.dtype, np.floating) and np.isfinite(yr).all()
                    and (yr == np.round(yr)).all()):
                raise MatdiscoError("target labels must be integer class indices")
            ya = yr.astype(np.int64)
            if ya.shape != (len(xt),) or ya.min() < 0 or ya.max() >= clf.n_classes_:
                raise MatdiscoError(
                    f"target labels must be {len(xt)} class indices in [0, {clf.n_classes_})"
                )
            tensors = (xt, torch.from_numpy(ya))
        cfg = TrainerConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            patience=None, seed=self.seed, device=self.device,
                            progress=self.progress, grad_clip=5.0,
                            checkpoint_every=1 if run_dir else 0)
        dev = resolve_device(self.device)
        cmod.to(dev).eval()
        for prm in cmod.parameters():
            prm.requires_grad_(False)
        if self.prior is not None and (
                self.prior.shape != (clf.n_classes_,) or not np.isfinite(self.prior).all()
                or (self.prior < 0).any() or self.prior.sum() <= 0):
            raise MatdiscoError(
                f"prior must be {clf.n_classes_} non-negative finite weights (one per class) "
                f"with a positive sum, got {self.prior.tolist()}")
        pr = clf.class_prior_ if self.prior is None else self.prior / self.prior.sum()
        prior = torch.as_tensor(pr, dtype=torch.float32, device=dev)
        net = cast(_FeatureNet, cmod)
        hp = partial(highpass, window=int(self.psi_window))
        if self.arch == "unet2d":  # flattened images: filter them as images, as the U-Net
            side = int(round(clf.length_ ** 0.5))
            hp = partial(_highpass_image, side=side, window=int(self.psi_window))
        psi_fns: dict[str, Callable[[torch.Tensor], list[torch.Tensor]]] = {
            "features": net.features, "highpass": hp}
        psi_fn = psi_fns.get(self.psi)

        def compute_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            # cuDNN cannot backpropagate through an RNN in eval mode (the frozen LSTM)
            with torch.backends.cudnn.flags(enabled=clf.arch != "lstm"):
                return _compute_loss(model, batch)

        def _compute_loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            x = batch[0]
            target = batch[1] if len(batch) > 1 else None
            rx = model(x)
            logs: dict[str, float] = {}
            total = torch.zeros((), device=x.device)
            need_logits = self.lam > 0 or self.gamma > 0
            e = net.embed(rx) if (self.alpha > 0 or clf.prototypical) else None
            if need_logits:  # ℓ_pred and ℓ_kl: the softmax head (ℓ_proto: the prototypes)
                if clf.prototypical:
                    assert e is not None
                    logits = cast(PrototypeClassifier, cmod).head_logits(e)
                else:
                    logits = cmod(rx)
            if self.lam > 0:
                lp = prediction_loss(logits, target)
                total = total + self.lam * lp
                logs["pred"] = float(lp.detach())
            if self.alpha > 0:
                assert e is not None
                lpr = prototype_loss(e, cast(PrototypeClassifier, cmod).prototypes, target)
                total = total + self.alpha * lpr
                logs["proto"] = float(lpr.detach())
            if self.beta > 0:
                lr_ = regularization_loss(x, rx, self.p, psi_fn)
                total = total + self.beta * lr_
                logs["reg"] = float(lr_.detach())
            if self.gamma > 0:
                lk = kl_discrepancy(logits, prior)
                total = total + self.gamma * lk
                logs["kl"] = float(lk.detach())
            return total, logs

        self.model_ = self._build()
        trainer = Trainer(self.model_, cfg, compute_loss=compute_loss, run_dir=run_dir,
                          checkpoint_name="refiner_checkpoint")
        self.history_ = trainer.fit(tensors)
        self.model_.eval()
        self.classifier_fingerprint_ = clf.fingerprint
        return self

    def _fitted(self) -> nn.Module:
        if not hasattr(self, "model_"):
            raise MatdiscoError("the refiner is not fitted; call fit() or load() first")
        return self.model_

    def transform(self, X: Any, two_theta: Any = None) -> np.ndarray:
        """Refine signals ``X`` (validated against the classifier's length and grid)."""
        m = self._fitted().eval()
        xt = self.classifier._check(X, "signals to refine", two_theta)
        dev = self.classifier._dev()
        return _batched(m.to(dev), xt, dev).numpy()

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild the refiner."""
        return {"kind": "imitation_refiner", "arch": self.arch, "lam": self.lam,
                "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "p": self.p,
                "psi": self.psi, "psi_window": self.psi_window,
                "channels": list(self.channels), "output": self.output,
                "smooth_window": self.smooth_window, "floor_window": self.floor_window,
                "targeted": getattr(self, "targeted_", None),
                "training": {"epochs": self.epochs, "batch_size": self.batch_size,
                             "lr": self.lr, "seed": self.seed},
                "classifier_fingerprint": self.classifier_fingerprint_}

    def save(self, path: str | os.PathLike[str], with_classifier: bool = True) -> Path:
        """Save into a run directory (``config.json`` + ``refiner.safetensors``; the
        classifier goes to ``classifier/`` when ``with_classifier``)."""
        rd = RunDir(path)
        rd.save_weights("refiner", self._fitted().state_dict())
        if with_classifier:
            self.classifier.save(rd / "classifier")
        rd.write_config(self.config())
        return rd.path

    @classmethod
    def load(cls, path: str | os.PathLike[str], classifier: SignalClassifier | None = None,
             device: str = "auto") -> ImitationRefiner:
        """Load a refiner; ``classifier`` defaults to the one saved beside it.

        Raises :class:`~matdisco.MatdiscoError` when the classifier is not the one the
        refiner was trained with.
        """
        rd = RunDir.open(path)
        cfg = rd.read_config()
        if cfg.get("kind") != "imitation_refiner":
            raise MatdiscoError(f"{rd / 'config.json'}: not a saved imitation refiner")
        _require(cfg, rd, "arch", "lam", "alpha", "beta", "gamma", "p", "psi", "channels",
                 "classifier_fingerprint")
        if classifier is None:
            if not (rd / "classifier" / "config.json").exists():
                raise MatdiscoError(f"{rd.path}: no classifier saved with the refiner; pass one")
            classifier = SignalClassifier.load(rd / "classifier", device=device)
        fp = classifier.fingerprint
        if fp != cfg["classifier_fingerprint"]:
            raise MatdiscoError(
                f"{rd.path}: the refiner was trained with classifier "
                f"{cfg['classifier_fingerprint']} but is applied with a different classifier "
                f"({fp}); retrain the refiner or "
                "use its own classifier"
            )
        tr = cfg.get("training", {})
        obj = cls(classifier, arch=cfg["arch"], lam=cfg["lam"], alpha=cfg["alpha"],
                  beta=cfg["beta"], gamma=cfg["gamma"], p=cfg["p"], psi=cfg["psi"],
                  psi_window=cfg.get("psi_window", 101),
                  smooth_window=cfg.get("smooth_window", 101),
                  floor_window=cfg.get("floor_window", 9),
                  channels=tuple(cfg["channels"]), output=cfg.get("output", "residual"),
                  epochs=tr.get("epochs", 30),
                  batch_size=tr.get("batch_size", 32), lr=tr.get("lr", 1e-3),
                  seed=tr.get("seed", 0), device=device)
        obj.model_ = obj._build()
        load_state_checked(obj.model_, rd / "refiner.safetensors")
        obj.model_.eval()
        obj.classifier_fingerprint_ = fp
        obj.targeted_ = cfg.get("targeted")
        return obj
