"""OMNet: a shared convolution/pooling trunk with one fully connected branch per output."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from matdisco import MatdiscoError

__all__ = ["OMNet", "PRESETS", "count_parameters"]

#: trunk channels, convolutions per stage, branch hidden sizes
PRESETS: dict[str, dict] = {
    # close to the study: 4 conv stages of growing width, wide FC branches
    "full": {"channels": (32, 64, 128, 256), "convs_per_stage": 2, "branch": (512, 256)},
    # compact CPU variant
    "compact": {"channels": (16, 32, 64, 64), "convs_per_stage": 1, "branch": (128,)},
    # tiny, for tests
    "tiny": {"channels": (4, 8), "convs_per_stage": 1, "branch": (16,)},
}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class OMNet(nn.Module):
    """Orientation network for EBSD patterns.

    A shared trunk of ``Conv-BN-ReLU`` stages, each followed by 2x2 max pooling, feeds
    ``n_branches`` equal fully connected branches. With the Euler representation there
    are three branches, one per Bunge angle (each outputs one number in ``[0, 1]``
    through a sigmoid); with ``quat``/``6d`` one branch per output component group.

    Parameters
    ----------
    input_shape : (int, int)
        Pattern rows and columns.
    representation : {"euler", "quat", "6d"}
        Output representation.
    preset : {"full", "compact", "tiny"}
        Width preset (see :data:`PRESETS`).
    channels, convs_per_stage, branch : optional
        Override the preset.
    dropout : float
        Dropout in the branches.
    """

    def __init__(self, input_shape: Sequence[int] = (60, 60), representation: str = "euler",
                 preset: str = "compact", channels: Sequence[int] | None = None,
                 convs_per_stage: int | None = None, branch: Sequence[int] | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if preset not in PRESETS:
            raise MatdiscoError(f"unknown OMNet preset {preset!r}; choose from {sorted(PRESETS)}")
        if representation not in ("euler", "quat", "6d"):
            raise MatdiscoError(f"unknown representation {representation!r} (euler, quat, 6d)")
        p = PRESETS[preset]
        channels = tuple(channels or p["channels"])
        convs_per_stage = int(convs_per_stage or p["convs_per_stage"])
        branch = tuple(branch or p["branch"])
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        self.representation = representation
        layers: list[nn.Module] = []
        cin = 1
        h, w = self.input_shape
        for cout in channels:
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                           nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise MatdiscoError(f"patterns of shape {self.input_shape} are too small for "
                                f"{len(channels)} pooling stages")
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        feat = cin * h * w
        outs = {"euler": (1, 1, 1), "quat": (4,), "6d": (3, 3)}[representation]
        self.branches = nn.ModuleList()
        for k in outs:
            bl: list[nn.Module] = []
            d = feat
            for hdim in branch:
                bl += [nn.Linear(d, hdim), nn.ReLU(inplace=True)]
                if dropout > 0:
                    bl.append(nn.Dropout(dropout))
                d = hdim
            bl.append(nn.Linear(d, k))
            self.branches.append(nn.Sequential(*bl))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map patterns ``(n, rows, cols)`` or ``(n, 1, rows, cols)`` to the representation."""
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[-2:]) != self.input_shape:
            raise MatdiscoError(f"OMNet expects patterns of shape (n, {self.input_shape[0]}, "
                                f"{self.input_shape[1]}), got {tuple(x.shape)}")
        f = self.trunk(x)
        out = torch.cat([b(f) for b in self.branches], dim=-1)
        if self.representation == "euler":
            out = torch.sigmoid(out)
        return out
