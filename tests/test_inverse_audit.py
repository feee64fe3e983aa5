"""Audit of the inverse-design tasks' true forward models, the FE homogenization, the
evaluation helpers and the Latin-hypercube latent samplers (against their docstrings)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from matdisco.inverse import get_task, latent_samples
from matdisco.inverse.evaluation import (
    mode_coverage,
    r_t_curve,
    resimulation_errors,
    sinewave_modes,
)
from matdisco.inverse.fem import (
    E_VOID,
    NU,
    effective_youngs_modulus,
    element_matrices,
    homogenized_stiffness,
)
from matdisco.inverse.tasks import MoS2Bandgap


# ------------------------------------------------------------------------- sinewave
def test_sinewave_formula_bounds_prior_and_modes() -> None:
    task = get_task("sinewave")
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (200, 2))
    np.testing.assert_allclose(task.forward(x)[:, 0],
                               np.sin(3 * np.pi * x[:, 0]) + np.cos(3 * np.pi * x[:, 1]),
                               atol=1e-12)
    np.testing.assert_array_equal(task.lower, [-1, -1])
    np.testing.assert_array_equal(task.upper, [1, 1])
    assert task.single_target.tolist() == [1.2]
    xs = task.sample_prior(20000, seed=0)
    assert np.all(task.in_bounds(xs))
    np.testing.assert_allclose(xs.mean(axis=0), 0.0, atol=0.03)
    np.testing.assert_allclose(xs.var(axis=0), 1 / 3, rtol=0.05)  # U(-1, 1)
    # 3 maxima of sin(3 pi x1) times 3 maxima of cos(3 pi x2) in the box: 9 closed
    # level curves f = 1.2, independent of the grid resolution
    for grid in (301, 601, 901):
        assert sinewave_modes(1.2, grid)[2] == 9


# ------------------------------------------------------------------------- robotic arm
def test_robotic_arm_matches_documented_kinematics_and_prior() -> None:
    arm = get_task("robotic_arm")
    assert arm.lengths == (0.5, 0.5, 1.0)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(100, 4)) * [0.25, 0.5, 0.5, 0.5]
    h, t1, t2, t3 = x.T
    p1, p2, p3 = t1, t1 + t2, t1 + t2 + t3
    y1 = 0.5 * np.cos(p1) + 0.5 * np.cos(p2) + 1.0 * np.cos(p3)
    y2 = h + 0.5 * np.sin(p1) + 0.5 * np.sin(p2) + 1.0 * np.sin(p3)
    np.testing.assert_allclose(arm.forward(x), np.stack([y1, y2], axis=1), atol=1e-12)
    # segment lengths between consecutive joints; the first joint sits on the rail
    j = arm.joints(x)
    np.testing.assert_allclose(np.linalg.norm(np.diff(j, axis=1), axis=2),
                               np.tile([0.5, 0.5, 1.0], (100, 1)), atol=1e-12)
    np.testing.assert_allclose(j[:, 0], np.stack([np.zeros(100), h], axis=1))
    # prior N(0, diag(1/16, 1/4, 1/4, 1/4)) truncated to +-4 sigma
    np.testing.assert_allclose(arm.upper, [1.0, 2.0, 2.0, 2.0])
    np.testing.assert_allclose(arm.lower, -arm.upper)
    xs = arm.sample_prior(20000, seed=1)
    np.testing.assert_allclose(xs.mean(axis=0), 0.0, atol=0.02)
    np.testing.assert_allclose(xs.var(axis=0), [1 / 16, 1 / 4, 1 / 4, 1 / 4], rtol=0.05)
    assert arm.single_target.tolist() == [1.5, 0.0]
    assert np.linalg.norm(arm.single_target) < sum(arm.lengths)  # reachable


# ------------------------------------------------------------------------- ballistics
def _hand_integrated_impact(task, x: np.ndarray, dt: float = 2e-4) -> np.ndarray:
    """RK4 on dv/dt = -g e_y - (k/m) v, impact by linear interpolation where y crosses 0."""
    g, c = task.g, task.k / task.m
    s = np.stack([x[:, 0], x[:, 1], x[:, 3] * np.cos(x[:, 2]), x[:, 3] * np.sin(x[:, 2])],
                 axis=1)

    def rhs(s: np.ndarray) -> np.ndarray:
        return np.stack([s[:, 2], s[:, 3], -c * s[:, 2], -g - c * s[:, 3]], axis=1)

    impact = np.full(len(x), np.nan)
    for _ in range(int(20 / dt)):
        k1 = rhs(s)
        k2 = rhs(s + 0.5 * dt * k1)
        k3 = rhs(s + 0.5 * dt * k2)
        k4 = rhs(s + dt * k3)
        new = s + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        cross = np.isnan(impact) & (s[:, 1] > 0) & (new[:, 1] <= 0)
        w = s[cross, 1] / (s[cross, 1] - new[cross, 1])
        impact[cross] = s[cross, 0] + w * (new[cross, 0] - s[cross, 0])
        s = new
        if not np.isnan(impact).any():
            break
    return impact


def test_ballistics_matches_hand_integration_and_prior() -> None:
    task = get_task("ballistics")
    assert (task.g, task.m, task.k) == (9.81, 0.2, 0.25)
    x = task.sample_prior(12, seed=4)
    x = np.vstack([x, [[0.0, 0.05, math.radians(9.0), 1.0],      # low and slow
                       [-1.0, 3.5, math.radians(72.0), 35.0]]])  # high and fast
    np.testing.assert_allclose(task.forward(x)[:, 0], _hand_integrated_impact(task, x),
                               atol=1e-5)
    # drag shortens the throw against the vacuum range
    vac = x[:, 0] + x[:, 3] * np.cos(x[:, 2]) * (
        x[:, 3] * np.sin(x[:, 2]) + np.sqrt((x[:, 3] * np.sin(x[:, 2])) ** 2
                                            + 2 * task.g * x[:, 1])) / task.g
    assert np.all(task.forward(x)[:, 0] < vac)
    # prior: x1 ~ N(0, 1/4), x2 ~ N(3/2, 1/4) (truncated at 0), angle ~ U(9, 72) deg,
    # speed ~ Poisson(15) (truncated to [1, 35])
    np.testing.assert_allclose(task.lower, [-2, 0, math.radians(9), 1])
    np.testing.assert_allclose(task.upper, [2, 3.5, math.radians(72), 35])
    xs = task.sample_prior(20000, seed=0)
    assert np.all(task.in_bounds(xs))
    np.testing.assert_allclose(xs[:, 0].mean(), 0.0, atol=0.02)
    np.testing.assert_allclose(xs[:, 0].var(), 0.25, rtol=0.05)
    np.testing.assert_allclose(xs[:, 1].mean(), 1.5, atol=0.02)
    np.testing.assert_allclose(xs[:, 1].var(), 0.25, rtol=0.06)
    np.testing.assert_allclose(np.degrees(xs[:, 2]).mean(), 40.5, atol=0.5)
    np.testing.assert_allclose(xs[:, 3].mean(), 15.0, rtol=0.02)
    np.testing.assert_allclose(xs[:, 3].var(), 15.0, rtol=0.06)
    assert np.all(xs[:, 3] == np.round(xs[:, 3])) and xs[:, 3].min() >= 1
    # trajectory: starts at the throw point, ends on the ground at the impact point
    tr = task.trajectory(x[:3], 30)
    np.testing.assert_allclose(tr[:, 0], x[:3, :2], atol=1e-12)
    np.testing.assert_allclose(tr[:, -1, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(tr[:, -1, 0], task.forward(x[:3])[:, 0], atol=1e-12)


# ------------------------------------------------------------------------- FE homogenization
def test_fe_solid_and_empty_cells() -> None:
    _, _, d = element_matrices(NU)
    np.testing.assert_allclose(homogenized_stiffness(np.ones((6, 10))), d, atol=1e-10)
    # plane-stress isotropic solid: C11 = E/(1-nu^2), C12 = nu C11, C33 = E/(2(1+nu))
    assert d[0, 0] == pytest.approx(1 / (1 - NU**2))
    assert d[0, 1] == pytest.approx(NU / (1 - NU**2))
    assert d[2, 2] == pytest.approx(1 / (2 * (1 + NU)))
    assert effective_youngs_modulus(np.zeros((16, 16))) == pytest.approx(E_VOID, rel=1e-9)
    assert effective_youngs_modulus(np.zeros((16, 16)), e_void=1e-9) < 1e-8


def test_fe_symmetric_cells_give_symmetric_tensors() -> None:
    rng = np.random.default_rng(3)
    q = (rng.random((8, 8)) > 0.35).astype(float)
    # mirror symmetric in x and y: no normal-shear coupling
    mirr = np.block([[q, q[:, ::-1]], [q[::-1], q[::-1, ::-1]]])
    c = homogenized_stiffness(np.where(mirr > 0.5, 1.0, E_VOID))
    np.testing.assert_allclose(c, c.T, atol=1e-12)
    assert abs(c[0, 2]) < 1e-9 and abs(c[1, 2]) < 1e-9
    # additionally symmetric under x <-> y: C11 = C22
    sq = q * q.T
    d4 = np.block([[sq, sq[:, ::-1]], [sq[::-1], sq[::-1, ::-1]]])
    c4 = homogenized_stiffness(np.where(d4 > 0.5, 1.0, E_VOID))
    assert c4[0, 0] == pytest.approx(c4[1, 1], rel=1e-9)
    # a mirrored cell flips the sign of the shear coupling; a transposed one swaps x, y
    m = np.where(q > 0.5, 1.0, E_VOID)
    c0 = homogenized_stiffness(m)
    flip = np.diag([1.0, 1.0, -1.0])
    np.testing.assert_allclose(homogenized_stiffness(m[:, ::-1]), flip @ c0 @ flip,
                               atol=1e-10)
    swap = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(homogenized_stiffness(m.T), swap @ c0 @ swap, atol=1e-10)


def test_fe_positive_definite_and_within_bounds() -> None:
    task = get_task("architecture")
    cells = task.sample_prior(3, seed=7).reshape(-1, 32, 32)
    for cell in cells:
        m = np.where(cell > 0.5, 1.0, E_VOID)
        c = homogenized_stiffness(m)
        ev = np.linalg.eigvalsh(c)
        assert ev.min() > 0
        _, _, d = element_matrices(NU)
        # Voigt bound: C^H <= mean(E) D, and >= E_void D (positive semidefinite gaps)
        assert np.linalg.eigvalsh(m.mean() * d - c).min() > -1e-10
        assert np.linalg.eigvalsh(c - E_VOID * d).min() > -1e-10


def test_fe_mesh_resolution_independence() -> None:
    # a square hole resolved by 8, 16 and 32 pixels per side
    cell = np.ones((8, 8))
    cell[2:6, 2:6] = 0
    e = [effective_youngs_modulus(np.kron(cell, np.ones((r, r)))) for r in (1, 2, 4)]
    assert e[0] > e[1] > e[2]  # pixel FE is stiff; refinement converges from above
    assert e[1] == pytest.approx(e[2], rel=0.02) and e[0] == pytest.approx(e[2], rel=0.04)
    # a circular hole (porosity ~0.28) on 32 and 64 pixel meshes
    es = []
    for n in (32, 64):
        yy, xx = np.mgrid[0:n, 0:n] + 0.5
        es.append(effective_youngs_modulus(
            (((xx - n / 2) ** 2 + (yy - n / 2) ** 2) > (0.3 * n) ** 2).astype(float)))
    assert es[0] == pytest.approx(es[1], rel=0.02)


def test_architecture_forward_rounds_and_prior() -> None:
    task = get_task("architecture")
    y = task.forward(np.stack([np.ones(1024), np.zeros(1024), np.full(1024, 0.6)]))
    np.testing.assert_allclose(y[:, 0], [1.0, E_VOID, 1.0], rtol=1e-9)
    x = task.sample_prior(6, seed=11)
    np.testing.assert_array_equal(x, task.sample_prior(6, seed=11))
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert np.all((1 - x.mean(axis=1) >= 0.24) & (1 - x.mean(axis=1) <= 0.76))


# ------------------------------------------------------------------------- shared API
@pytest.mark.parametrize("name", ["sinewave", "robotic_arm", "ballistics"])
def test_dataset_deterministic_and_in_bounds(name: str) -> None:
    task = get_task(name)
    x, y = task.dataset(300, seed=3)
    x2, y2 = task.dataset(300, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, task.dataset(300, seed=4)[0])
    np.testing.assert_array_equal(x, task.sample_prior(300, seed=3))
    np.testing.assert_allclose(y, task.forward(x))
    assert x.shape == (300, task.x_dim) and y.shape == (300, task.y_dim)
    assert np.all(task.in_bounds(x))
    # in_bounds: closed box, one row at a time
    edge = np.vstack([task.lower, task.upper, task.upper + 1e-9, task.lower - 1e-9])
    assert task.in_bounds(edge).tolist() == [True, True, False, False]
    np.testing.assert_allclose(task.forward(x[0]), y[:1])  # one row as 1-D input


def test_mos2_bounds_dataset_and_prior() -> None:
    d = MoS2Bandgap.default_dir()
    if d is None or not (d / "data_x.csv").exists():
        pytest.skip("MoS2 data (shared/data/inverse/mos2_bandgap) not available")
    task = MoS2Bandgap(n_estimators=5)
    x, y = task.dataset()
    np.testing.assert_array_equal(task.lower, x.min(axis=0))
    np.testing.assert_array_equal(task.upper, x.max(axis=0))
    assert np.all(task.in_bounds(x))
    xa, ya = task.dataset(50, seed=2)
    xb, yb = task.dataset(50, seed=2)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    rows = {tuple(r) for r in x}
    assert all(tuple(r) in rows for r in xa)
    xs = task.sample_prior(40, seed=1)
    np.testing.assert_array_equal(xs, task.sample_prior(40, seed=1))
    assert all(tuple(r) in rows for r in xs)  # the prior is the empirical data
    assert y.min() <= task.single_target[0] <= y.max()


# ------------------------------------------------------------------------- evaluation
class _FixedSolver:
    """Stand-in solver returning preset proposals ``(m, n, dx)``."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.propose_seconds_ = 0.25

    def propose_many(self, targets: np.ndarray, n: int) -> np.ndarray:
        assert len(targets) == len(self.x)
        return self.x[:, :n]


