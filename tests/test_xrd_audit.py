"""Audit tests of the XRD simulation layer: Bragg positions, profiles, broadening, strain,
texture, mixtures, detector images, noise, background removal, libraries and readers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from matdisco import MatdiscoError
from matdisco.xrd.background import (
    cs_background,
    default_window,
    minimum_background,
    remove_background,
)
from matdisco.xrd.detector import DetectorGeometry, make_background, render_image
from matdisco.xrd.library import (
    default_phases,
    default_region_map,
    lever_fractions,
    make_library,
    render_phase,
    ternary_spread,
)
from matdisco.xrd.simulate import (
    PeakList,
    caglioti_fwhm,
    march_dollase,
    peak_list,
    pseudo_voigt,
    render_peaks,
    simulate_pattern,
)
from matdisco.xrd.synth import composition_library, mixture_pattern

A_SI = 5.431


@pytest.fixture(scope="module")
def si() -> Structure:
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(A_SI), ["Si"], [[0, 0, 0]])


def _fwhm(x: np.ndarray, y: np.ndarray) -> float:
    """Numerical FWHM of a single peak (linear interpolation of the half-height points)."""
    half = y.max() / 2
    above = np.flatnonzero(y >= half)
    i0, i1 = above[0], above[-1]
    left = np.interp(half, [y[i0 - 1], y[i0]], [x[i0 - 1], x[i0]])
    right = np.interp(half, [y[i1 + 1], y[i1]], [x[i1 + 1], x[i1]])
    return float(right - left)


# ------------------------------------------------------------------ 1D simulation
@pytest.mark.parametrize("wavelength, lam", [("CuKa1", 1.54056), (0.7093, 0.7093)])
def test_bragg_angles_and_q(si: Structure, wavelength: str | float, lam: float) -> None:
    d111 = A_SI / np.sqrt(3)
    tt = 2 * np.degrees(np.arcsin(lam / (2 * d111)))
    pk = peak_list(si, (5, 60), wavelength=wavelength)
    assert pk.wavelength == pytest.approx(lam, abs=1e-4)
    assert pk.two_theta[0] == pytest.approx(tt, abs=1e-3)
    if wavelength == "CuKa1":
        assert tt == pytest.approx(28.44, abs=0.01)
    # q = 4π sin θ / λ = 2π / d for every peak
    q = 4 * np.pi * np.sin(np.radians(pk.two_theta / 2)) / lam
    assert q[0] == pytest.approx(2 * np.pi / d111, rel=1e-5)
    grid = np.linspace(tt - 3, tt + 3, 6001)
    pat = simulate_pattern(si, grid, wavelength=wavelength)
    assert grid[np.argmax(pat)] == pytest.approx(tt, abs=2e-3)


def test_pseudo_voigt_width_and_area() -> None:
    x = np.linspace(20, 60, 40001)
    for eta in (0.0, 0.5, 1.0):
        for c in (30.0, 50.0):
            f = float(caglioti_fwhm(np.array([c]), 0.02, -0.01, 0.03)[0])
            t = np.tan(np.radians(c / 2))
            assert f == pytest.approx(np.sqrt(0.02 * t * t - 0.01 * t + 0.03))
            y = pseudo_voigt(x, np.array([c]), np.array([f]), eta)[0]
            assert y.max() == pytest.approx(1.0) and _fwhm(x, y) == pytest.approx(f, rel=1e-3)
    # rendered peaks integrate to their (integrated) intensity, whatever their width
    xx = np.linspace(0.5, 179.5, 400001)
    pk = PeakList(np.array([40.0, 120.0]), np.array([100.0, 50.0]))
    for eta in (0.0, 1.0):
        for u in (0.01, 0.5):
            y = render_peaks(PeakList(pk.two_theta[:1], pk.intensity[:1]), xx, u=u, eta=eta,
                             normalize=False, intensity="area")
            # (a Lorentzian loses a little of its tails beyond the grid)
            assert np.trapezoid(y, xx) == pytest.approx(100.0, rel=5e-3 if eta else 1e-4)
    # two peaks: the area ratio is the intensity ratio although the widths differ
    y = render_peaks(pk, xx, u=0.2, eta=0.0, normalize=False, intensity="area")
    a1 = np.trapezoid(y[xx < 80], xx[xx < 80])
    a2 = np.trapezoid(y[xx > 80], xx[xx > 80])
    assert a1 / a2 == pytest.approx(2.0, rel=1e-3)
    # the default (the convention of the stored benchmarks): heights are the intensities
    y = render_peaks(pk, xx, u=0.2, eta=0.0, normalize=False)
    assert y[xx < 80].max() == pytest.approx(100.0, rel=1e-3)
    assert y[xx > 80].max() == pytest.approx(50.0, rel=1e-3)
    with pytest.raises(MatdiscoError, match="intensity"):
        render_peaks(pk, xx, intensity="volume")


def test_scherrer_broadening_keeps_area() -> None:
    lam, size = 1.0, 20.0  # Å, nm
    pk = PeakList(np.array([40.0]), np.array([100.0]), wavelength=lam)
    x = np.linspace(30, 50, 20001)
    y = render_phase(pk, x, u=0, v=0, w=1e-6, eta=0.0, crystallite_size=size,
                     intensity="area")
    beta = np.degrees(0.9 * lam / (size * 10 * np.cos(np.radians(20.0))))
    assert _fwhm(x, y) == pytest.approx(np.hypot(beta, 1e-3), rel=2e-3)
    small = render_phase(pk, x, u=0, v=0, w=1e-6, eta=0.0, crystallite_size=5.0,
                         intensity="area")
    assert _fwhm(x, small) > 3.9 * _fwhm(x, y)  # β ∝ 1/L
    # broadening spreads the peak but keeps its integrated intensity
    assert np.trapezoid(small, x) == pytest.approx(np.trapezoid(y, x), rel=1e-3)
    assert np.trapezoid(y, x) == pytest.approx(100.0, rel=1e-3)


def test_strain_shift_sign_and_size() -> None:
    pk = PeakList(np.array([30.0, 60.0, 120.0]), np.ones(3) * 100, wavelength=1.5406)
    d = 1.5406 / (2 * np.sin(np.radians(pk.two_theta / 2)))
    for eps in (0.01, -0.01):
        s = pk.strained(eps)
        d_new = 1.5406 / (2 * np.sin(np.radians(s.two_theta / 2)))
        np.testing.assert_allclose(d_new, d * (1 + eps), rtol=1e-12)
        # Δ2θ ≈ −2 ε tan θ (radians): expansion lowers the angle, more at high angle
        approx = -2 * eps * np.tan(np.radians(pk.two_theta / 2))
        np.testing.assert_allclose(np.radians(s.two_theta - pk.two_theta), approx, rtol=0.1)
        assert np.all(np.sign(s.two_theta - pk.two_theta) == -np.sign(eps))
    grid = np.linspace(25, 35, 5001)
    one = PeakList(pk.two_theta[:1], pk.intensity[:1])
    shifted = render_peaks(one, grid, strain=0.01)
    assert grid[np.argmax(shifted)] == pytest.approx(one.strained(0.01).two_theta[0], abs=3e-3)


def test_march_dollase_hexagonal_and_bounds() -> None:
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    zno = default_phases(["ZnO_wurtzite"])["ZnO_wurtzite"]
    pat = XRDCalculator().get_pattern(zno, two_theta_range=(25, 40))
    r = 0.5
    f = march_dollase(zno, pat.hkls, (0, 0, 1), r)
    # (100): normals ⟂ c, (002): normals ∥ c, (101): in between
    assert f[0] == pytest.approx(r ** 1.5) and f[1] == pytest.approx(r ** -3)
    assert r ** 1.5 < f[2] < r ** -3
    base = peak_list(zno, (25, 40))
    tex = peak_list(zno, (25, 40), preferred_orientation=((0, 0, 1), r))
    np.testing.assert_allclose(tex.intensity / tex.intensity.max(),
                               base.intensity * f / (base.intensity * f).max())
    # needles (r > 1) weaken the basal reflection
    assert march_dollase(zno, pat.hkls, (0, 0, 1), 2.0)[1] < 1


def test_mixture_fractions_honoured() -> None:
    grid = np.linspace(20, 60, 2001)
    a = PeakList(np.array([30.0]), np.array([100.0]))
    b = PeakList(np.array([50.0]), np.array([100.0]))
    rng = np.random.default_rng(0)
    x = mixture_pattern([a, b], [0.7, 0.3], grid, rng, max_strain=0.0)
    ha, hb = x[grid < 40].max(), x[grid > 40].max()
    assert ha == pytest.approx(1.0) and hb / ha == pytest.approx(0.3 / 0.7, rel=1e-3)
    lib = composition_library([a, b, PeakList(np.array([40.0]), np.array([50.0]))],
                              n_samples=30, two_theta=grid, seed=1, noise=0.0)
    np.testing.assert_allclose(lib.fractions.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(lib.compositions.sum(1), 1, atol=1e-9)
    assert np.all(lib.fractions >= 0) and np.all(lib.compositions >= 0)


# ------------------------------------------------------------------ 2D images
def test_ring_radius_and_q_integration() -> None:
    from matdisco.xrd.readers import integrate

    px, dist, lam = 1e-3, 0.1, 1.0
    g = DetectorGeometry(shape=(96, 96), detector_size=96 * px, distance=dist,
                         poni=(0.048, 0.048), wavelength=lam)
    tth, _ = g.angle_maps()
    i, j = np.mgrid[0:96, 0:96]
    r = np.hypot((i + 0.5) * px - 0.048, (j + 0.5) * px - 0.048)
    np.testing.assert_allclose(tth, np.degrees(np.arctan(r / dist)), atol=1e-6)
    peak = 20.0
    grid = np.linspace(0.5, 40, 3951)
    img = render_image(np.exp(-0.5 * ((grid - peak) / 0.3) ** 2), grid, g, counts=None)
    ring_r = dist * np.tan(np.radians(peak))  # metres from the beam centre
    on = np.abs(r - ring_r) < px / 2
    assert img[on].mean() > 0.85 and img[np.abs(r - ring_r) > 5 * px].max() < 0.05
    t2, i2 = integrate(img, g, npt=400)
    assert t2[np.argmax(i2)] == pytest.approx(peak, abs=0.15)
    q, iq = integrate(img, g, npt=400, unit="q_A^-1")
    assert q[np.argmax(iq)] == pytest.approx(4 * np.pi * np.sin(np.radians(peak / 2)) / lam,
                                             abs=0.02)


def test_poisson_noise_mean_and_variance() -> None:
    g = DetectorGeometry(shape=(64, 64))
    grid = np.linspace(0.5, 80, 200)
    flat = np.ones_like(grid)
    img = render_image(flat, grid, g, counts=100.0, rng=0)
    assert np.all(img == np.round(img))
    assert img.mean() == pytest.approx(100.0, rel=0.02)
    assert img.var() == pytest.approx(100.0, rel=0.15)


def test_background_families() -> None:
    g = DetectorGeometry(shape=(32, 32))
    rng = np.random.default_rng(0)
    assert np.all(make_background("none", g, rng) == 0)
    sm = make_background("smooth", g, rng, 0.1)
    assert np.all(sm > 0) and sm.max() <= 0.1 * 1.5 + 1e-12 and sm.min() >= 0.05 - 1e-12
    irr = make_background("irregular", g, rng, 1.0)
    assert np.all(irr > 0) and 0.5 - 1e-9 <= irr.mean() <= 1.5 + 1e-9


def test_background_filters_match_scipy_all_windows() -> None:
    from scipy.ndimage import minimum_filter, uniform_filter

    rng = np.random.default_rng(3)
    img = rng.random((2, 19, 26)).astype(np.float32)
    for f in (1, 2, 4, 7, 30):  # even windows and windows larger than the image
        mf = minimum_filter(img, size=(1, f, f), mode="nearest")
        np.testing.assert_array_equal(minimum_background(img, f), mf)
        cs = uniform_filter(mf.astype(np.float64), size=(1, f, f), mode="nearest")
        np.testing.assert_allclose(cs_background(img, f), cs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(remove_background(img, "cs", f), img - cs, atol=1e-5)
    assert default_window((1024, 1024)) == 100 and default_window((16, 16)) == 3


def test_background_cost_independent_of_window() -> None:
    img = np.random.default_rng(0).random((256, 256)).astype(np.float32)

    def best(f: int) -> float:
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            remove_background(img, "cs", f)
            ts.append(time.perf_counter() - t0)
        return min(ts)

    best(5)
    # a brute-force f² window would be ~100× slower at f = 51
    assert best(51) < 4 * best(5) + 2e-3


# ------------------------------------------------------------------ libraries
def test_ternary_spread_and_library_labels() -> None:
    comp = ternary_spread(177, seed=2)
    assert comp.shape == (177, 3) and np.all(comp >= 0)
    np.testing.assert_allclose(comp.sum(1), 1)
    rm = default_region_map()
    lib = make_library(n_samples=24, shape=16, background="smooth", spottiness=0.0, seed=3,
                       n_points=400)
    np.testing.assert_array_equal(lib.labels, rm.label(lib.compositions.astype(float)))
    np.testing.assert_allclose(lib.fractions.sum(1), 1, atol=1e-5)
    for lab, fr in zip(lib.labels, lib.fractions, strict=True):
        present = {lib.phase_names[k] for k in np.flatnonzero(fr > 0)}
        assert present == set(rm.regions[lab].phases)
    # lever-rule fractions vary smoothly inside a region
    pc = np.array([[1, 0, 0], [1 / 3, 0, 2 / 3]], float)
    ts = np.linspace(0.05, 0.95, 50)
    path = np.array([(1 - t) * np.array([0.9, 0.05, 0.05]) + t * np.array([0.45, 0.05, 0.5])
                     for t in ts])
    fr = np.array([lever_fractions(c, pc) for c in path])
    np.testing.assert_allclose(fr.sum(1), 1)
    assert np.abs(np.diff(fr, axis=0)).max() < 0.05


# ------------------------------------------------------------------ readers
def test_image_roundtrips_keep_values(tmp_path) -> None:
    from matdisco.xrd.readers import read_image, write_image

    img = (np.random.default_rng(0).random((12, 10)) * 50).astype(np.float32)
    for suffix in (".tif", ".edf"):
        np.testing.assert_array_equal(read_image(write_image(tmp_path / f"a{suffix}", img)),
                                      img)
    # CBF stores integers: values are rounded, not truncated
    np.testing.assert_array_equal(read_image(write_image(tmp_path / "a.cbf", img)),
                                  np.rint(img))


def test_pattern_readers_headers_and_comments(tmp_path) -> None:
    from matdisco.xrd.readers import read_pattern

    cases = {
        "nohead.csv": "10,1\n11,3\n12,2\n",
        "head.csv": "# comment\ntwo_theta,intensity\n10,1\n11,3\n12,2\n",
        "three.csv": "2theta,I,sigma\n12,2,0.1\n10,1,0.1\n11,3,0.1\n",
        "plain.xy": "10 1\n11 3\n12 2\n",
        "comm.xy": "' exported\n# 2theta I\n10\t1\n11\t3\n12\t2\n",
        "head.xy": "# from instrument\n2theta intensity\n10 1\n11 3\n12 2\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        tt, inten = read_pattern(tmp_path / name)
        assert tt.tolist() == [10, 11, 12] and inten.tolist() == [1, 3, 2], name
