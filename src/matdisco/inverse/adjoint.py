"""Forward-surrogate methods: neural adjoint, tandem and mixture of tandems.

* Neural adjoint (Ren, Padilla & Malof, NeurIPS 2020): a forward surrogate is trained,
  then for each target many starting inputs are optimized by gradient descent on
  ``||f(x) - y*||^2 + boundary loss``; the best candidates by surrogate error are kept.
* Tandem (Liu et al., ACS Photonics 2018): an inverse network ``g(y)`` is trained through
  the frozen forward surrogate, ``||f(g(y)) - y||^2 + boundary loss``.
* Mixture of ``k`` tandems: ``k`` inverse heads trained jointly with the repulsion loss
  ``-lambda (1 - exp(-||g_i - g_j||^2 / sigma^2))`` over head pairs; at inference the
  heads are ranked by the forward surrogate ("selection by the forward model").
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from matdisco import MatdiscoError
from matdisco.inverse.base import (
    InverseSolver,
    SurrogateWarning,
    boundary_loss,
    check_float,
    check_int,
    forward_network,
    mlp,
)


class ForwardSurrogateMixin(InverseSolver):
    """Trains (or borrows) a forward MLP ``f: x_n -> y_n`` in normalized coordinates."""

    forward_from: InverseSolver | None = None

    def _init_forward(self, forward_hidden: int, forward_depth: int, forward_epochs: int,
                      forward_from: InverseSolver | None, forward_lr: float = 5e-3,
                      forward_arch: str = "mlp") -> None:
        check_int("forward_epochs", forward_epochs, 1)
        check_int("forward_hidden", forward_hidden, 1)
        check_int("forward_depth", forward_depth, 0)
        check_float("forward_lr", forward_lr, 0.0, strict=True)
        if forward_arch not in ("mlp", "cnn"):
            raise MatdiscoError(f"unknown forward_arch {forward_arch!r}; choose 'mlp' or 'cnn'")
        if forward_from is not None and not isinstance(forward_from, InverseSolver):
            raise MatdiscoError(f"forward_from must be a fitted solver or None, got "
                                f"{forward_from!r}")
        self.forward_arch = forward_arch
        self.forward_hidden = forward_hidden
        self.forward_depth = forward_depth
        self.forward_epochs = forward_epochs
        self.forward_lr = forward_lr
        self.forward_from = forward_from

    #: held-out MSE of the surrogate (standardized targets, i.e. about 1 - R^2) above
    #: which a :class:`SurrogateWarning` is raised
    surrogate_warn_mse: float = 0.05

    def _fit_forward(self, xn: torch.Tensor, yn: torch.Tensor) -> nn.Module:
        src = self.forward_from
        borrowed: nn.Module | None = None if src is None else getattr(src, "forward_", None)
        if borrowed is not None:
            f = borrowed
            self.forward_val_mse_ = getattr(src, "forward_val_mse_", None)
        else:
            f = forward_network(self.forward_arch, xn.shape[1], yn.shape[1],
                                self.forward_hidden, self.forward_depth)

            def loss(model: nn.Module, batch: Any) -> torch.Tensor:
                return (model(batch[0]) - batch[1]).pow(2).mean()

            trainer = self._train(f, (xn, yn), loss, "forward", epochs=self.forward_epochs,
                                  lr=self.forward_lr)
            self.forward_trainer_ = trainer
            # per-output MSE on the validation split in standardized units (~ 1 - R^2)
            self.forward_val_mse_ = (float(trainer.best_score)
                                     if any("val_loss" in h for h in trainer.history)
                                     else None)
        mse = self.forward_val_mse_
        if mse is not None and mse > self.surrogate_warn_mse:
            warnings.warn(
                f"{self.name}: the forward surrogate leaves {100 * mse:.0f} % of the target "
                f"variance unexplained on held-out data (MSE {mse:.3g} in standardized "
                "units); gradient search on it will not localize solutions -- train "
                "longer (forward_epochs, min_steps) or on more data",
                SurrogateWarning, stacklevel=3)
        for p in f.parameters():
            p.requires_grad_(False)
        f.eval()
        self.forward_ = f
        return f

    def surrogate_error(self, xn: torch.Tensor, yn: torch.Tensor) -> torch.Tensor:
        """Per-row squared error of the forward surrogate (normalized units)."""
        with torch.no_grad():
            return (self.forward_(xn) - yn).pow(2).sum(dim=-1)


def gradient_search(f: nn.Module, x0: torch.Tensor, yn: torch.Tensor, steps: int,
                    lr: float, boundary_weight: float = 10.0, chunk: int | None = None,
                    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam on the inputs ``x`` to minimise ``||f(x) - y||^2 + w * boundary(x)``.

    This is inference (optimizing inputs through a frozen network), not training.

    Parameters
    ----------
    f : frozen forward network (normalized coordinates).
    x0 : (N, dx) starting points.
    yn : (N, dy) targets (normalized).
    steps, lr : number and size (linearly decayed to 10 %) of Adam steps.
    chunk : int, optional
        Rows optimized together. The rows are independent, so this only changes speed: the
        default keeps a chunk's activations cache-sized (``131072 / dx`` rows, between 64
        and 4096), which on one CPU thread is 1.4x (MLP, 2 inputs) to 2.7x (periodic CNN,
        1,024 inputs) faster per row and step than optimizing thousands of rows at once.
    project : callable, optional
        Maps the final points onto what will be proposed (default: clip into
        ``[-1, 1]``; :meth:`InverseSolver.project` also rounds binary inputs).

    Returns
    -------
    x : (N, dx) final points, projected (clipped into the normalized box ``[-1, 1]``);
    loss : (N,) surrogate error ``||f(x) - y||^2`` at the projected points.
    """
    if chunk is None:
        chunk = min(4096, max(64, 131072 // max(1, x0.shape[1])))
    xs, losses = [], []
    for i in range(0, len(x0), chunk):
        x = x0[i:i + chunk].clone().requires_grad_(True)
        y = yn[i:i + chunk]
        opt = torch.optim.Adam([x], lr=lr)
        for s in range(steps):
            for g in opt.param_groups:
                g["lr"] = lr * (1.0 - 0.9 * s / max(1, steps - 1))
            opt.zero_grad(set_to_none=True)
            per_row = (f(x) - y).pow(2).sum(-1) + boundary_weight * boundary_loss(x)
            per_row.sum().backward()
            opt.step()
        with torch.no_grad():
            # proposals are clipped into the box, so rank them by the surrogate error
            # where they will actually be: at the clipped point
            xc = project(x.detach()) if project else x.detach().clamp(-1.0, 1.0)
            final = (f(xc) - y).pow(2).sum(-1)
        xs.append(xc)
        losses.append(final)
    return torch.cat(xs), torch.cat(losses)


class NeuralAdjoint(ForwardSurrogateMixin):
    """Neural adjoint: forward surrogate + gradient search in ``x`` from many starts.

    Parameters
    ----------
    starts_per_solution : int
        Starting points per requested solution; the best ``n`` by surrogate error are kept.
    steps, step_lr : int, float
        Adam steps and step size on the normalized inputs.
    boundary_weight : float
        Weight of the boundary loss that keeps ``x`` inside the bounds.
    forward_hidden, forward_depth, forward_epochs, forward_lr : surrogate architecture and
        training (peak learning rate; 5e-3 learns the sinewave's oscillation about 3x
        faster than 2e-3).
    forward_from : InverseSolver, optional
        A fitted solver whose forward surrogate is reused (same data and bounds).
    forward_arch : {"mlp", "cnn"}
        Surrogate architecture: a fully connected network, or a periodic CNN for square
        binary cells (architecture task; :class:`~matdisco.inverse.base.PeriodicCNN`).
    **kwargs : see :class:`InverseSolver`.
    """

    name = "na"

    def __init__(self, starts_per_solution: int = 4, steps: int = 300, step_lr: float = 0.02,
                 boundary_weight: float = 10.0, forward_hidden: int = 256,
                 forward_depth: int = 4, forward_epochs: int = 100, forward_lr: float = 5e-3,
                 forward_from: InverseSolver | None = None, forward_arch: str = "mlp",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_int("starts_per_solution", starts_per_solution, 1)
        check_int("steps", steps, 0)
        check_float("step_lr", step_lr, 0.0, strict=True)
        check_float("boundary_weight", boundary_weight, 0.0)
        self.starts_per_solution = starts_per_solution
        self.steps = steps
        self.step_lr = step_lr
        self.boundary_weight = boundary_weight
        self._init_forward(forward_hidden, forward_depth, forward_epochs, forward_from,
                           forward_lr, forward_arch)

    def _fit(self, xn: torch.Tensor, yn: torch.Tensor) -> None:
        self._fit_forward(xn, yn)

    def networks(self) -> dict[str, nn.Module]:
        return {"forward": self.forward_}

    def _propose(self, yn: torch.Tensor, n: int) -> torch.Tensor:
        m, dx = len(yn), self.x_dim_
        s = n * self.starts_per_solution
        x0 = torch.rand(m * s, dx) * 2 - 1
        y = yn.repeat_interleave(s, dim=0)
        x, loss = gradient_search(self.forward_, x0, y, self.steps, self.step_lr,
                                  self.boundary_weight, project=self.project)
        order = loss.view(m, s).argsort(dim=1)[:, :n]
        return torch.gather(x.view(m, s, dx), 1, order[:, :, None].expand(m, n, dx))


class _TandemNet(nn.Module):
    def __init__(self, inverse: nn.Module, forward: nn.Module) -> None:
        super().__init__()
        self.inverse = inverse
        self.forward_net = forward

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.inverse(y)


class MixtureTandem(ForwardSurrogateMixin):
    """Mixture of ``k`` tandem networks (``k = 1`` is the plain tandem).

    Parameters
    ----------
    k : int
        Number of inverse heads.
    repulsion : float
        ``lambda`` of the repulsion loss ``-lambda (1 - exp(-||g_i - g_j||^2/sigma^2))``.
    sigma : float
        Length scale of the repulsion (normalized input units).
    boundary_weight : float
        Weight of the boundary loss.
    forward_hidden, forward_depth, forward_epochs, forward_lr, forward_from : see
        :class:`NeuralAdjoint`.
    **kwargs : see :class:`InverseSolver`.
    """

    name = "mixture_tandem"

    def __init__(self, k: int = 4, repulsion: float = 0.02, sigma: float = 0.3,
                 boundary_weight: float = 10.0, forward_hidden: int = 256,
                 forward_depth: int = 4, forward_epochs: int = 100, forward_lr: float = 5e-3,
                 forward_from: InverseSolver | None = None, forward_arch: str = "mlp",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_int("k", k, 1)
        check_float("repulsion", repulsion, 0.0)
        check_float("sigma", sigma, 0.0, strict=True)
        check_float("boundary_weight", boundary_weight, 0.0)
        self.k = int(k)
        self.repulsion = repulsion
        self.sigma = sigma
        self.boundary_weight = boundary_weight
        self._init_forward(forward_hidden, forward_depth, forward_epochs, forward_from,
                           forward_lr, forward_arch)
        self.name = "tandem" if self.k == 1 else f"mixture_tandem_k{self.k}"
        self.deterministic = True

    def _heads(self, y: torch.Tensor) -> torch.Tensor:
        return self.net_.inverse(y).view(len(y), self.k, self.x_dim_)

    def _fit(self, xn: torch.Tensor, yn: torch.Tensor) -> None:
        f = self._fit_forward(xn, yn)
        net = _TandemNet(mlp(yn.shape[1], self.x_dim_ * self.k, self.hidden, self.depth), f)
        self.net_ = net
        k, lam, sig2, bw = self.k, self.repulsion, self.sigma**2, self.boundary_weight

        def loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            y = batch[1]
            tandem = cast(_TandemNet, model)
            g = tandem.inverse(y).view(len(y), k, -1)
            pred = tandem.forward_net(g.reshape(len(y) * k, -1)).view(len(y), k, -1)
            fit = (pred - y[:, None, :]).pow(2).sum(-1).mean()
            bnd = boundary_loss(g).mean()
            total = fit + bw * bnd
            logs = {"fit": fit.item()}
            if k > 1 and lam > 0:
                d2 = torch.cdist(g, g).pow(2)
                iu = torch.triu_indices(k, k, 1)
                rep = -(1 - torch.exp(-d2[:, iu[0], iu[1]] / sig2)).mean()
                total = total + lam * rep
                logs["repulsion"] = rep.item()
            return total, logs

        self.trainer_ = self._train(net, (xn, yn), loss, "tandem")

    def networks(self) -> dict[str, nn.Module]:
        return {"forward": self.forward_, "inverse": self.net_.inverse}

    def _propose(self, yn: torch.Tensor, n: int) -> torch.Tensor:
        m = len(yn)
        with torch.no_grad():
            g = self._heads(yn)
            gc = g.clamp(-1, 1)
            err = (self.forward_(gc.reshape(m * self.k, -1)).view(m, self.k, -1)
                   - yn[:, None, :]).pow(2).sum(-1)
            order = err.argsort(dim=1)
            ranked = torch.gather(gc, 1, order[:, :, None].expand(m, self.k, self.x_dim_))
        idx = torch.arange(n) % self.k
        return ranked[:, idx, :]


class Tandem(MixtureTandem):
    """Tandem network: one inverse head through the frozen forward surrogate."""

    name = "tandem"

    def __init__(self, **kwargs: Any) -> None:
        kwargs["k"] = 1
        super().__init__(**kwargs)
