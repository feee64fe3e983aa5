"""PADNet: phase-region classification straight from raw 2D detector images.

The peak-area-detection (PAD) layer applies four f×f *slope filters* (two diagonal, one
vertical, one horizontal; +1 on one half of the window, −1 on the other), takes the
absolute value, an f×f max filter, batch normalisation and a spatial softmax. A smooth
background has a small, nearly constant slope, so it is cancelled, while the sharp rings
give large responses. The filters can be frozen (fixed slope filters) or trainable.
A small convolutional graph follows, then (optionally) a composition branch of two
256-unit layers, and a 256 → classes classifier.

The one-image variant (SLAC-like) takes ``(N, 1, H, W)``; the two-frame variant
(NIST-like) takes ``(N, 2, H, W)`` and runs the same PAD layer and convolutional graph
(shared weights) on both frames and averages their features, so both variants have exactly
the same number of parameters.

Training uses :class:`matdisco.training.Trainer` (cross-entropy, Adam with L2 weight
decay, early stopping on a validation split).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from matdisco import MatdiscoError
from matdisco._io import config_errors
from matdisco.xrd.detector import validate_image


def slope_kernels(f: int) -> torch.Tensor:
    """The four f×f slope filters, shape ``(4, 1, f, f)``, scaled by 2/f².

    Order: horizontal edge (top +1 / bottom −1), vertical edge (left +1 / right −1),
    main diagonal (upper-right +1 / lower-left −1), anti-diagonal.
    """
    if f < 2:
        raise MatdiscoError(f"slope filter size must be ≥ 2, got {f}")
    i, j = np.mgrid[0:f, 0:f] - (f - 1) / 2
    k = np.stack([np.sign(-i), np.sign(-j), np.sign(j - i), np.sign(-(i + j))])
    k = k * 2.0 / (f * f)
    return torch.tensor(k[:, None], dtype=torch.float32)


ATTENTIONS = ("softmax", "none")


class PeakAreaDetection(nn.Module):
    """Slope filters → |·| → f×f max filter → batch norm → spatial softmax.

    Parameters
    ----------
    f : int
        Filter size (odd sizes keep the image centred).
    trainable : bool
        Train the slope filters (False keeps them fixed).
    attention : {"softmax", "none"}
        ``softmax``: the study's spatial softmax over each map. ``none``: the batch-normed
        maps go on as they are. The softmax is winner-take-all: on textured (spotty) rings
        it concentrates on the few brightest spots and the other rings fade, so ``none`` is
        the robust choice for coarse-grained films (see ``notes/issue-5.md``).
    """

    def __init__(self, f: int = 5, trainable: bool = False, attention: str = "softmax"
                 ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise MatdiscoError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        self.attention = attention
        self.f = int(f)
        # replicate padding: zero padding would put a step of the background's height at
        # the image border, and its slope response would swamp every ring
        self.slope = nn.Conv2d(1, 4, self.f, padding="same", padding_mode="replicate",
                               bias=False)
        with torch.no_grad():
            self.slope.weight.copy_(slope_kernels(self.f))
        self.slope.weight.requires_grad_(trainable)
        self.pool = nn.MaxPool2d(self.f, stride=1, padding=self.f // 2)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` image → ``(B, 4, H, W)`` peak-area maps (with the softmax:
        mean 1 per channel)."""
        h, w = x.shape[-2:]
        y = self.pool(self.slope(x).abs())[..., :h, :w]
        y = self.norm(y)
        if self.attention == "none":
            return y
        b, c = y.shape[:2]
        p = torch.softmax(y.reshape(b, c, -1), dim=-1)
        return (p * (h * w)).reshape(b, c, h, w)


