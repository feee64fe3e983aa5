"""Losses of imitation refinement.

The refiner ``R`` is trained with the classifier ``C`` frozen, on

``λ ℓ_pred + α ℓ_proto + β ℓ_reg + γ ℓ_kl``

* ``ℓ_pred``: cross-entropy of ``C(R(x))`` to the target labels when given (targeted),
  else its entropy (non-targeted: make the classifier confident).
* ``ℓ_proto``: negative log-likelihood of the target class under the prototype softmax
  ``softmax(−‖e(R(x)) − p_c‖²)`` (or its entropy without labels).
* ``ℓ_reg``: ``‖Ψ(R(x)) − Ψ(x)‖_p`` with Ψ the identity, the classifier's feature maps,
  or a high-pass filter (:func:`highpass`: the signal minus its moving average, so that
  slowly varying edits such as removing a background are free) (keeps the refinement
  small).
* ``ℓ_kl``: KL divergence between the batch-averaged class distribution of ``C(R(x))`` and
  a class prior (the ideal set's class frequencies by default); a discrepancy term that
  stops the non-targeted refiner from pushing every signal into a single class.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy of ``softmax(logits)``."""
    logp = F.log_softmax(logits, 1)
    return -(logp.exp() * logp).sum(1).mean()


def prediction_loss(logits: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy to ``target`` when given, else the entropy of the prediction."""
    if target is None:
        return entropy(logits)
    return F.cross_entropy(logits, target)


def prototype_loss(embedding: torch.Tensor, prototypes: torch.Tensor,
                   target: torch.Tensor | None = None) -> torch.Tensor:
    """Prototype NLL ``−log softmax(−‖e − p‖²)[target]`` (entropy without a target)."""
    logits = -torch.cdist(embedding, prototypes).pow(2)
    return prediction_loss(logits, target)


def regularization_loss(x: torch.Tensor, rx: torch.Tensor, p: float = 1.0,
                        psi: Callable[[torch.Tensor], list[torch.Tensor]] | None = None
                        ) -> torch.Tensor:
    """``mean |Ψ(R(x)) − Ψ(x)|^p`` summed over Ψ's outputs (Ψ = identity by default)."""
    if psi is None:
        a, b = [x], [rx]
    else:
        with torch.no_grad():
            a = [t.detach() for t in psi(x)]
        b = psi(rx)
    return sum((bb - aa).abs().pow(p).mean() for aa, bb in zip(a, b, strict=True))  # type: ignore[return-value]


def _odd_pad(x: torch.Tensor, h: int, axis: int) -> torch.Tensor:
    """Pad ``x`` by ``h`` along ``axis`` with its point reflection about each edge value
    (``2·x[0] − x[k]``), which continues a linear trend exactly."""
    n = x.shape[axis]
    lo = 2 * x.narrow(axis, 0, 1) - x.narrow(axis, 1, h).flip(axis)
    hi = 2 * x.narrow(axis, n - 1, 1) - x.narrow(axis, n - 1 - h, h).flip(axis)
    return torch.cat([lo, x, hi], axis)


def highpass(x: torch.Tensor, window: int = 101) -> list[torch.Tensor]:
    """``[x − moving_average(x)]`` over ``window`` points (signals ``(N, L)``) or
    ``window × window`` pixels (images ``(N, H, W)``).

    Edges are extended by point reflection, so that constant and linear (planar) changes
    give zero everywhere, edges included; the window is shrunk to fit signals shorter
    than it.
    """
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window}")
    w = min(int(window), 2 * ((min(x.shape[1:]) - 1) // 2) + 1)
    if w < 3:
        return [x - x]
    h = w // 2
    if x.dim() == 2:
        xp = _odd_pad(x.unsqueeze(1), h, 2)
        return [x - F.avg_pool1d(xp, w, stride=1).squeeze(1)]
    xp = _odd_pad(_odd_pad(x.unsqueeze(1), h, 3), h, 2)
    return [x - F.avg_pool2d(xp, w, stride=1).squeeze(1)]


def kl_discrepancy(logits: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """``KL(mean_batch softmax(logits) ‖ prior)``."""
    q = F.softmax(logits, 1).mean(0).clamp_min(1e-8)
    pr = prior.to(q).clamp_min(1e-8)
    return (q * (q.log() - pr.log())).sum()
