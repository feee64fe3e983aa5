"""A Roost-style network: weighted soft attention between the elements of a composition.

Goodall & Lee (2020), "Predicting materials properties without crystal structure: deep
representation learning from stoichiometry" (Roost). A composition is a small, dense graph
whose nodes are its elements, weighted by their fractions:

1. every element gets a vector: a learned embedding plus a linear map of its 22 Magpie
   properties (a physical prior that helps with small data), and its fraction;
2. ``n_layers`` rounds of message passing, in which element *i* collects messages from every
   element *j* of the composition (itself included) with weights
   ``w_j exp(g_ij) / sum_k w_k exp(g_ik)`` (``w`` = fractions), over ``n_heads`` heads, with a
   residual update;
3. a fraction-weighted attention pooling gives one vector per composition, and a residual
   MLP head regresses the target.

The network reads the same element-fraction vectors as ElemNet (``features="fractions"``):
the elements present are gathered inside ``forward`` (top-k over the fraction vector), so
it plugs into the data layer, the trainer, ensembles, transfer learning and screening
unchanged. The inputs must be the raw fractions (not standardized).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from matdisco import MatdiscoError


def _weighted_softmax(logits: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor,
                      dim: int) -> torch.Tensor:
    """``w exp(l) / sum(w exp(l))`` over ``dim`` restricted to ``mask`` (numerically safe)."""
    logits = logits.masked_fill(~mask, float("-inf"))
    logits = logits - logits.amax(dim=dim, keepdim=True).clamp_min(-1e30).detach()
    num = weights * torch.exp(logits) * mask
    return num / num.sum(dim=dim, keepdim=True).clamp_min(1e-12)


class _Heads(nn.Module):
    """Per-head output layers: a gate (hidden -> 1) and a message (hidden -> d)."""

    def __init__(self, n_heads: int, hidden: int, d: int) -> None:
        super().__init__()
        self.gate_w = nn.Parameter(torch.randn(n_heads, hidden) / hidden ** 0.5)
        self.gate_b = nn.Parameter(torch.zeros(n_heads))
        self.msg_w = nn.Parameter(torch.randn(n_heads, hidden, d) / hidden ** 0.5)
        self.msg_b = nn.Parameter(torch.zeros(n_heads, d))

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., H, hidden) -> (..., H)``."""
        return (z * self.gate_w).sum(-1) + self.gate_b

    def message(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., H, hidden) -> (..., d)``, averaged over heads."""
        return (torch.einsum("...hn,hnd->...hd", z, self.msg_w) + self.msg_b).mean(-2)


class _MessageLayer(nn.Module):
    """One round of weighted soft attention between the elements of each composition.

    The gate and message networks of Roost take the pair ``[x_i, x_j]``; their first
    layer is split into a part for ``x_i`` and one for ``x_j`` (added after broadcasting),
    and since the attention weights of each element sum to one, the messages' last
    (linear) layer is applied after the weighted sum over ``j``: same function, with the
    pairwise cost reduced to an addition and an activation.
    """

    def __init__(self, d: int, hidden: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.hidden = n_heads, hidden
        self.gate_src = nn.Linear(d, n_heads * hidden)
        self.gate_dst = nn.Linear(d, n_heads * hidden, bias=False)
        self.msg_src = nn.Linear(d, n_heads * hidden)
        self.msg_dst = nn.Linear(d, n_heads * hidden, bias=False)
        self.act = nn.LeakyReLU()
        self.heads = _Heads(n_heads, hidden, d)

    def _pair(self, src: nn.Linear, dst: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        b, k, _ = x.shape
        z = self.act(src(x).unsqueeze(2) + dst(x).unsqueeze(1))
        return z.view(b, k, k, self.n_heads, self.hidden)               # (B, i, j, H, n)

    def forward(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, k, _ = x.shape
        a = _weighted_softmax(self.heads.gate(self._pair(self.gate_src, self.gate_dst, x)),
                              w.view(b, 1, k, 1), mask.view(b, 1, k, 1), dim=2)  # (B,i,j,H)
        zm = (a.unsqueeze(-1) * self._pair(self.msg_src, self.msg_dst, x)).sum(dim=2)
        return x + self.heads.message(zm)


class _Pool(nn.Module):
    """Fraction-weighted attention pooling of the element vectors."""

    def __init__(self, d: int, hidden: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads, self.hidden = n_heads, hidden
        self.gate_fc = nn.Linear(d, n_heads * hidden)
        self.msg_fc = nn.Linear(d, n_heads * hidden)
        self.act = nn.LeakyReLU()
        self.heads = _Heads(n_heads, hidden, d)

    def forward(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, k, _ = x.shape
        zg = self.act(self.gate_fc(x)).view(b, k, self.n_heads, self.hidden)
        zm = self.act(self.msg_fc(x)).view(b, k, self.n_heads, self.hidden)
        a = _weighted_softmax(self.heads.gate(zg), w.view(b, k, 1), mask.view(b, k, 1),
                              dim=1)                                    # (B, K, H)
        return self.heads.message((a.unsqueeze(-1) * zm).sum(dim=1))


class ElementAttentionRegressor(nn.Module):
    """Roost-style regressor on element-fraction vectors.

    Parameters
    ----------
    n_features : int
        Number of elements of the fraction vector.
    element_features : array of shape (n_features, p), optional
        Fixed per-element descriptors (e.g. Magpie properties), standardized here and
        stored as a buffer, so a saved model carries them. ``None``: learned embedding only.
    d : int
        Width of the element vectors.
    n_layers, n_heads : int
        Message-passing rounds and attention heads (per round and in the pooling).
    hidden : int
        Hidden width of the gate and message networks.
    head_widths : sequence of int
        Widths of the residual regression head.
    n_outputs : int
        Output width.
    """

    element_features: torch.Tensor

    def __init__(self, n_features: int, element_features: np.ndarray | None = None,
                 d: int = 64, n_layers: int = 3, n_heads: int = 3, hidden: int = 128,
                 head_widths: Sequence[int] = (1024, 512, 256, 128, 64),
                 n_outputs: int = 1) -> None:
        super().__init__()
        self.n_features = n_features
        self.max_pairs = 1 << 14
        if element_features is None:
            ef = torch.zeros(n_features, 0)
        else:
            ef_np = np.asarray(element_features, dtype=np.float64)
            if ef_np.ndim != 2 or ef_np.shape[0] != n_features or not np.isfinite(ef_np).all():
                raise MatdiscoError(
                    f"element_features must be a finite ({n_features}, p) array, got shape "
                    f"{ef_np.shape}"
                )
            sd = ef_np.std(axis=0)
            ef_np = (ef_np - ef_np.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
            ef = torch.from_numpy(ef_np).float()
        self.register_buffer("element_features", ef)
        self.embedding = nn.Embedding(n_features, d)
        nn.init.normal_(self.embedding.weight, std=0.1)
        self.props = nn.Linear(ef.shape[1], d) if ef.shape[1] else None
        self.frac = nn.Linear(1, d)
        self.layers = nn.ModuleList(_MessageLayer(d, hidden, n_heads) for _ in range(n_layers))
        self.pool = _Pool(d, hidden, n_heads)
        head: list[nn.Module] = []
        width = d
        for w in head_widths:
            head.append(_HeadBlock(width, int(w)))
            width = int(w)
        self.head = nn.Sequential(*head)
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise MatdiscoError(f"expected (batch, {self.n_features}) fractions, got "
                                f"{tuple(x.shape)}")
        if bool((x < 0).any()):
            raise MatdiscoError("the element-attention network needs raw (non-negative) "
                                "element fractions; do not standardize its inputs")
        n_el = (x > 0).sum(dim=1).clamp_min(1)
        counts = torch.unique(n_el).tolist()
        if len(counts) == 1 and x.shape[0] * counts[0] ** 2 <= self.max_pairs:
            return self._forward_k(x, counts[0])
        # compositions grouped by their number of elements k, so that each group is padded
        # only to its own k (the pairwise tensors grow with k squared: a few 7-element rows
        # in a batch of ternaries would make every row pay for seven), and cut into chunks
        # of at most ``max_pairs`` element pairs to bound the memory of large predictions
        rows, outs = [], []
        for c in counts:
            r_all = torch.nonzero(n_el == c).squeeze(1)
            for r in r_all.split(max(1, self.max_pairs // c ** 2)):
                rows.append(r)
                outs.append(self._forward_k(x[r], c))
        return torch.cat(outs)[torch.argsort(torch.cat(rows))]

    def _forward_k(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Forward for rows with at most ``k`` elements present."""
        w, idx = x.topk(k, dim=1)                                   # (B, K)
        mask = w > 0
        w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
        h = self.embedding(idx) + self.frac(w.unsqueeze(-1))
        if self.props is not None:
            h = h + self.props(self.element_features[idx])
        h = h * mask.unsqueeze(-1)
        for layer in self.layers:
            h = layer(h, w, mask)
        return self.out(self.head(self.pool(h, w, mask))).squeeze(-1)


class _HeadBlock(nn.Module):
    """Linear -> LeakyReLU with a shortcut (projected when the width changes)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        self.act = nn.LeakyReLU()
        self.proj = nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x)) + self.proj(x)
