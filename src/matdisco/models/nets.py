"""Fully connected regression networks of the ElemNet and IRNet studies.

* ElemNet (Jha et al., 2018): 1024x4, dropout keep 0.8, 512x3, keep 0.9, 256x3, keep 0.7,
  128x3, keep 0.8, 64x2, 32, 1, ReLU, no batch norm.
* IRNet (Jha et al., 2019): sequences FC -> BatchNorm -> ReLU with a shortcut after every
  sequence (a linear projection when the width changes); 17, 24 and 48 layers.
* The plain network (same layers, no shortcuts) and the stacked residual network (SRNet,
  one shortcut around each stack of equal-width layers) of the IRNet study.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from matdisco import MatdiscoError

#: (width, repeats, dropout probability after the group) of ElemNet.
ELEMNET_SPEC: list[tuple[int, int, float]] = [
    (1024, 4, 0.2), (512, 3, 0.1), (256, 3, 0.3), (128, 3, 0.2), (64, 2, 0.0), (32, 1, 0.0),
]

#: (width, repeats) of the IRNet-family architectures (the output layer adds one).
IRNET_SPECS: dict[int, list[tuple[int, int]]] = {
    17: [(1024, 4), (512, 3), (256, 3), (128, 3), (64, 2), (32, 1)],
    24: [(1024, 4), (512, 4), (256, 4), (128, 4), (64, 4), (32, 3)],
    48: [(1024, 8), (512, 8), (256, 8), (128, 8), (64, 8), (32, 7)],
}


class _Seq(nn.Module):
    """FC -> (BatchNorm) -> ReLU."""

    def __init__(self, n_in: int, n_out: int, batchnorm: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        self.bn = nn.BatchNorm1d(n_out) if batchnorm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.fc(x)))


class _Residual(nn.Module):
    """``body(x) + shortcut(x)`` with a linear projection when widths differ."""

    def __init__(self, body: nn.Module, n_in: int, n_out: int) -> None:
        super().__init__()
        self.body = body
        self.proj = nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.proj(x)


class DeepRegressor(nn.Module):
    """A deep fully connected regressor.

    Parameters
    ----------
    n_features : int
        Input width.
    groups : list of (width, repeats, dropout)
        Stacks of equal-width layers; dropout (probability of dropping) after each stack.
    residual : {"none", "layer", "stack"}
        No shortcuts (plain / ElemNet), a shortcut after every layer (IRNet), or one around
        every stack (SRNet).
    batchnorm : bool
        Batch normalisation after every linear layer.
    n_outputs : int
        Output width.
    """

    def __init__(self, n_features: int, groups: list[tuple[int, int, float]],
                 residual: str = "none", batchnorm: bool = False, n_outputs: int = 1) -> None:
        super().__init__()
        if residual not in ("none", "layer", "stack"):
            raise MatdiscoError(f"residual must be none, layer or stack, got {residual!r}")
        layers: list[nn.Module] = []
        width = n_features
        for w, reps, p in groups:
            stack: list[nn.Module] = []
            stack_in = width
            for _ in range(reps):
                seq = _Seq(width, w, batchnorm)
                stack.append(_Residual(seq, width, w) if residual == "layer" else seq)
                width = w
            if residual == "stack":
                layers.append(_Residual(nn.Sequential(*stack), stack_in, w))
            else:
                layers.extend(stack)
            if p > 0:
                layers.append(nn.Dropout(p))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_outputs)
        self.n_features = n_features
        self.n_layers = sum(r for _, r, _ in groups) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)


ARCHITECTURES = (
    "elemnet", "irnet17", "irnet24", "irnet48", "plain17", "plain24", "plain48",
    "srnet17", "srnet24", "srnet48", "mlp", "roost",
)


def build_network(arch: str, n_features: int, **kwargs: Any) -> nn.Module:
    """Build a network by name.

    Parameters
    ----------
    arch : str
        One of :data:`ARCHITECTURES`. ``mlp`` takes ``widths`` (list of int) and
        optional ``dropout``, ``residual`` and ``batchnorm``. ``roost`` (the element-attention
        network of :mod:`matdisco.models.attention`, on raw element fractions) takes
        ``elements`` (default: ElemNet's 86), ``magpie`` (bool, default True: the elements'
        Magpie properties as a fixed prior), ``d``, ``n_layers``, ``n_heads``, ``hidden`` and
        ``head_widths``.
    n_features : int
        Input width.
    """
    arch = arch.lower()
    if arch == "roost":
        return _build_roost(n_features, **kwargs)
    if arch == "elemnet":
        return DeepRegressor(n_features, ELEMNET_SPEC, residual="none", batchnorm=False)
    for prefix, residual in (("irnet", "layer"), ("plain", "none"), ("srnet", "stack")):
        if arch.startswith(prefix):
            try:
                spec = IRNET_SPECS[int(arch[len(prefix):])]
            except (KeyError, ValueError):
                raise MatdiscoError(
                    f"unknown depth in {arch!r}; choose 17, 24 or 48"
                ) from None
            groups = [(w, r, 0.0) for w, r in spec]
            return DeepRegressor(n_features, groups, residual=residual, batchnorm=True)
    if arch == "mlp":
        unknown = set(kwargs) - {"widths", "dropout", "residual", "batchnorm"}
        if unknown:  # a misspelt key would otherwise silently build the default network
            raise MatdiscoError(f"unknown mlp parameters {sorted(unknown)}; choose from "
                                "['batchnorm', 'dropout', 'residual', 'widths']")
        widths = kwargs.get("widths", [256, 128, 64])
        p = float(kwargs.get("dropout", 0.0))
        return DeepRegressor(n_features, [(int(w), 1, p) for w in widths],
                             residual=kwargs.get("residual", "none"),
                             batchnorm=bool(kwargs.get("batchnorm", False)))
    raise MatdiscoError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")


def _build_roost(n_features: int, elements: Any = None, magpie: bool = True,
                 **kwargs: Any) -> nn.Module:
    from matdisco.data.composition import ELEMNET_ELEMENTS
    from matdisco.models.attention import ElementAttentionRegressor

    elements = tuple(ELEMNET_ELEMENTS if elements is None else elements)
    if len(elements) != n_features:
        raise MatdiscoError(
            f"roost reads element fractions over {len(elements)} elements, the input has "
            f"{n_features} features (use features='fractions')"
        )
    table = None
    if magpie:
        from matdisco.featurize.magpie import _element_tables

        table = _element_tables(elements)[0]
    keys = {"d", "n_layers", "n_heads", "hidden", "head_widths"}
    unknown = set(kwargs) - keys
    if unknown:
        raise MatdiscoError(f"unknown roost parameters {sorted(unknown)}; choose from "
                            f"{sorted(keys | {'elements', 'magpie'})}")
    return ElementAttentionRegressor(n_features, table, **kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
