"""Tasks, forward models, FE homogenization and evaluation helpers of matdisco.inverse."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matdisco import MatdiscoError
from matdisco.inverse import (
    InverseTask,
    get_task,
    latent_samples,
    mode_coverage,
    sinewave_modes,
)
from matdisco.inverse.fem import (
    E_VOID,
    NU,
    effective_youngs_modulus,
    element_matrices,
    homogenized_stiffness,
)


# ------------------------------------------------------------------------- FEM
def test_full_solid_cell_returns_solid_modulus() -> None:
    assert effective_youngs_modulus(np.ones((32, 32))) == pytest.approx(1.0, abs=1e-9)
    c = homogenized_stiffness(np.full((8, 8), 2.5))
    _, _, d = element_matrices(NU)
    np.testing.assert_allclose(c, 2.5 * d, atol=1e-9)


def test_laminate_matches_voigt_and_reuss_bounds() -> None:
    # columns 0..15 solid: layers run along y
    cell = np.zeros((32, 32))
    cell[:, :16] = 1.0
    f = 0.5
    voigt = f * 1.0 + (1 - f) * E_VOID
    reuss = 1.0 / (f / 1.0 + (1 - f) / E_VOID)
    along = effective_youngs_modulus(cell, direction=1)
    across = effective_youngs_modulus(cell, direction=0)
    assert along == pytest.approx(voigt, rel=1e-6)
    assert reuss <= across <= voigt
    assert across == pytest.approx(reuss, rel=0.15)  # Poisson constraint raises it slightly
    # two stiff phases without Poisson effect: Voigt and Reuss are exact
    m = np.ones((16, 16))
    m[:, :4] = 0.25
    s = np.linalg.inv(homogenized_stiffness(m, nu=0.0))
    assert 1 / s[0, 0] == pytest.approx(1 / (0.25 / 0.25 + 0.75 / 1.0), rel=1e-6)
    assert 1 / s[1, 1] == pytest.approx(0.25 * 0.25 + 0.75 * 1.0, rel=1e-6)


def test_homogenization_symmetry_and_bad_input() -> None:
    rng = np.random.default_rng(0)
    cell = (rng.random((12, 12)) > 0.4).astype(float)
    ex = effective_youngs_modulus(cell, direction=0)
    assert effective_youngs_modulus(cell.T, direction=1) == pytest.approx(ex, rel=1e-6)
    # periodic: a shifted cell has the same modulus
    assert effective_youngs_modulus(np.roll(cell, (3, 5), axis=(0, 1))) == pytest.approx(
        ex, rel=1e-6)
    assert E_VOID < ex < 1.0
    with pytest.raises(MatdiscoError):
        homogenized_stiffness(np.zeros((4, 4)))


def test_architecture_task_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MATDISCO_CACHE", str(tmp_path))
    task = get_task("architecture")
    x, y = task.dataset(3, seed=1)
    assert x.shape == (3, 1024) and set(np.unique(x)) <= {0.0, 1.0}
    porosity = 1 - x.mean(axis=1)
    assert np.all((porosity > 0.2) & (porosity < 0.8))
    assert np.all((y > 0) & (y < 1))
    assert task.seconds_per_solve is not None and task.seconds_per_solve > 0
    x2, y2 = get_task("architecture").dataset(3, seed=1)  # from the cache
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_allclose(y, y2)


# ------------------------------------------------------------------------- analytic
def test_sinewave_and_arm_forward() -> None:
    s = get_task("sinewave")
    np.testing.assert_allclose(s.forward(np.array([[1 / 6, 0.0], [0.0, 1 / 3]])),
                               [[2.0], [-1.0]], atol=1e-12)
    arm = get_task("robotic_arm")
    np.testing.assert_allclose(arm.forward(np.array([[0.3, 0, 0, 0]])), [[2.0, 0.3]],
                               atol=1e-12)
    # first joint at 90 degrees, others straight: arm points up
    np.testing.assert_allclose(arm.forward(np.array([[0.0, math.pi / 2, 0, 0]])),
                               [[0.0, 2.0]], atol=1e-12)
    x = arm.sample_prior(4000, seed=0)
    assert np.all(arm.in_bounds(x))
    np.testing.assert_allclose(x.std(axis=0), [0.25, 0.5, 0.5, 0.5], rtol=0.08)


def test_ballistics_matches_numerical_integration() -> None:
    from scipy.integrate import solve_ivp

    task = get_task("ballistics")
    x0 = np.array([0.3, 1.2, math.radians(40.0), 14.0])
    g, m, k = task.g, task.m, task.k

    def rhs(t, s):
        return [s[2], s[3], -k / m * s[2], -g - k / m * s[3]]

    def ground(t, s):
        return s[1]

    ground.terminal, ground.direction = True, -1
    sol = solve_ivp(rhs, (0, 20), [x0[0], x0[1], x0[3] * math.cos(x0[2]),
                                   x0[3] * math.sin(x0[2])], events=ground, rtol=1e-10,
                    atol=1e-10)
    assert task.forward(x0)[0, 0] == pytest.approx(sol.y_events[0][0][0], rel=1e-6)
    traj = task.trajectory(x0[None, :], 20)
    assert traj[0, -1, 1] == pytest.approx(0.0, abs=1e-6)
    xs = task.sample_prior(500, seed=3)
    assert np.all(task.in_bounds(xs)) and np.all(xs[:, 3] == np.round(xs[:, 3]))


def test_task_errors() -> None:
    with pytest.raises(MatdiscoError, match="unknown task"):
        get_task("nope")
    s = get_task("sinewave")
    with pytest.raises(MatdiscoError, match="shape"):
        s.forward(np.zeros((3, 3)))
    with pytest.raises(MatdiscoError, match="NaN"):
        s.forward(np.array([[0.0, np.nan]]))
    with pytest.raises(MatdiscoError):
        s.sample_prior(0)


def test_mos2_task_oracle() -> None:
    from matdisco.inverse.tasks import MoS2Bandgap

    if MoS2Bandgap.default_dir() is None or not (MoS2Bandgap.default_dir()
                                                 / "data_x.csv").exists():
        pytest.skip("MoS2 data (shared/data/inverse/mos2_bandgap) not available")
    task = MoS2Bandgap(n_estimators=5)
    x, y = task.dataset()
    assert x.shape[1] == 7 and len(x) == len(y) > 1000
    info = task.fit_oracle()
    assert 0 < info["oracle_holdout_mse"] < np.var(y)
    assert task.oracle and task.forward(x[:5]).shape == (5, 1)


# ------------------------------------------------------------------------- evaluation
def test_sinewave_modes_and_coverage() -> None:
    labels, axis, n = sinewave_modes(1.2)
    assert n == 9
    # one exact solution on every mode: on x1 = peak column, solve cos(3 pi x2) = 0.2
    peaks1 = [-0.5, 1 / 6, 5 / 6]
    peaks2 = [-2 / 3, 0.0, 2 / 3]
    d = math.acos(0.2) / (3 * math.pi)
    pts = np.array([[p1, p2 + d] for p1 in peaks1 for p2 in peaks2])
    cov = mode_coverage(pts, 1.2)
    assert cov["coverage"] == 1.0 and cov["mode_entropy"] == pytest.approx(1.0)
    one = mode_coverage(np.repeat(pts[:1], 5, axis=0), 1.2)
    assert one["coverage"] == pytest.approx(1 / 9) and one["mode_entropy"] == 0.0
    far = mode_coverage(np.zeros((4, 2)), 1.2)  # f(0, 0) = 1: not a solution
    assert far["coverage"] == 0.0 and far["valid_fraction"] == 0.0


def test_latent_samplers() -> None:
    rng = np.random.default_rng(0)
    from scipy.stats import norm

    for kind in ("lhs", "mlhs"):
        z = latent_samples(kind, 50, 3, rng)
        u = norm.cdf(z)
        for j in range(3):  # one point in every stratum of every dimension
            assert sorted(np.floor(u[:, j] * 50).astype(int)) == list(range(50))
    from scipy.spatial.distance import pdist

    dm = np.mean([pdist(norm.cdf(latent_samples("mlhs", 30, 2, rng))).min()
                  for _ in range(5)])
    dl = np.mean([pdist(norm.cdf(latent_samples("lhs", 30, 2, rng))).min()
                  for _ in range(5)])
    assert dm > dl
    with pytest.raises(MatdiscoError):
        latent_samples("sobolx", 5, 2, rng)


def test_plot_proposals_for_every_picture(tmp_path) -> None:
    from matdisco.inverse.evaluation import plot_proposals
    from matdisco.training import RunDir

    rd = RunDir(tmp_path)
    rng = np.random.default_rng(0)
    for name, y_star in (("sinewave", [1.0]), ("robotic_arm", [1.5, 0.3]),
                         ("ballistics", [2.0])):
        task = get_task(name)
        x = task.sample_prior(20, seed=1)
        err = rng.uniform(0, 1, len(x))
        fig = plot_proposals(task, x, np.array(y_star), err)
        assert rd.save_plot(name, fig).stat().st_size > 1000


# ------------------------------------------------------------------ proposals tables
class _Named(InverseTask):
    """Two named inputs, two outputs: y = (a + b, a - b)."""

    name = "named"
    x_dim = 2
    y_dim = 2
    x_names = ("a", "b")

    def _forward(self, x: np.ndarray) -> np.ndarray:
        return np.stack([x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]], axis=1)


def test_input_names() -> None:
    from matdisco.inverse.tasks import MoS2Bandgap

    assert get_task("sinewave").input_names() == ["x0", "x1"]
    assert get_task("robotic_arm").input_names() == ["x0", "x1", "x2", "x3"]
    assert _Named().input_names() == ["a", "b"]
    assert _Named().describe()["x_names"] == ["a", "b"]
    assert "x_names" not in get_task("sinewave").describe()
    # MoS2 without its data: the names are class attributes
    mos2 = object.__new__(MoS2Bandgap)
    assert mos2.input_names() == ["a", "b", "c", "alpha", "beta", "gamma", "field"]

    class Short(_Named):  # names that do not fit the inputs are not used
        x_dim = 3

        def _forward(self, x: np.ndarray) -> np.ndarray:
            return x[:, :2]

    assert Short().input_names() == ["x0", "x1", "x2"]


def test_proposals_table_columns_and_errors() -> None:
    from matdisco.inverse.evaluation import proposals_table

    s = get_task("sinewave")
    x = np.array([[1 / 6, 0.0], [0.0, 1 / 3], [0.5, 0.5]])
    df = proposals_table(s, x, y_star=[2.0])
    assert list(df.columns) == ["x0", "x1", "y_resim", "resim_error"]
    np.testing.assert_allclose(df["y_resim"], s.forward(x)[:, 0])
    np.testing.assert_allclose(df["resim_error"], (s.forward(x)[:, 0] - 2.0) ** 2)
    assert df["resim_error"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    # several outputs: one column each; without y_star no error column; y given is used
    t = _Named()
    xt = np.array([[1.0, 0.5], [0.25, 0.25]])
    df = proposals_table(t, xt)
    assert list(df.columns) == ["a", "b", "y0_resim", "y1_resim"]
    np.testing.assert_allclose(df[["y0_resim", "y1_resim"]].to_numpy(), [[1.5, 0.5],
                                                                         [0.5, 0.0]])
    df = proposals_table(t, xt, y=np.zeros((2, 2)), y_star=np.array([1.0, 0.0]))
    np.testing.assert_allclose(df["y0_resim"], 0.0)
    np.testing.assert_allclose(df["resim_error"], 0.5)


def test_proposals_table_mos2_names() -> None:
    from matdisco.inverse.evaluation import proposals_table
    from matdisco.inverse.tasks import MoS2Bandgap

    if MoS2Bandgap.default_dir() is None or not (MoS2Bandgap.default_dir()
                                                 / "data_x.csv").exists():
        pytest.skip("MoS2 data (shared/data/inverse/mos2_bandgap) not available")
    task = MoS2Bandgap(n_estimators=3)
    df = proposals_table(task, task.x_data[:4], y_star=task.single_target)
    assert list(df.columns) == ["a", "b", "c", "alpha", "beta", "gamma", "field", "y_resim",
                                "resim_error"]
    assert len(df) == 4


def test_single_target_returns_outputs_and_errors() -> None:
    from matdisco.inverse.evaluation import single_target

    s = get_task("sinewave")
    x = s.sample_prior(6, seed=2)

    class Fixed:  # a "solver" with known proposals
        propose_seconds_ = 0.5
        propose_cpu_seconds_ = 0.25

        def propose(self, y, n):
            assert np.shape(y) == (1,) and n == 6
            return x

    res = single_target(Fixed(), s, n=6)
    np.testing.assert_allclose(res["y"], s.forward(x))
    np.testing.assert_allclose(res["errors"], (s.forward(x)[:, 0] - 1.2) ** 2)
    assert res["resim_mse_single"] == pytest.approx(res["errors"].mean())
    assert res["resim_mse_single_median"] == pytest.approx(np.median(res["errors"]))
    assert res["seconds_per_1000"] == pytest.approx(0.5 * 1000 / 6)
    res = single_target(Fixed(), s, n=6, y_star=np.array([[0.0]]))  # any shape of one target
    np.testing.assert_allclose(res["errors"], s.forward(x)[:, 0] ** 2)


def test_plot_proposals_labels_named_inputs() -> None:
    from matdisco.inverse.evaluation import plot_proposals

    t = _Named()
    fig = plot_proposals(t, np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0.3, 0.0]),
                         np.array([0.1, 0.2]))
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("a", "b")
    import matplotlib.pyplot as plt

    plt.close(fig)
