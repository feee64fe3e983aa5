"""Invertible networks: INN (Ardizzone et al. 2019), cINN (Ardizzone et al. 2019/2021)
and iPage (INN posterior sampling + gradient localization on a frozen forward model).

Coupling blocks are GLOW-style affine couplings (both halves transformed, soft-clamped
log-scales, identity initialisation) preceded by a fixed random orthogonal mixing.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from matdisco import MatdiscoError
from matdisco.inverse.adjoint import ForwardSurrogateMixin, gradient_search
from matdisco.inverse.base import InverseSolver, check_float, check_int, mlp

SAMPLERS = ("srs", "lhs", "mlhs")


def latent_samples(kind: str, n: int, d: int, rng: np.random.Generator,
                   candidates: int = 20) -> np.ndarray:
    """``n`` standard-normal latent vectors of dimension ``d``.

    Parameters
    ----------
    kind : {"srs", "lhs", "mlhs"}
        Simple random sampling, Latin hypercube, or maximin Latin hypercube (the design
        with the largest minimum pairwise distance out of ``candidates`` Latin hypercubes).
        Hypercube points are mapped through the Gaussian inverse CDF.
    """
    if kind == "srs":
        return rng.standard_normal((n, d))
    if kind not in SAMPLERS:
        raise MatdiscoError(f"unknown latent sampler {kind!r}; choose one of {SAMPLERS}")
    from scipy.spatial import cKDTree
    from scipy.stats import norm, qmc

    lhs = qmc.LatinHypercube(d, seed=rng)
    if kind == "lhs" or n < 3:
        u = lhs.random(n)
    else:
        best, best_d = None, -1.0
        for _ in range(candidates):
            cand = lhs.random(n)
            # minimum pairwise distance from nearest neighbours: O(n log n), not O(n^2)
            dmin = float(cKDTree(cand).query(cand, k=2)[0][:, 1].min())
            if dmin > best_d:
                best, best_d = cand, dmin
        u = best
    return norm.ppf(np.clip(u, 1e-6, 1 - 1e-6))


def mmd(a: torch.Tensor, b: torch.Tensor,
        widths: tuple[float, ...] = (0.2, 0.5, 0.9, 1.3)) -> torch.Tensor:
    """Maximum mean discrepancy with multi-scale inverse multiquadric kernels."""
    xx, yy, xy = a @ a.T, b @ b.T, a @ b.T
    rx, ry = xx.diag(), yy.diag()
    dxx = rx[:, None] + rx[None, :] - 2 * xx
    dyy = ry[:, None] + ry[None, :] - 2 * yy
    dxy = rx[:, None] + ry[None, :] - 2 * xy
    out = torch.zeros((), dtype=a.dtype)
    for h in widths:
        h2 = h * h
        out = out + (h2 / (h2 + dxx)).mean() + (h2 / (h2 + dyy)).mean() \
            - 2 * (h2 / (h2 + dxy)).mean()
    return out


class AffineCoupling(nn.Module):
    """GLOW-style affine coupling with a fixed orthogonal pre-mixing; optional condition."""

    rot: torch.Tensor

    def __init__(self, dim: int, hidden: int, depth: int, cond_dim: int = 0,
                 clamp: float = 2.0, seed: int = 0) -> None:
        super().__init__()
        if dim < 2:
            raise MatdiscoError(f"coupling blocks need at least 2 dimensions, got {dim}")
        self.d1 = dim // 2
        self.d2 = dim - self.d1
        self.clamp = clamp
        self.net1 = mlp(self.d1 + cond_dim, 2 * self.d2, hidden, depth)
        self.net2 = mlp(self.d2 + cond_dim, 2 * self.d1, hidden, depth)
        for net in (self.net1, self.net2):
            last = cast(nn.Linear, net[-1])
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
        self.register_buffer("rot", q)

    def _st(self, net: nn.Module, h: torch.Tensor,
            c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        out = net(h if c is None else torch.cat([h, c], dim=1))
        s, t = out.chunk(2, dim=1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def forward(self, x: torch.Tensor,
                c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = x @ self.rot
        x1, x2 = x[:, :self.d1], x[:, self.d1:]
        s1, t1 = self._st(self.net1, x1, c)
        y2 = x2 * torch.exp(s1) + t1
        s2, t2 = self._st(self.net2, y2, c)
        y1 = x1 * torch.exp(s2) + t2
        return torch.cat([y1, y2], dim=1), s1.sum(1) + s2.sum(1)

    def inverse(self, y: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        y1, y2 = y[:, :self.d1], y[:, self.d1:]
        s2, t2 = self._st(self.net2, y2, c)
        x1 = (y1 - t2) * torch.exp(-s2)
        s1, t1 = self._st(self.net1, x1, c)
        x2 = (y2 - t1) * torch.exp(-s1)
        return torch.cat([x1, x2], dim=1) @ self.rot.T


class InvertibleNet(nn.Module):
    """A stack of :class:`AffineCoupling` blocks."""

    def __init__(self, dim: int, n_blocks: int, hidden: int, depth: int,
                 cond_dim: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            AffineCoupling(dim, hidden, depth, cond_dim, seed=seed * 1000 + i)
            for i in range(n_blocks)
        )

    def forward(self, x: torch.Tensor,
                c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = torch.zeros(len(x), dtype=x.dtype, device=x.device)
        for b in self.blocks:
            x, ld = b(x, c)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        for b in reversed(self.blocks):
            z = cast(AffineCoupling, b).inverse(z, c)
        return z


def draw_latents(sampler: str, seed: int, m: int, n: int, d: int) -> torch.Tensor:
    """Latents ``(m, n, d)``: one design of ``n`` points per target (see
    :func:`latent_samples`)."""
    rng = np.random.default_rng(seed + 104729)
    if sampler == "srs":
        z = rng.standard_normal((m, n, d))
    else:
        z = np.stack([latent_samples(sampler, n, d, rng) for _ in range(m)])
    return torch.as_tensor(z, dtype=torch.float32)


def farthest_point_subset(x: torch.Tensor, err: torch.Tensor, n: int,
                          tol: float) -> torch.Tensor:
    """``n`` rows of ``x (N, d)`` spread out by greedy farthest-point selection.

    Rows with ``err <= tol`` are eligible (topped up with the lowest errors when fewer
    than ``n`` are); the selection starts from the lowest error and adds, one at a time,
    the eligible row farthest from those already chosen.
    """
    order = torch.argsort(err)
    n_ok = max(n, int((err <= tol).sum()))
    pool = x[order[:n_ok]]
    chosen = [0]
    dist = (pool - pool[0]).pow(2).sum(-1)
    for _ in range(1, n):
        j = int(torch.argmax(dist))
        chosen.append(j)
        dist = torch.minimum(dist, (pool - pool[j]).pow(2).sum(-1))
    return pool[chosen]


class _LatentSampling(InverseSolver):
    sampler: str = "srs"

    def _latents(self, m: int, n: int, d: int) -> torch.Tensor:
        return draw_latents(self.sampler, self.seed, m, n, d)


class INN(_LatentSampling):
    """Invertible neural network ``x <-> [y, z]`` (Ardizzone et al., ICLR 2019).

    Trained with ``L_y`` (MSE of the predicted targets), MMD on ``(y, z)`` against
    ``p(y) N(0, I)``, MMD on backward samples ``x`` against the data, a reconstruction
    term and zero-padding losses. The backward weight follows the bidirectional schedule
    of iPage: it rises exponentially from ``1e-2`` to 1 over the first half of training
    (a trainer callback sets it from ``trainer.epoch``).

    Parameters
    ----------
    n_blocks : int
        Coupling blocks.
    z_dim : int, optional
        Latent dimension (default ``max(1, dx - dy)``).
    pad : int
        Extra zero-padding dimensions (the network width is
        ``max(dx, dy + z_dim) + pad``).
    w_y, w_z, w_x, w_pad, w_rec : float
        Loss weights.
    sampler : {"srs", "lhs", "mlhs"}
        Latent sampling at proposal time.
    **kwargs : see :class:`InverseSolver`.
    """

    name = "inn"

    def __init__(self, n_blocks: int = 6, z_dim: int | None = None, pad: int = 2,
                 w_y: float = 5.0, w_z: float = 50.0, w_x: float = 50.0, w_pad: float = 2.0,
                 w_rec: float = 1.0, y_noise: float = 0.01, sampler: str = "srs",
                 **kwargs: Any) -> None:
        kwargs.setdefault("epochs", 150)
        super().__init__(**kwargs)
        if sampler not in SAMPLERS:
            raise MatdiscoError(f"unknown latent sampler {sampler!r}; choose one of {SAMPLERS}")
        check_int("n_blocks", n_blocks, 1)
        check_int("z_dim", z_dim, 1, none_ok=True)
        check_int("pad", pad, 0)
        for what, w in (("w_y", w_y), ("w_z", w_z), ("w_x", w_x), ("w_pad", w_pad),
                        ("w_rec", w_rec), ("y_noise", y_noise)):
            check_float(what, w, 0.0)
        self.n_blocks = n_blocks
        self.z_dim = z_dim
        self.pad = pad
        self.w_y, self.w_z, self.w_x, self.w_pad, self.w_rec = w_y, w_z, w_x, w_pad, w_rec
        self.y_noise = y_noise
        self.sampler = sampler

    def networks(self) -> dict[str, nn.Module]:
        return {"inn": self.inn_}

    def backward_weight(self, epoch: int, epochs: int | None = None) -> float:
        """Bidirectional schedule: ``10^(-2 + 2 * min(1, epoch / (epochs / 2)))``.

        ``epochs`` is the number of epochs actually trained (``self.epochs`` raised by
        ``min_steps``, see :class:`~matdisco.inverse.base.InverseSolver`).
        """
        total = self.epochs if epochs is None else epochs
        prog = min(1.0, epoch / max(1.0, 0.5 * total))
        return 10.0 ** (-2.0 + 2.0 * prog)

    def _fit(self, xn: torch.Tensor, yn: torch.Tensor) -> None:
        dx, dy = xn.shape[1], yn.shape[1]
        dz = self.z_dim or max(1, dx - dy)
        dim = max(dx, dy + dz) + self.pad
        self.dz_, self.dim_ = dz, dim
        self.inn_ = InvertibleNet(dim, self.n_blocks, self.hidden, self.depth, seed=self.seed)
        state = {"w_back": self.backward_weight(0)}
        sol = self

        def loss(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
            x, y = batch
            b = len(x)
            xp = torch.cat([x, 1e-3 * torch.randn(b, dim - dx)], dim=1)
            out, _ = model(xp)
            oy, oz, opad = out[:, :dy], out[:, dy:dy + dz], out[:, dy + dz:]
            l_y = (oy - y).pow(2).mean()
            l_pad = opad.pow(2).mean() if opad.shape[1] else torch.zeros(())
            l_z = mmd(torch.cat([oy.detach(), oz], 1), torch.cat([y, torch.randn(b, dz)], 1))
            # reconstruction from slightly perturbed outputs
            rec_in = torch.cat([y + sol.y_noise * torch.randn_like(y), oz,
                                torch.zeros(b, dim - dy - dz)], 1)
            inn = cast(InvertibleNet, model)
            x_rec = inn.inverse(rec_in + 1e-3 * torch.randn_like(rec_in))
            l_rec = (x_rec[:, :dx] - x).pow(2).mean()
            # backward samples from the prior latent
            back_in = torch.cat([y + sol.y_noise * torch.randn_like(y), torch.randn(b, dz),
                                 torch.zeros(b, dim - dy - dz)], 1)
            xb = inn.inverse(back_in)
            l_x = mmd(xb[:, :dx], x)
            l_xpad = xb[:, dx:].pow(2).mean() if dim > dx else torch.zeros(())
            wb = state["w_back"]
            total = (sol.w_y * l_y + sol.w_pad * (l_pad + wb * l_xpad) + sol.w_z * l_z
                     + sol.w_rec * l_rec + wb * sol.w_x * l_x)
            return total, {"l_y": l_y.item(), "mmd_z": l_z.item(), "mmd_x": l_x.item(),
                           "rec": l_rec.item()}

        def schedule(trainer: Any, logs: dict[str, Any]) -> None:
            state["w_back"] = sol.backward_weight(trainer.epoch, trainer.config.epochs)
            logs["w_back"] = state["w_back"]

        self.trainer_ = self._train(self.inn_, (xn, yn), loss, "inn", callbacks=[schedule],
                                    scheduled_loss=True)

    def posterior(self, yn: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Backward pass ``[y, z, 0] -> x`` (normalized); ``yn (m, dy)``, ``z (m, n, dz)``."""
        m, n, dz = z.shape
        y = yn.repeat_interleave(n, dim=0)
        inp = torch.cat([y, z.reshape(m * n, dz),
                         torch.zeros(m * n, self.dim_ - self.y_dim_ - dz)], 1)
        with torch.no_grad():
            x = self.inn_.inverse(inp)[:, :self.x_dim_]
        return x.view(m, n, self.x_dim_)

    def _propose(self, yn: torch.Tensor, n: int) -> torch.Tensor:
        return self.posterior(yn, self._latents(len(yn), n, self.dz_))