def test_resimulation_errors_and_r_t_curve_definition() -> None:
    task = get_task("robotic_arm")
    targets = task.forward(task.sample_prior(3, seed=0))
    x = task.sample_prior(3 * 20, seed=1).reshape(3, 20, 4)
    err = resimulation_errors(task, x, targets[:, None, :])
    assert err.shape == (3, 20)
    manual = np.array([[np.mean((task.forward(x[i, j])[0] - targets[i]) ** 2)
                        for j in range(20)] for i in range(3)])
    np.testing.assert_allclose(err, manual, atol=1e-12)
    out = r_t_curve(_FixedSolver(x), task, targets, ts=(1, 5, 20))  # type: ignore[arg-type]
    assert out["T"] == [1, 5, 20] and out["n_targets"] == 3 and out["seconds"] == 0.25
    for t, r, sd in zip((1, 5, 20), out["r_T"], out["r_T_std"], strict=True):
        best = err[:, :t].min(axis=1)  # the min over the *first* T proposals
        assert r == pytest.approx(best.mean()) and sd == pytest.approx(best.std())
    assert out["r_T"][0] >= out["r_T"][1] >= out["r_T"][2]
    assert out["r_T"][0] == pytest.approx(err[:, 0].mean())


def test_mode_coverage_counts_only_valid_solutions_per_mode() -> None:
    d = math.acos(0.2) / (3 * math.pi)
    sols = np.array([[1 / 6, d], [1 / 6, -d], [-0.5, 2 / 3 + d]])  # modes A, A, B
    out = mode_coverage(np.vstack([sols, [[0.0, 0.0]]]), 1.2)
    assert out["n_modes"] == 9 and out["modes_hit"] == 2
    assert out["coverage"] == pytest.approx(2 / 9)
    assert out["valid_fraction"] == pytest.approx(0.75)
    p = np.array([2 / 3, 1 / 3])
    assert out["mode_entropy"] == pytest.approx(-(p * np.log(p)).sum() / np.log(9))
    from scipy.spatial.distance import pdist

    assert out["mean_pairwise_distance"] == pytest.approx(pdist(sols).mean())


