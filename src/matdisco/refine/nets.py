"""Networks of imitation refinement: 1D/2D classifiers with feature maps, and U-Net
refiners.

Every classifier maps ``(N, L)`` signals (or ``(N, H, W)`` images) to logits and exposes
``features(x) -> list of feature maps`` (used by the feature-space regulariser Ψ) and
``embed(x) -> (N, D)`` (used by the prototypical variant).
"""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import nn
from torch.nn import functional as F

from matdisco import MatdiscoError


class _Backbone(Protocol):
    """What :class:`PrototypeClassifier` uses of its backbone (any classifier here)."""

    head: nn.Module

    def features(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...


def _as_1d(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(1) if x.dim() == 2 else x


class LSTMClassifier(nn.Module):
    """LSTM over ``n_segments`` consecutive segments of the signal (first study).

    The length-``L`` signal is cut into ``n_segments`` segments of ``L / n_segments``
    points (50 × 40 for ``L = 2000``), which form the LSTM's time steps.
    """

    def __init__(self, length: int, n_classes: int, n_segments: int = 50, hidden: int = 64,
                 dropout: float = 0.5, embed_dim: int = 64) -> None:
        super().__init__()
        if length % n_segments:
            raise MatdiscoError(
                f"LSTM classifier: length {length} is not divisible by n_segments={n_segments}"
            )
        self.length, self.n_segments = length, n_segments
        self.lstm = nn.LSTM(length // n_segments, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, embed_dim)
        self.head = nn.Linear(embed_dim, n_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        seq, _ = self.lstm(x.reshape(len(x), self.n_segments, -1))
        return [seq]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.features(x)[0]
        return F.relu(self.proj(self.drop(seq[:, -1])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class CNN1DClassifier(nn.Module):
    """VGG-like 1D CNN: blocks of two convolutions + batch norm + max-pooling, then a
    position-keeping adaptive max-pool to ``bins`` positions and a dense embedding."""

    def __init__(self, length: int, n_classes: int, channels: tuple[int, ...] = (8, 16, 32, 64),
                 pool: int = 4, embed_dim: int = 64, dropout: float = 0.3,
                 in_channels: int = 1, bins: int = 32) -> None:
        super().__init__()
        self.length = length
        blocks = []
        c_in = in_channels
        for c in channels:
            blocks.append(nn.Sequential(
                nn.Conv1d(c_in, c, 7, padding=3), nn.BatchNorm1d(c), nn.ReLU(),
                nn.Conv1d(c, c, 3, padding=1), nn.BatchNorm1d(c), nn.ReLU(),
                nn.MaxPool1d(pool, ceil_mode=True),
            ))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.drop = nn.Dropout(dropout)
        # position-keeping pooling: peak positions carry the information of a pattern
        self.pool = nn.AdaptiveMaxPool1d(bins)
        self.proj = nn.Linear(bins * c_in, embed_dim)
        self.head = nn.Linear(embed_dim, n_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = _as_1d(x)
        out = []
        for b in self.blocks:
            h = b(h)
            out.append(h)
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.features(x)[-1]).flatten(1)
        return F.relu(self.proj(self.drop(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class _DenseLayer(nn.Module):
    def __init__(self, c_in: int, growth: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.BatchNorm1d(c_in), nn.ReLU(),
                                 nn.Conv1d(c_in, growth, 5, padding=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.net(x)], 1)


class DenseNet1DClassifier(nn.Module):
    """1D DenseNet: a stem, dense blocks (growth ``growth``) joined by transition layers."""

    def __init__(self, length: int, n_classes: int, growth: int = 8,
                 block_layers: tuple[int, ...] = (3, 3, 3), stem: int = 16,
                 embed_dim: int = 64, bins: int = 32) -> None:
        super().__init__()
        self.length = length
        self.stem = nn.Sequential(nn.Conv1d(1, stem, 7, stride=2, padding=3),
                                  nn.BatchNorm1d(stem), nn.ReLU(), nn.MaxPool1d(2))
        c = stem
        stages = []
        for i, n in enumerate(block_layers):
            layers: list[nn.Module] = []
            for _ in range(n):
                layers.append(_DenseLayer(c, growth))
                c += growth
            if i < len(block_layers) - 1:
                c_out = c // 2
                layers += [nn.BatchNorm1d(c), nn.ReLU(), nn.Conv1d(c, c_out, 1),
                           nn.AvgPool1d(4, ceil_mode=True)]
                c = c_out
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.BatchNorm1d(c)
        self.pool = nn.AdaptiveMaxPool1d(bins)
        self.proj = nn.Linear(bins * c, embed_dim)
        self.head = nn.Linear(embed_dim, n_classes)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.stem(_as_1d(x))
        out = []
        for s in self.stages:
            h = s(h)
            out.append(h)
        return out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm(self.features(x)[-1]))
        return F.relu(self.proj(self.pool(h).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class LeNet(nn.Module):
    """LeNet-style classifier of 28×28 images (two conv + pool stages, two dense layers)."""

    def __init__(self, length: int = 784, n_classes: int = 11, embed_dim: int = 84,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.length = length
        self.side = int(round(length ** 0.5))
        if self.side * self.side != length:
            raise MatdiscoError(f"LeNet expects square images, got {length} pixels")
        self.c1 = nn.Sequential(nn.Conv2d(1, 20, 5, padding=2), nn.BatchNorm2d(20), nn.ReLU(),
                                nn.MaxPool2d(2))
        self.c2 = nn.Sequential(nn.Conv2d(20, 50, 5), nn.BatchNorm2d(50), nn.ReLU(),
                                nn.MaxPool2d(2))
        flat = 50 * ((self.side // 2 - 4) // 2) ** 2
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(flat, embed_dim)
        self.head = nn.Linear(embed_dim, n_classes)

    def _img(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), 1, self.side, self.side)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h1 = self.c1(self._img(x))
        return [h1, self.c2(h1)]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.proj(self.drop(self.features(x)[-1].flatten(1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class PrototypeClassifier(nn.Module):
    """Prototypical classifier: logits are ``-‖embed(x) − p_c‖²`` to one prototype per class.

    The prototypes are a buffer updated with a running (exponential) mean of the class
    embeddings during training (:meth:`update_prototypes`), as in the second study. The
    backbone's softmax head is trained beside them (:meth:`head_logits`): it gives the
    refiner's prediction loss ℓ_pred, while the prototypes give ℓ_proto, so that the two
    losses of the ablation are different functions.
    """

    prototypes: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, backbone: nn.Module, n_classes: int, embed_dim: int = 64,
                 momentum: float = 0.9) -> None:
        super().__init__()
        self.backbone = backbone
        self.length = getattr(backbone, "length", None)
        self.momentum = momentum
        self.register_buffer("prototypes", torch.zeros(n_classes, embed_dim))
        self.register_buffer("initialized", torch.zeros(n_classes, dtype=torch.bool))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return cast(_Backbone, self.backbone).features(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return cast(_Backbone, self.backbone).embed(x)

    def logits_from_embedding(self, e: torch.Tensor) -> torch.Tensor:
        return -torch.cdist(e, self.prototypes).pow(2)

    def head_logits(self, e: torch.Tensor) -> torch.Tensor:
        """Logits of the backbone's softmax head on embedding ``e``."""
        return cast(_Backbone, self.backbone).head(e)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embedding(self.embed(x))

    @torch.no_grad()
    def update_prototypes(self, e: torch.Tensor, y: torch.Tensor) -> None:
        """Running update ``p_c ← m p_c + (1 − m) mean(e | y = c)``."""
        for c in torch.unique(y):
            mean = e[y == c].mean(0)
            ci = int(c)
            if not bool(self.initialized[ci]):
                self.prototypes[ci] = mean
                self.initialized[ci] = True
            else:
                self.prototypes[ci] = self.momentum * self.prototypes[ci] + \
                    (1 - self.momentum) * mean


def _cbr(dim: int, c_in: int, c_out: int) -> nn.Sequential:
    conv = nn.Conv1d if dim == 1 else nn.Conv2d
    bn = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
    k = 5 if dim == 1 else 3
    return nn.Sequential(conv(c_in, c_out, k, padding=k // 2), bn(c_out), nn.ReLU(),
                         conv(c_out, c_out, k, padding=k // 2), bn(c_out), nn.ReLU())


def _moving_average(h: torch.Tensor, window: int) -> torch.Tensor:
    """Moving average over ``window`` points (pixels per side), edges reflected (the
    window is shrunk to fit signals shorter than it)."""
    w = min(window, 2 * ((min(h.shape[2:]) - 1) // 2) + 1)
    if w < 3:
        return h
    p = w // 2
    if h.dim() == 3:
        return F.avg_pool1d(F.pad(h, (p, p), mode="reflect"), w, stride=1)
    return F.avg_pool2d(F.pad(h, (p, p, p, p), mode="reflect"), w, stride=1)


def _local_min(h: torch.Tensor, window: int) -> torch.Tensor:
    """Running minimum over ``window`` points (pixels per side), edges replicated."""
    p = window // 2
    if h.dim() == 3:
        return -F.max_pool1d(F.pad(-h, (p, p), mode="replicate"), window, stride=1)
    return -F.max_pool2d(F.pad(-h, (p, p, p, p), mode="replicate"), window, stride=1)


_MASK_OFFSET = 3.0
_MASK_ONE = float(torch.sigmoid(torch.tensor(_MASK_OFFSET)))


class UNet(nn.Module):
    """U-Net refiner, 1D (signals) or 2D (images).

    ``output="residual"`` predicts a correction: ``R(x) = relu(x + Δ(x))`` for non-negative
    signals (``nonneg=True``), else ``x + Δ(x)``. ``output="mask"`` predicts an attenuation
    ``m(x) = min(σ(z(x) + 3) / σ(3), 1) ∈ (0, 1]``: ``R(x) = m(x) · x`` (so ``|R(x)| ≤ |x|``
    elementwise), a refiner that can remove intensity (spurious peaks, noise, background)
    but can neither add or amplify peaks nor paint adversarial patterns on empty regions
    (the cap at 1 passes the gradient straight through). It starts less sensitive than the
    residual mode (``dm/dz = 1 − σ(3) ≈ 0.05``) and usually wants a larger learning rate.
    ``output="background"`` learns a background subtraction: the predicted ``Δ(x)`` passes
    twice through a moving average of ``smooth_window`` points (pixels per side) and is kept
    ≤ 0, and, for non-negative signals, ≥ minus the running minimum of ``x`` over
    ``floor_window`` points, so ``R(x) = x + Δ(x)`` stays between 0 and ``x``. The refiner
    can lower a slowly varying background but cannot draw a peak or cut into one narrower
    than ``floor_window`` (choose it wider than the peaks), and it cannot clip the signal to
    zero where the true pattern has weak tails. The last layer is zero-initialised so that
    an untrained refiner is the identity map in every mode.
    """

    def __init__(self, dim: int = 1, channels: tuple[int, ...] = (16, 32, 64),
                 nonneg: bool = True, side: int | None = None, output: str = "residual",
                 smooth_window: int = 101, floor_window: int = 9) -> None:
        super().__init__()
        if dim not in (1, 2):
            raise MatdiscoError(f"UNet dim must be 1 or 2, got {dim}")
        if output not in ("residual", "mask", "background"):
            raise MatdiscoError(
                f"UNet output must be 'residual', 'mask' or 'background', got {output!r}")
        for name, w in (("smooth_window", smooth_window), ("floor_window", floor_window)):
            if output == "background" and (int(w) != w or w < 1 or w % 2 == 0):
                raise MatdiscoError(f"{name} must be an odd positive integer, got {w!r}")
        self.dim, self.nonneg, self.side, self.output = dim, nonneg, side, output
        self.smooth_window, self.floor_window = int(smooth_window), int(floor_window)
        self.down = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.down.append(_cbr(dim, c_in, c))
            c_in = c
        self.mid = _cbr(dim, c_in, c_in)
        self.up = nn.ModuleList()
        for c in reversed(channels):
            self.up.append(_cbr(dim, c_in + c, c))
            c_in = c
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        self.out = conv(c_in, 1, 1)
        nn.init.zeros_(self.out.weight)
        assert self.out.bias is not None
        nn.init.zeros_(self.out.bias)

    def _pool(self, h: torch.Tensor) -> torch.Tensor:
        return F.max_pool1d(h, 2, ceil_mode=True) if self.dim == 1 else \
            F.max_pool2d(h, 2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        if self.dim == 1:
            h = x.reshape(len(x), 1, -1)
        else:
            side = self.side or int(round(shape[-1] ** 0.5))
            h = x.reshape(len(x), 1, side, -1) if x.dim() == 2 else x.reshape(
                len(x), 1, *shape[-2:])
        inp = h
        skips = []
        for d in self.down:
            h = d(h)
            skips.append(h)
            h = self._pool(h)
        h = self.mid(h)
        for u, s in zip(self.up, reversed(skips), strict=True):
            h = F.interpolate(h, size=s.shape[2:], mode="nearest")
            h = u(torch.cat([h, s], 1))
        if self.output == "mask":  # σ(z + 3) / σ(3): identity at z = 0, never saturated
            m = torch.sigmoid(self.out(h) + _MASK_OFFSET) / _MASK_ONE
            # attenuation only: m ≤ 1 in the forward pass (exactly: Sterbenz), the
            # unclamped gradient in the backward one (no dead zone above the identity)
            m = m - (m - m.clamp(max=1.0)).detach()
            return (inp * m).reshape(shape)
        delta = self.out(h)
        if self.output == "background":  # remove a slowly varying background
            delta = _moving_average(_moving_average(delta, self.smooth_window),
                                    self.smooth_window).clamp(max=0.0)
            if self.nonneg:  # never below the signal's running minimum
                delta = torch.maximum(delta, -_local_min(inp, self.floor_window))
        y = inp + delta
        if self.nonneg:
            y = F.relu(y)
        return y.reshape(shape)


CLASSIFIERS = {
    "lstm": LSTMClassifier,
    "cnn1d": CNN1DClassifier,
    "densenet1d": DenseNet1DClassifier,
    "lenet": LeNet,
}


def build_classifier(arch: str, length: int, n_classes: int, prototypical: bool = False,
                     **kwargs: object) -> nn.Module:
    """Build a classifier by name (``lstm``, ``cnn1d``, ``densenet1d``, ``lenet``)."""
    if arch not in CLASSIFIERS:
        raise MatdiscoError(f"unknown classifier {arch!r}; choose from {sorted(CLASSIFIERS)}")
    if prototypical:
        embed_dim = int(kwargs.pop("embed_dim", 64))  # type: ignore[call-overload]
        backbone = CLASSIFIERS[arch](length, n_classes, embed_dim=embed_dim, **kwargs)
        return PrototypeClassifier(backbone, n_classes, embed_dim)
    return CLASSIFIERS[arch](length, n_classes, **kwargs)