class CINN(_LatentSampling):
    """Conditional INN ``x <-> z | y`` trained by maximum likelihood.

    Parameters
    ----------
    n_blocks : int
        Conditional coupling blocks.
    sampler : {"srs", "lhs", "mlhs"}
        Latent sampling at proposal time.
    **kwargs : see :class:`InverseSolver`.
    """

    name = "cinn"

    def __init__(self, n_blocks: int = 6, sampler: str = "srs", **kwargs: Any) -> None:
        kwargs.setdefault("epochs", 150)
        super().__init__(**kwargs)
        if sampler not in SAMPLERS:
            raise MatdiscoError(f"unknown latent sampler {sampler!r}; choose one of {SAMPLERS}")
        check_int("n_blocks", n_blocks, 1)
        self.n_blocks = n_blocks
        self.sampler = sampler

    def networks(self) -> dict[str, nn.Module]:
        return {"cinn": self.inn_}

    def _fit(self, xn: torch.Tensor, yn: torch.Tensor) -> None:
        dx, dy = xn.shape[1], yn.shape[1]
        self.dim_ = max(dx, 2)
        dim = self.dim_
        self.inn_ = InvertibleNet(dim, self.n_blocks, self.hidden, self.depth, cond_dim=dy,
                                  seed=self.seed)
        half_log_2pi = 0.5 * math.log(2 * math.pi)

        def loss(model: nn.Module, batch: Any) -> torch.Tensor:
            x, y = batch
            # a little dequantization noise keeps the density finite on discrete inputs
            xp = x + 1e-3 * torch.randn_like(x)
            if dim > dx:
                xp = torch.cat([xp, torch.randn(len(x), dim - dx)], 1)
            z, logdet = model(xp, y)
            nll = 0.5 * z.pow(2).sum(1) + dim * half_log_2pi - logdet
            return nll.mean() / dim

        self.trainer_ = self._train(self.inn_, (xn, yn), loss, "cinn")

    def _propose(self, yn: torch.Tensor, n: int) -> torch.Tensor:
        m = len(yn)
        z = self._latents(m, n, self.dim_).reshape(m * n, self.dim_)
        with torch.no_grad():
            x = self.inn_.inverse(z, yn.repeat_interleave(n, dim=0))[:, :self.x_dim_]
        return x.view(m, n, self.x_dim_)


