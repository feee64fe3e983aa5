"""Tests of the batched torch degradation used to augment OMNet training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from matdisco import MatdiscoError
from matdisco.ebsd import DEGRADATION_LEVELS, Degradation, OMNetIndexer
from matdisco.ebsd.augment import _background, _blur, jittered_pcs, random_degrade, standardize
from matdisco.ebsd.simulate import static_background


def _patterns(n: int = 12, size: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = torch.stack([torch.cos(0.3 * (k + 1) * x + 0.2 * y) for k in range(n)]).float()
    return base + 0.1 * torch.rand(n, size, size, generator=g)


def test_blur_and_background_match_numpy_reference() -> None:
    x = _patterns(4)
    sig = torch.tensor([0.0, 0.5, 1.0, 1.5])
    got = _blur(x.double(), sig.double()).numpy()
    for i, s in enumerate(sig.tolist()):
        ref = x[i].double().numpy() if s == 0 else gaussian_filter(
            x[i].double().numpy(), s, mode="nearest", truncate=3 * 1.5 / s + 1e-9)
        assert np.allclose(got[i], ref, atol=2e-3), i
    a = torch.tensor([0.0, 0.3, 0.6], dtype=torch.float64)
    bg = _background((20, 24), a).numpy()
    for i, ai in enumerate(a.tolist()):
        assert np.allclose(bg[i], static_background((20, 24), ai))


def test_random_degrade_is_standardized_random_and_seeded() -> None:
    x = _patterns()
    out = random_degrade(x, "noise2", clean_fraction=0.0,
                         generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.allclose(out.mean(dim=(-2, -1)), torch.zeros(len(x)), atol=1e-4)
    assert torch.allclose(out.std(dim=(-2, -1), unbiased=False), torch.ones(len(x)), atol=1e-3)
    clean = standardize(x)
    # every pattern changed, by different amounts (parameters drawn per pattern)
    d = (out - clean).abs().mean(dim=(-2, -1))
    assert (d > 1e-3).all() and d.std() > 1e-3
    again = random_degrade(x, "noise2", clean_fraction=0.0,
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    # clean_fraction = 1 returns the standardized input
    assert torch.allclose(random_degrade(x, "noise2", clean_fraction=1.0), clean)
    # a level without degradation leaves patterns as they are (up to scaling)
    none = random_degrade(x, Degradation(), clean_fraction=0.0)
    assert torch.allclose(none, clean, atol=1e-4)
    # stronger level -> lower correlation with the clean pattern on average
    def corr(a: torch.Tensor) -> float:
        return float((a * clean).mean(dim=(-2, -1)).mean())
    g = torch.Generator().manual_seed(2)
    weak = random_degrade(x, "noise1", 0.0, g)
    strong = random_degrade(x, "noise3", 0.0, torch.Generator().manual_seed(2))
    assert corr(strong) < corr(weak)


def test_bad_augmentation_settings_are_refused() -> None:
    x = _patterns(2)
    with pytest.raises(MatdiscoError, match="unknown degradation level"):
        random_degrade(x, "noise9")
    with pytest.raises(MatdiscoError, match="clean_fraction"):
        random_degrade(x, "noise1", clean_fraction=1.5)
    with pytest.raises(MatdiscoError, match="rows, cols"):
        random_degrade(x[0], "noise1")
    with pytest.raises(MatdiscoError, match="augmentation level"):
        OMNetIndexer(augment="noisy")


def test_jittered_pcs() -> None:
    pc = (0.4, 0.2, 0.5)
    p = jittered_pcs(2000, pc, 0.005, clean_fraction=0.25, seed=0)
    assert p.shape == (2000, 3)
    exact = np.all(p == np.asarray(pc), axis=1)
    assert 0.2 < exact.mean() < 0.3
    assert np.abs(p - np.asarray(pc)).max() < 6 * 0.005
    assert DEGRADATION_LEVELS["noise2"].pc_error > 0


def test_pixel_noise_adds_correlated_noise() -> None:
    x = _patterns()
    lvl = Degradation()  # no other degradation: only the pixel noise acts
    a = random_degrade(x, lvl, 0.0, torch.Generator().manual_seed(3))
    b = random_degrade(x, lvl, 0.0, torch.Generator().manual_seed(3), pixel_noise=2.0)
    clean = standardize(x)
    assert torch.allclose(a, clean, atol=1e-4)
    assert (b - clean).abs().mean() > 0.05
    assert torch.allclose(b.std(dim=(-2, -1), unbiased=False), torch.ones(len(x)), atol=1e-3)
