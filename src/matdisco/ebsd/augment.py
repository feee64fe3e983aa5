"""Random, batched degradation of EBSD patterns in torch (training augmentation).

:func:`random_degrade` applies to every pattern of a batch an independent random draw of
the degradation model of :func:`matdisco.ebsd.simulate.degrade_patterns` (intensity floor,
multiplicative static background, Gaussian blur, Poisson shot noise), with parameters
drawn continuously up to a given :class:`~matdisco.ebsd.simulate.Degradation` level. A
fraction of the batch is left clean. Training on such batches makes OMNet robust to the
experiment-like test sets without ever showing it one of their patterns; projection-centre
error, which needs a re-projection, is handled by :func:`simulate_training_set`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from matdisco import MatdiscoError
from matdisco.ebsd.simulate import (
    DEGRADATION_LEVELS,
    Degradation,
    DetectorConfig,
    _hash,
    cache_dir,
    load_dataset,
    sample_orientations,
    save_dataset,
    simulate_patterns,
    static_background,
)

__all__ = ["jittered_pcs", "random_degrade", "simulate_training_set", "standardize"]


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Per-pattern zero mean, unit standard deviation (as ``preprocess_patterns``)."""
    mu = x.mean(dim=(-2, -1), keepdim=True)
    sd = x.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (x - mu) / sd.clamp_min(1e-6)


def _background(shape: tuple[int, int], amplitude: torch.Tensor) -> torch.Tensor:
    """:func:`~matdisco.ebsd.simulate.static_background` with one amplitude per pattern."""
    bump = torch.as_tensor(static_background(shape, 1.0), dtype=amplitude.dtype,
                           device=amplitude.device)
    a = amplitude[:, None, None]
    return (1.0 - a) + a * bump[None]


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per pattern (sigma 0: unchanged)."""
    n = x.shape[0]
    rad = max(1, int(math.ceil(3 * float(sigma.max()))))
    t = torch.arange(-rad, rad + 1, dtype=x.dtype, device=x.device)
    s = sigma.clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = k / k.sum(dim=1, keepdim=True)
    img = x[None]  # (1, n, H, W): one group per pattern
    img = F.conv2d(F.pad(img, (rad, rad, 0, 0), mode="replicate"), k[:, None, None, :],
                   groups=n)
    img = F.conv2d(F.pad(img, (0, 0, rad, rad), mode="replicate"), k[:, None, :, None],
                   groups=n)
    return img[0]


def random_degrade(x: torch.Tensor, level: Degradation | str = "noise3",
                   clean_fraction: float = 0.25, generator: torch.Generator | None = None,
                   pixel_noise: float = 0.0) -> torch.Tensor:
    """Degrade each pattern of ``x`` ``(n, rows, cols)`` by a random amount.

    Parameters
    ----------
    x : tensor (n, rows, cols)
        Patterns (any affine intensity scale: they are min-max normalised first).
    level : Degradation or str
        The strongest degradation drawn (default ``noise3``): background amplitude and
        blur are uniform in ``[0, level]``, the dose log-uniform between ``level.dose``
        and 100× that (or no shot noise).
    clean_fraction : float
        Fraction of patterns returned unchanged (only standardized).
    generator : torch.Generator, optional
        Random source (default: torch's global one, which the Trainer seeds).
    pixel_noise : float
        Largest standard deviation (relative to the degraded pattern's) of an additive,
        slightly spatially correlated Gaussian pixel noise drawn per pattern, which real
        detectors show after background correction and Poisson noise does not model.

    Returns
    -------
    tensor (n, rows, cols)
        Standardized degraded patterns.
    """
    if isinstance(level, str):
        if level not in DEGRADATION_LEVELS:
            raise MatdiscoError(f"unknown degradation level {level!r}; "
                                f"choose from {sorted(DEGRADATION_LEVELS)}")
        level = DEGRADATION_LEVELS[level]
    if not 0.0 <= clean_fraction <= 1.0:
        raise MatdiscoError(f"clean_fraction must be in [0, 1], got {clean_fraction}")
    if x.ndim != 3:
        raise MatdiscoError(f"patterns must have shape (n, rows, cols), got {tuple(x.shape)}")
    n = x.shape[0]
    dev, dt = x.device, x.dtype

    def u(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device="cpu").to(dev, dt)

    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    y = 0.2 + 0.8 * (x - lo) / (hi - lo).clamp_min(1e-12)
    if level.background > 0:
        y = y * _background((x.shape[-2], x.shape[-1]), level.background * u(n))
    if level.blur > 0:
        y = _blur(y, level.blur * u(n))
    if level.dose is not None:
        dose = level.dose * torch.exp(math.log(100.0) * u(n))[:, None, None]
        lam = y / y.mean(dim=(-2, -1), keepdim=True) * dose
        # a seeded generator lives on the CPU; without one, draw where the batch is
        lam = lam if generator is None else lam.cpu()
        y = torch.poisson(lam, generator=generator).to(dev, dt) / dose
    if pixel_noise > 0:
        y = standardize(y)
        g = torch.randn(y.shape, generator=generator, device="cpu").to(dev, dt)
        g = F.avg_pool2d(g[:, None], 3, 1, 1, count_include_pad=False)[:, 0] * 2.0
        y = y + pixel_noise * u(n)[:, None, None] * g
    keep = (u(n) < clean_fraction)[:, None, None]
    return torch.where(keep, standardize(x), standardize(y))


def jittered_pcs(n: int, pc: tuple[float, float, float], max_error: float,
                 clean_fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """Per-pattern projection centres ``(n, 3)`` with random errors.

    Each pattern draws its own error scale uniform in ``[0, max_error]`` (a fraction
    ``clean_fraction`` keeps the exact PC), then a Gaussian error of that scale.
    """
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0, max_error, n) * (rng.uniform(size=n) >= clean_fraction)
    return np.asarray(pc, float)[None] + rng.normal(size=(n, 3)) * scale[:, None]


def simulate_training_set(n: int, *, seed: int = 0, config: DetectorConfig | None = None,
                          pc_error: float = 0.005, clean_fraction: float = 0.25,
                          cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Clean training patterns with random projection-centre errors (cached in HDF5).

    Orientations are uniform in the m-3m fundamental zone; each pattern is projected with
    its own PC from :func:`jittered_pcs`. The other degradations are drawn per batch
    during training (:func:`random_degrade`), so every epoch sees new noise.

    Returns
    -------
    (patterns (n, rows, cols) float32, quaternions (n, 4))
    """
    cfg = config or DetectorConfig()
    q = sample_orientations(n, seed=seed)
    key = {"q": _hash(np.round(q, 10).tolist()), "det": cfg.to_dict(), "pc_error": pc_error,
           "clean_fraction": clean_fraction, "seed": seed, "v": 1}
    file = cache_dir() / f"ni_train_{n}_{_hash(key)}.h5"
    if cache and file.exists():
        x, qq, _ = load_dataset(file)
        return x, qq
    if pc_error > 0:
        pcs = jittered_pcs(n, cfg.pc, pc_error, clean_fraction, seed + 7)
        x = simulate_patterns(q, pc=pcs, config=cfg)
    else:
        x = simulate_patterns(q, config=cfg)
    if cache:
        save_dataset(file, x, q, {"detector": cfg.to_dict(), "pc_error": pc_error,
                                  "clean_fraction": clean_fraction, "seed": seed,
                                  "method": "random"})
    return x, q