class IPage(ForwardSurrogateMixin):
    """iPage: INN posterior samples, then gradient localization on a frozen forward model.

    For a target ``y*`` the INN maps latent samples (simple random, Latin hypercube or
    maximin Latin hypercube, through the Gaussian inverse CDF) to posterior samples of
    ``x``, which a few Adam steps on ``||f(x) - y*||^2 + boundary loss`` through the frozen
    forward surrogate move onto the solution set.

    Parameters
    ----------
    sampler : {"srs", "lhs", "mlhs"}
        Latent sampling scheme.
    loc_steps, loc_lr : int, float
        Localization steps and Adam step size.
    boundary_weight : float
        Weight of the boundary loss during localization.
    retries, retry_tol : int, float
        Localized samples whose surrogate error (standardized units) stays above
        ``retry_tol`` are replaced by fresh posterior samples, localized again, up to
        ``retries`` times (the cost grows only with the number of failures).
    prescreen : int
        Posterior samples drawn per localized sample: the INN is cheap to invert, so
        ``prescreen`` times as many samples are drawn and only those with the lowest
        surrogate error (one forward pass) are localized, in their latent-design order
        (1: every sample is localized, as in the iPage study). Fewer samples then start in
        the basin of a wrong local minimum, which saves retries.
    candidates : int
        Posterior samples localized per requested solution; the one with the lowest
        surrogate error is proposed (the counterpart of the neural adjoint's starts per
        solution; the cost grows linearly with it).
    selection : {"best", "diverse"}
        How ``n`` solutions are chosen from the ``n * candidates`` localized samples of a
        target. ``"best"``: candidates are grouped in the order of the latent design and the
        lowest surrogate error of each group wins (every solution keeps its own region of
        the posterior). ``"diverse"``: greedy farthest-point selection in ``x`` among the
        samples whose surrogate error is at most ``retry_tol`` (topped up by the lowest
        errors), starting from the best one, so that few solutions still spread over all
        the modes of the solution set; with ``n = 1`` it is the same as ``"best"``.
    inn_from : INN, optional
        A fitted INN to reuse (same data and bounds).
    inn_params : dict, optional
        Parameters of the INN trained when ``inn_from`` is not given.
    forward_hidden, forward_depth, forward_epochs, forward_lr, forward_from, forward_arch :
        forward surrogate, see
        :class:`matdisco.inverse.adjoint.NeuralAdjoint`.
    **kwargs : see :class:`InverseSolver`.
    """

    name = "ipage"

    def __init__(self, sampler: str = "mlhs", loc_steps: int = 100, loc_lr: float = 0.02,
                 boundary_weight: float = 10.0, retries: int = 2,
                 retry_tol: float = 1e-4, candidates: int = 1, selection: str = "best",
                 prescreen: int = 1, inn_from: INN | None = None,
                 inn_params: dict[str, Any] | None = None, forward_hidden: int = 256,
                 forward_depth: int = 4, forward_epochs: int = 100, forward_lr: float = 5e-3,
                 forward_from: InverseSolver | None = None, forward_arch: str = "mlp",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if sampler not in SAMPLERS:
            raise MatdiscoError(f"unknown latent sampler {sampler!r}; choose one of {SAMPLERS}")
        self.sampler = sampler
        check_int("loc_steps", loc_steps, 0)
        check_float("loc_lr", loc_lr, 0.0, strict=True)
        check_float("boundary_weight", boundary_weight, 0.0)
        check_int("retries", retries, 0)
        check_float("retry_tol", retry_tol, 0.0)
        check_int("candidates", candidates, 1)
        check_int("prescreen", prescreen, 1)
        if inn_from is not None and not isinstance(inn_from, INN):
            raise MatdiscoError(f"inn_from must be a fitted INN or None, got {inn_from!r}")
        if inn_params is not None and not isinstance(inn_params, dict):
            raise MatdiscoError(f"inn_params must be a dict of INN parameters, got "
                                f"{inn_params!r}")
        self.loc_steps = loc_steps
        self.loc_lr = loc_lr
        self.boundary_weight = boundary_weight
        self.retries = int(retries)
        self.retry_tol = retry_tol
        self.candidates = int(candidates)
        self.prescreen = int(prescreen)
        if selection not in ("best", "diverse"):
            raise MatdiscoError(f"unknown selection {selection!r}; choose 'best' or 'diverse'")
        self.selection = selection
        self.inn_from = inn_from
        self.inn_params = inn_params
        self._init_forward(forward_hidden, forward_depth, forward_epochs, forward_from,
                           forward_lr, forward_arch)
        self.name = f"ipage_{sampler}"

    def networks(self) -> dict[str, nn.Module]:
        return {"forward": self.forward_, "inn": self.inn_.inn_}

    def _fit(self, xn: torch.Tensor, yn: torch.Tensor) -> None:
        self._fit_forward(xn, yn)
        if self.inn_from is not None and hasattr(self.inn_from, "inn_"):
            self.inn_ = self.inn_from
        else:
            params = dict(self.inn_params or {})
            for k in ("hidden", "depth", "batch_size", "lr", "min_steps", "seed", "device",
                      "progress"):
                params.setdefault(k, getattr(self, k))
            params.setdefault("epochs", max(self.epochs, 150))
            inn = INN(**params)
            inn.scaler_ = self.scaler_
            inn.x_dim_, inn.y_dim_ = self.x_dim_, self.y_dim_
            inn.y_min_, inn.y_max_ = self.y_min_, self.y_max_
            if self.run_dir is not None:
                inn.run_dir = f"{self.run_dir}/inn"
            inn._fit(xn, yn)
            self.inn_ = inn

    def _localize(self, yn: torch.Tensor, z: torch.Tensor,
                  n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """INN posterior samples for latents ``z (m, n * prescreen, dz)``; the ``n`` per
        target with the lowest surrogate error are localized: ``(m*n, dx)`` and the
        surrogate error ``(m*n,)``."""
        m, dx = len(yn), self.x_dim_
        x0 = self.inn_.posterior(yn, z).clamp(-1.5, 1.5)
        if z.shape[1] > n:
            e0 = self.surrogate_error(x0.reshape(-1, dx).clamp(-1.0, 1.0),
                                      yn.repeat_interleave(z.shape[1], dim=0))
            keep = e0.view(m, -1).argsort(dim=1)[:, :n].sort(dim=1).values
            x0 = torch.gather(x0, 1, keep[:, :, None].expand(m, n, dx))
        x0 = x0.reshape(m * n, dx)
        y = yn.repeat_interleave(n, dim=0)
        if self.loc_steps > 0:
            return gradient_search(self.forward_, x0, y, self.loc_steps, self.loc_lr,
                                   self.boundary_weight, project=self.project)
        x0 = self.project(x0)
        return x0, self.surrogate_error(x0, y)

    def _propose(self, yn: torch.Tensor, n_out: int) -> torch.Tensor:
        m, dz, k = len(yn), self.inn_.dz_, self.candidates
        n = n_out * k
        p = self.prescreen
        x, err = self._localize(yn, draw_latents(self.sampler, self.seed, m, n * p, dz), n)
        # a posterior sample that started in the basin of a wrong local minimum does not
        # localize; it is replaced by a fresh posterior sample (the better one is kept)
        for r in range(self.retries):
            bad = torch.nonzero(err > self.retry_tol).flatten()
            if len(bad) == 0:
                break
            z = draw_latents("srs", self.seed + 7 * (r + 1), len(bad), p, dz)
            xr, er = self._localize(yn[bad // n], z, 1)
            better = er < err[bad]
            x[bad[better]] = xr[better]
            err[bad[better]] = er[better]
        if k == 1:
            return x.view(m, n, self.x_dim_)
        if self.selection == "diverse" and n_out > 1:  # one solution: the best, below
            xs, es = x.view(m, n, self.x_dim_), err.view(m, n)
            return torch.stack([farthest_point_subset(xs[i], es[i], n_out, self.retry_tol)
                                for i in range(m)])
        best = err.view(m, n_out, k).argmin(dim=2)
        x = x.view(m, n_out, k, self.x_dim_)
        return torch.gather(x, 2, best[:, :, None, None].expand(m, n_out, 1, self.x_dim_))[:, :, 0]
