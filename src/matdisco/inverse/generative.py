"""Conditional generative baselines: conditional VAE and mixture density network."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from matdisco.inverse.base import InverseSolver, check_float, check_int, mlp


class _CVAENet(nn.Module):
    def __init__(self, dx: int, dy: int, dz: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.enc = mlp(dx + dy, 2 * dz, hidden, depth)
        self.dec = mlp(dz + dy, dx, hidden, depth)
        self.dz = dz

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, logvar = self.enc(torch.cat([x, y], 1)).chunk(2, dim=1)
        logvar = logvar.clamp(-10, 5)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.dec(torch.cat([z, y], 1)), mu, logvar


class CVAE(InverseSolver):
    """Conditional variational auto-encoder ``q(z | x, y)``, ``p(x | z, y)``.

    Loss: squared reconstruction error (summed over inputs) ``+ beta * KL``.
    Proposals decode ``z ~ N(0, I)`` with the target.

    Parameters
    ----------
    z_dim : int, optional
        Latent dimension (default ``max(2, dx)``, capped at 32).
    beta : float
        Weight of the KL term.
    **kwargs : see :class:`InverseSolver`.
    """

    name = "cvae"

    def __init__(self, z_dim: int | None = None, beta: float = 0.05, **kwargs: Any) -> None:
        kwargs.setdefault("epochs", 150)
        super().__init__(**kwargs)
        check_int("z_dim", z_dim, 1, none_ok=True)
        check_float("beta", beta, 0.0)
        self.z_dim = z_dim
        self.beta = beta

    def networks(self) -> dict[str, nn.Module]:
        return {"cvae": self.net_}

    def _fit(self, xn: torch.Tensor, yn: torch.Tensor) -> None:
        dz = self.z_dim or min(32, max(2, xn.shape[1]))
        self.net_ = _CVAENet(xn.shape[1], yn.shape[1], dz, self.hidden, self.depth)
        beta = self.beta

        def loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            x, y = batch
            rec, mu, logvar = model(x, y)
            l_rec = (rec - x).pow(2).sum(1).mean()
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
            return l_rec + beta * kl, {"rec": l_rec.item(), "kl": kl.item()}

        self.trainer_ = self._train(self.net_, (xn, yn), loss, "cvae")

    def _propose(self, yn: torch.Tensor, n: int) -> torch.Tensor:
        m = len(yn)
        z = torch.randn(m * n, self.net_.dz)
        with torch.no_grad():
            x = self.net_.dec(torch.cat([z, yn.repeat_interleave(n, dim=0)], 1))
        return x.view(m, n, self.x_dim_)


class MDN(InverseSolver):
    """Mixture density network: ``p(x | y)`` as a mixture of diagonal Gaussians.

    Parameters
    ----------
    n_components : int
        Number of mixture components.
    **kwargs : see :class:`InverseSolver`.
    """

    name = "mdn"

    def __init__(self, n_components: int = 10, **kwargs: Any) -> None:
        kwargs.setdefault("epochs", 150)
        super().__init__(**kwargs)
        check_int("n_components", n_components, 1)
        self.n_components = n_components

    def networks(self) -> dict[str, nn.Module]:
        return {"mdn": self.net_}

    def _params(self, y: torch.Tensor, net: nn.Module | None = None) -> tuple[torch.Tensor, ...]:
        k, dx = self.n_components, self.x_dim_
        out = (net or self.net_)(y)
        logits = out[:, :k]
        mu = out[:, k:k + k * dx].view(-1, k, dx)
        log_sigma = out[:, k + k * dx:].view(-1, k, dx).clamp(-7.0, 2.0)
        return torch.log_softmax(logits, dim=1), mu, log_sigma

    def _fit(self, xn: torch.Tensor, yn: torch.Tensor) -> None:
        k, dx = self.n_components, xn.shape[1]
        self.net_ = mlp(yn.shape[1], k * (1 + 2 * dx), self.hidden, self.depth)
        c = 0.5 * math.log(2 * math.pi)

        def loss(model: nn.Module, batch: Any) -> torch.Tensor:
            x, y = batch
            logpi, mu, log_sigma = self._params(y, model)
            z = (x[:, None, :] - mu) / log_sigma.exp()
            logp = (-0.5 * z.pow(2) - log_sigma - c).sum(-1) + logpi
            return -torch.logsumexp(logp, dim=1).mean() / dx

        self.trainer_ = self._train(self.net_, (xn, yn), loss, "mdn")

    def _propose(self, yn: torch.Tensor, n: int) -> torch.Tensor:
        m, dx = len(yn), self.x_dim_
        with torch.no_grad():
            logpi, mu, log_sigma = self._params(yn)
            comp = torch.multinomial(logpi.exp(), n, replacement=True)  # (m, n)
            idx = comp[:, :, None].expand(m, n, dx)
            mu_s = torch.gather(mu, 1, idx)
            sd_s = torch.gather(log_sigma.exp(), 1, idx)
            return mu_s + sd_s * torch.randn(m, n, dx)