# ------------------------------------------------------------------------- latent samplers
def test_latin_hypercube_strata_gaussian_and_scipy(monkeypatch) -> None:
    from scipy.stats import qmc

    for kind in ("lhs", "mlhs"):
        for n, d in ((1, 2), (2, 3), (7, 1), (64, 4)):
            z = latent_samples(kind, n, d, np.random.default_rng(n))
            assert z.shape == (n, d) and np.all(np.isfinite(z))
            strata = np.floor(norm.cdf(z) * n).astype(int)
            for j in range(d):
                assert sorted(strata[:, j]) == list(range(n))
    # deterministic for a seed; different designs on successive draws
    a = latent_samples("mlhs", 20, 3, np.random.default_rng(9))
    np.testing.assert_array_equal(a, latent_samples("mlhs", 20, 3, np.random.default_rng(9)))
    rng = np.random.default_rng(9)
    assert not np.array_equal(latent_samples("lhs", 20, 3, rng),
                              latent_samples("lhs", 20, 3, rng))
    # the designs come from scipy.stats.qmc.LatinHypercube
    calls = []
    real = qmc.LatinHypercube

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(qmc, "LatinHypercube", spy)
    latent_samples("mlhs", 10, 2, np.random.default_rng(0))
    assert calls and calls[0][0] == 2


def test_maximin_min_distance_not_worse_than_plain_lhs() -> None:
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(1)
    for n, d in ((20, 2), (40, 5)):
        dm = [pdist(norm.cdf(latent_samples("mlhs", n, d, rng))).min() for _ in range(20)]
        dl = [pdist(norm.cdf(latent_samples("lhs", n, d, rng))).min() for _ in range(20)]
        assert np.mean(dm) > np.mean(dl)
        assert np.median(dm) >= np.median(dl)


def test_effective_youngs_modulus_refuses_a_shear_direction() -> None:
    # direction=2 silently returned 1/S[2,2], a shear quantity, as a Young's modulus
    from matdisco import MatdiscoError
    from matdisco.inverse.fem import effective_youngs_modulus

    cell = np.ones((4, 4))
    assert effective_youngs_modulus(cell, direction=1) == pytest.approx(
        effective_youngs_modulus(cell, direction=0))
    for bad in (2, -1, True):
        with pytest.raises(MatdiscoError, match="direction"):
            effective_youngs_modulus(cell, direction=bad)