class PADNet(nn.Module):
    """PADNet classifier of detector images.

    Parameters
    ----------
    n_classes : int
        Number of phase regions.
    n_frames : int
        Frames per sample (1: SLAC-like, 2: NIST-like); parameters are shared over frames.
    f : int
        Slope-filter size.
    trainable_filters : bool
        Train the slope filters.
    channels : sequence of int
        Channels of the stride-2 convolutions of the graph.
    use_composition : bool
        Add the composition branch (3 → 256 → 256).
    dropout : float
        Dropout before the classifier.
    pool_grid : int
        The last feature maps are max-pooled onto a ``pool_grid × pool_grid`` grid and
        flattened, so the classifier sees *where* on the detector the rings are (their 2θ,
        which identifies the phase). ``1`` is a global max pool: translation invariant,
        it only sees local ring shapes and spacings.
    transform : {"sqrt", "log", "none"}
        Pixel transform applied before the slope filters. ``sqrt`` (sign-preserving) makes
        the Poisson noise of the counts uniform over the image, so a ring on a bright
        background patch is not drowned by that patch's larger noise; ``log`` turns a
        multiplicative background into an additive one.
    attention : {"softmax", "none"}
        The PAD layer's spatial softmax, or none (see :class:`PeakAreaDetection`).
    """

    def __init__(self, n_classes: int, n_frames: int = 1, f: int = 5,
                 trainable_filters: bool = False, channels: Sequence[int] = (16, 32, 64),
                 use_composition: bool = False, dropout: float = 0.2,
                 pool_grid: int = 4, transform: str = "sqrt", attention: str = "softmax"
                 ) -> None:
        super().__init__()
        if n_classes < 2:
            raise MatdiscoError(f"PADNet needs ≥ 2 classes, got {n_classes}")
        if transform not in ("sqrt", "log", "none"):
            raise MatdiscoError(f"transform must be 'sqrt', 'log' or 'none', got {transform!r}")
        self.transform = transform
        self.n_frames = int(n_frames)
        self.use_composition = bool(use_composition)
        self.pad = PeakAreaDetection(f, trainable_filters, attention)
        layers: list[nn.Module] = []
        c_in = 4
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c),
                       nn.ReLU()]
            c_in = c
        if pool_grid < 1:
            raise MatdiscoError(f"pool_grid must be ≥ 1, got {pool_grid}")
        layers += [nn.AdaptiveMaxPool2d(pool_grid), nn.Flatten(),
                   nn.Linear(c_in * pool_grid * pool_grid, 256), nn.ReLU()]
        self.graph = nn.Sequential(*layers)
        if self.use_composition:
            self.comp = nn.Sequential(nn.Linear(3, 256), nn.ReLU(), nn.Linear(256, 256),
                                      nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(256, n_classes))

    def forward(self, images: torch.Tensor, compositions: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Logits of ``(B, F, H, W)`` images (and ``(B, 3)`` compositions)."""
        if images.ndim == 3:
            images = images[:, None]
        b, nf, h, w = images.shape
        if nf != self.n_frames:
            raise MatdiscoError(f"PADNet expects {self.n_frames} frame(s) per sample, got {nf}")
        x = images.reshape(b * nf, 1, h, w)
        if self.transform == "sqrt":
            x = torch.sign(x) * x.abs().sqrt()
        elif self.transform == "log":
            x = torch.sign(x) * torch.log1p(x.abs())
        # per-frame scale normalisation (the background's offset is cancelled by the
        # slope filters, its scale must not matter)
        x = x / (x.std(dim=(-2, -1), keepdim=True) + 1e-6)
        feats = self.graph(self.pad(x)).reshape(b, nf, -1).mean(1)
        if self.use_composition:
            if compositions is None:
                raise MatdiscoError("this PADNet uses compositions; pass them")
            feats = feats + self.comp(compositions)
        return self.head(feats)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _as_images(images: Any, name: str = "images") -> np.ndarray:
    a = validate_image(images, name=name)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise MatdiscoError(f"{name}: expected (N, F, H, W) or (N, H, W), got {a.shape}")
    return a


def _check_params(*, f: Any, channels: Any, epochs: Any, batch_size: Any, lr: Any,
                  weight_decay: Any, patience: Any, val_fraction: Any, dropout: Any,
                  pool_grid: Any, transform: Any, attention: Any, device: Any) -> None:
    """Refuse bad :class:`PADNetClassifier` settings when it is made, not mid-training."""
    from matdisco._checks import check_float, check_int

    check_int("f (slope-filter size)", f, 2)
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    check_int("patience", patience, 0, none_ok=True)  # None: no early stopping
    check_int("pool_grid", pool_grid, 1)
    check_float("lr", lr, 0.0, strict=True)
    check_float("weight_decay", weight_decay, 0.0)
    check_float("val_fraction", val_fraction, 0.0, below=1.0)
    check_float("dropout", dropout, 0.0, below=1.0)
    if isinstance(channels, str | bytes) or not len(channels):
        raise MatdiscoError(f"channels must be a non-empty list of widths, got {channels!r}")
    for c in channels:
        check_int("every channel width", c, 1)
    if transform not in ("sqrt", "log", "none"):
        raise MatdiscoError(f"transform must be 'sqrt', 'log' or 'none', got {transform!r}")
    if attention not in ATTENTIONS:
        raise MatdiscoError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if not isinstance(device, str) or not (device in ("auto", "cpu")
                                           or device.startswith("cuda")):
        raise MatdiscoError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")


class PADNetClassifier:
    """Scikit-learn-style PADNet estimator.

    Parameters
    ----------
    f : int
        Slope-filter size.
    trainable_filters : bool
        Train the slope filters.
    use_composition : bool
        Use the composition branch.
    channels : sequence of int
        Convolution channels.
    epochs, batch_size, lr : training settings.
    weight_decay : float
        L2 penalty (Adam's coupled weight decay, as an L2 regulariser).
    patience : int or None
        Early-stopping patience (epochs without validation improvement); None trains every
        epoch.
    val_fraction : float
        Fraction of the training samples held out for early stopping.
    seed : int
        Random seed.
    device : str
        ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    progress : bool
        Show a progress bar.
    pool_grid, transform, attention : see :class:`PADNet`.
    """

    def __init__(self, f: int = 5, trainable_filters: bool = False,
                 use_composition: bool = False, channels: Sequence[int] = (16, 32, 64),
                 epochs: int = 60, batch_size: int = 16, lr: float = 2e-3,
                 weight_decay: float = 1e-4, patience: int | None = 12, val_fraction: float = 0.15,
                 dropout: float = 0.2, seed: int = 0, device: str = "auto",
                 progress: bool = False, pool_grid: int = 4, transform: str = "sqrt",
                 attention: str = "softmax") -> None:
        _check_params(f=f, channels=channels, epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, patience=patience,
                      val_fraction=val_fraction, dropout=dropout, pool_grid=pool_grid,
                      transform=transform, attention=attention, device=device)
        self.f = f
        self.trainable_filters = trainable_filters
        self.use_composition = use_composition
        self.channels = tuple(channels)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.dropout = dropout
        self.seed = seed
        self.device = device
        self.progress = progress
        self.pool_grid = pool_grid
        self.transform = transform
        self.attention = attention

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {k: getattr(self, k) for k in (
            "f", "trainable_filters", "use_composition", "channels", "epochs", "batch_size",
            "lr", "weight_decay", "patience", "val_fraction", "dropout", "seed", "device",
            "progress", "pool_grid", "transform", "attention")}

    def _build(self) -> PADNet:
        from matdisco.training import set_seed

        set_seed(self.seed)
        return PADNet(self.n_classes_, self.n_frames_, self.f, self.trainable_filters,
                      self.channels, self.use_composition, self.dropout, self.pool_grid,
                      self.transform, self.attention)

    def _tensors(self, images: Any, compositions: Any | None) -> list[torch.Tensor]:
        x = _as_images(images)
        if hasattr(self, "image_shape_") and tuple(x.shape[1:]) != tuple(self.image_shape_):
            raise MatdiscoError(f"images have shape (F, H, W) = {tuple(x.shape[1:])}, the "
                                f"model was trained on {tuple(self.image_shape_)}")
        out = [torch.from_numpy(np.ascontiguousarray(x))]
        if self.use_composition:
            if compositions is None:
                raise MatdiscoError("use_composition=True needs compositions")
            c = np.asarray(compositions, np.float32)
            if c.shape != (len(x), 3) or not np.all(np.isfinite(c)):
                raise MatdiscoError(f"compositions must be finite (N, 3) = ({len(x)}, 3), got "
                                    f"{c.shape}")
            out.append(torch.from_numpy(c))
        return out

    def fit(self, images: Any, y: Any, compositions: Any | None = None,
            run_dir: str | os.PathLike[str] | None = None) -> PADNetClassifier:
        """Train on images ``(N, F, H, W)`` and integer labels ``y``."""
        from matdisco.training import Trainer, TrainerConfig

        x = _as_images(images)
        yy = np.asarray(y)
        if yy.shape != (len(x),) or yy.dtype.kind not in "iu" or (yy < 0).any():
            raise MatdiscoError(f"labels must be {len(x)} non-negative integers")
        self.n_classes_ = max(2, int(yy.max()) + 1)
        self.n_frames_ = x.shape[1]
        self.image_shape_ = tuple(x.shape[1:])
        tensors = self._tensors(x, compositions) + [torch.from_numpy(yy.astype(np.int64))]
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(x))
        n_val = int(round(self.val_fraction * len(x))) if self.val_fraction > 0 else 0
        val_idx, tr_idx = order[:n_val], order[n_val:]
        train = tuple(t[torch.from_numpy(tr_idx)] for t in tensors)
        val = tuple(t[torch.from_numpy(val_idx)] for t in tensors) if n_val else None
        self.model_ = self._build()
        ce = nn.CrossEntropyLoss()

        def compute_loss(model: nn.Module, batch: Sequence[torch.Tensor]
                         ) -> tuple[torch.Tensor, dict[str, float]]:
            logits = model(*batch[:-1])
            loss = ce(logits, batch[-1])
            acc = (logits.argmax(1) == batch[-1]).float().mean()
            return loss, {"accuracy": float(acc)}

        cfg = TrainerConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            weight_decay=self.weight_decay, optimizer="adam",
                            scheduler="cosine", patience=self.patience if val else None,
                            seed=self.seed, device=self.device, progress=self.progress,
                            checkpoint_every=1 if run_dir else 0, eval_batch_size=64)
        self.trainer_ = Trainer(self.model_, cfg, compute_loss=compute_loss, run_dir=run_dir)
        self.history_ = self.trainer_.fit(train, val)
        self.model_.cpu().eval()
        return self

    @torch.no_grad()
    def predict_proba(self, images: Any, compositions: Any | None = None,
                      batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``(N, n_classes)``."""
        if not hasattr(self, "model_"):
            raise MatdiscoError("PADNetClassifier is not fitted")
        tensors = self._tensors(images, compositions)
        self.model_.eval()
        dev = next(self.model_.parameters()).device
        out = []
        for i in range(0, len(tensors[0]), batch_size):
            out.append(torch.softmax(self.model_(*[t[i:i + batch_size].to(dev)
                                                   for t in tensors]), 1).cpu())
        return torch.cat(out).numpy()

    def predict(self, images: Any, compositions: Any | None = None) -> np.ndarray:
        """Predicted region index of every sample."""
        return self.predict_proba(images, compositions).argmax(1)

    def score(self, images: Any, y: Any, compositions: Any | None = None) -> float:
        """Accuracy."""
        return float(np.mean(self.predict(images, compositions) == np.asarray(y)))

    def seconds_per_image(self, images: Any, compositions: Any | None = None,
                          repeats: int = 3) -> float:
        """Best-of-``repeats`` prediction time per sample, one sample at a time."""
        x = _as_images(images)
        c = None if compositions is None else np.asarray(compositions)[:1]
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.predict_proba(x[:1], c)
            best = min(best, time.perf_counter() - t0)
        return float(best)

    def save(self, path: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
        """Write ``config.json`` and ``padnet.safetensors`` into a run directory."""
        from matdisco.training import RunDir

        rd = RunDir(path)
        params = self.get_params()
        params["channels"] = list(self.channels)
        rd.write_config({"model": "padnet", "params": params, "n_classes": self.n_classes_,
                         "n_frames": self.n_frames_, "image_shape": list(self.image_shape_),
                         **(extra or {})})
        rd.save_weights("padnet", self.model_.state_dict())
        return rd.path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PADNetClassifier:
        """Rebuild a classifier saved by :meth:`save` (shapes are validated)."""
        from matdisco._io import read_json
        from matdisco.training import RunDir, load_state_checked

        root = RunDir.open(path).path
        source = root / "config.json"
        cfg = read_json(source)
        if not isinstance(cfg, dict) or cfg.get("model") != "padnet":
            raise MatdiscoError(f"{source}: not a PADNet run directory")
        with config_errors(str(source), "PADNet"):
            params = cfg["params"]
            if not isinstance(params, dict):
                raise TypeError("'params' is not an object")
            unknown = sorted(set(params) - set(cls().get_params()))
            if unknown:
                raise TypeError(f"unknown parameters {unknown}")
            clf = cls(**params)
            clf.n_classes_ = int(cfg["n_classes"])
            clf.n_frames_ = int(cfg["n_frames"])
            clf.image_shape_ = tuple(int(v) for v in cfg["image_shape"])
            if len(clf.image_shape_) != 3 or clf.image_shape_[0] != clf.n_frames_:
                raise ValueError(f"image_shape {list(clf.image_shape_)} is not "
                                 f"(n_frames={clf.n_frames_}, H, W)")
            clf.model_ = clf._build()
        load_state_checked(clf.model_, root / "padnet.safetensors")
        clf.model_.eval()
        return clf


def kfold_indices(y: np.ndarray, n_splits: int = 10, seed: int = 0
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k-fold splits (plain k-fold when a class is smaller than ``n_splits``)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y)
    if n_splits < 2 or n_splits > len(y):
        raise MatdiscoError(f"n_splits must be in [2, {len(y)}], got {n_splits}")
    counts = np.bincount(y)
    if counts[counts > 0].min() >= n_splits:
        cv: Any = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    else:
        cv = KFold(n_splits, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y))


def cross_validate_matrix(images: np.ndarray, y: np.ndarray,
                          compositions: np.ndarray | None = None, *,
                          train_on: Sequence[str] = ("none", "mf", "cs"),
                          test_on: Sequence[str] = ("none", "mf", "cs"),
                          f_background: int | None = None, n_splits: int = 10,
                          max_folds: int | None = None, seed: int = 0,
                          return_predictions: bool = False, first_fold: int = 0,
                          **params: Any) -> dict[str, Any]:
    """k-fold accuracy for every (train preprocessing, test preprocessing) pair.

    ``first_fold`` and ``max_folds`` select folds ``first_fold .. first_fold + max_folds - 1``
    of the same split (seeds do not depend on the fold, so parts run apart equal one run).

    Preprocessing ``none`` is the raw image ``I``, ``mf``/``cs`` are ``I − MF`` and
    ``I − CS`` (:func:`~matdisco.xrd.background.remove_background`). One model is trained
    per training preprocessing and fold and tested on every test preprocessing.

    Returns
    -------
    dict
        ``{"train-X_test-Y": {"mean": .., "std": .., "folds": [..]}, ...,
        "seconds_per_image": ..}``; with ``return_predictions``, also ``"predictions"``:
        ``{"train-X_test-Y": out-of-fold predicted labels (-1 where not tested)}``.
    """
    from matdisco.xrd.background import remove_background

    x = _as_images(images)
    y = np.asarray(y)
    views = {m: remove_background(x, m, f_background) for m in set(train_on) | set(test_on)}
    stop = None if max_folds is None else first_fold + max_folds
    folds = kfold_indices(y, n_splits, seed)[first_fold:stop]
    scores: dict[str, list[float]] = {}
    oof: dict[str, np.ndarray] = {}
    times: list[float] = []
    for tr, te in folds:
        for a in train_on:
            clf = PADNetClassifier(seed=seed, **params)
            ctr = None if compositions is None else compositions[tr]
            cte = None if compositions is None else compositions[te]
            clf.fit(views[a][tr], y[tr], ctr)
            for b in test_on:
                key = f"train-{_tag(a)}_test-{_tag(b)}"
                pred = clf.predict(views[b][te], cte)
                scores.setdefault(key, []).append(float((pred == y[te]).mean()))
                oof.setdefault(key, np.full(len(y), -1, dtype=np.int64))[te] = pred
            times.append(clf.seconds_per_image(views[a][te],
                                               None if cte is None else cte))
    out: dict[str, Any] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)),
                               "folds": [float(s) for s in v]} for k, v in scores.items()}
    out["seconds_per_image"] = float(np.median(times)) if times else float("nan")
    out["n_folds"] = len(folds)
    if return_predictions:
        out["predictions"] = oof
    return out


def _tag(method: str) -> str:
    return {"none": "I", "mf": "I-MF", "cs": "I-CS"}.get(method, method)
