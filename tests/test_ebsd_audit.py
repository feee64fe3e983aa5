"""Audit of the EBSD layer against orix: conventions, symmetry, losses, indexer, outputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from matdisco import MatdiscoError
from matdisco.ebsd import DetectorConfig, OMNetIndexer
from matdisco.ebsd.evaluation import (
    disorientation_deg,
    orientation_metrics,
    orientation_table,
    write_crystal_map,
)
from matdisco.ebsd.indexer import check_patterns, check_quaternions
from matdisco.ebsd.losses import LOSSES, normalize_euler, orientation_loss
from matdisco.ebsd.rotations import (
    CUBIC_PROPER_ROTATIONS,
    disorientation_angle,
    euler_to_quaternion,
    quaternion_multiply,
    quaternion_to_euler,
    random_quaternions,
)

DET = DetectorConfig(shape=(20, 20))
SYM = torch.tensor(CUBIC_PROPER_ROTATIONS)
# axis of the largest m-3m disorientation (62.80 deg about <1 1 sqrt(2)-1>)
MAX_AXIS = np.array([1.0, 1.0, math.sqrt(2.0) - 1.0]) / np.linalg.norm(
    [1.0, 1.0, math.sqrt(2.0) - 1.0])


def _axis_angle(axis: np.ndarray, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.r_[math.cos(a / 2), math.sin(a / 2) * np.asarray(axis, float)]


def _rotate(m: np.ndarray, q: np.ndarray) -> np.ndarray:
    return quaternion_multiply(torch.tensor(m), torch.tensor(q)).numpy()


def _orix_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from orix.quaternion import Orientation
    from orix.quaternion.symmetry import Oh

    return np.rad2deg(Orientation(a, symmetry=Oh).angle_with(Orientation(b, symmetry=Oh)))


def test_disorientation_vs_orix_for_raw_inputs_and_extreme_angles() -> None:
    a = random_quaternions(300, 11)
    b = random_quaternions(300, 12)
    ref = _orix_deg(a, b)
    # negative w and non-unit norm on either side, both argument orders, broadcasting
    raw_a, raw_b = -3.0 * a, 0.2 * b
    raw_b[::2] *= -1
    for p, t in ((raw_a, raw_b), (raw_b, raw_a)):
        d = disorientation_angle(torch.tensor(p), torch.tensor(t), degrees=True).numpy()
        assert np.abs(d - ref).max() < 1e-9
    one = disorientation_angle(torch.tensor(a[:1]), torch.tensor(b), degrees=True).numpy()
    assert np.abs(one - _orix_deg(np.repeat(a[:1], len(b), 0), b)).max() < 1e-9
    # close to the 62.8 deg maximum and close to 0 deg, float64 and float32
    for deg in (62.79, 62.5, 45.0, 1.0, 0.01, 0.001):
        t = random_quaternions(20, 13)
        p = _rotate(_axis_angle(MAX_AXIS, deg), t)
        ref = _orix_deg(p, t)
        assert np.allclose(ref, deg, atol=1e-6)
        d64 = disorientation_angle(torch.tensor(p), torch.tensor(t), degrees=True).numpy()
        assert np.abs(d64 - deg).max() < 1e-9  # exact, orix's arccos is not near 0
        assert np.abs(d64 - ref).max() < 1e-6
        d32 = disorientation_angle(torch.tensor(p).float(), torch.tensor(t).float(),
                                   degrees=True).numpy()
        assert np.abs(d32 - ref).max() < max(1e-4 * deg, 5e-5)
        d_acos = disorientation_angle(torch.tensor(p), torch.tensor(t), degrees=True,
                                      method="arccos").numpy()
        assert np.abs(d_acos - ref).max() < 2e-3
    # the maximum is not exceeded even by the worst pair of a large random set
    big = disorientation_angle(torch.tensor(random_quaternions(20_000, 1)),
                               torch.tensor(random_quaternions(20_000, 2)), degrees=True)
    assert 60.0 < float(big.max()) <= 62.8 + 1e-6


def test_symmetry_acts_from_the_left_as_in_orix() -> None:
    """lab2crystal orientations: ``s * g`` is the same orientation, ``g * s`` is not."""
    q = torch.tensor(random_quaternions(24, 21))
    left = quaternion_multiply(SYM, q)  # every symmetry element once
    right = quaternion_multiply(q, SYM)
    assert disorientation_angle(left, q, degrees=True).abs().max() < 1e-6
    assert np.allclose(_orix_deg(left.numpy(), q.numpy()), 0.0, atol=1e-6)
    d_right = disorientation_angle(right, q, degrees=True).numpy()
    assert np.abs(d_right - _orix_deg(right.numpy(), q.numpy())).max() < 1e-9
    assert (d_right[1:] > 1e-3).mean() > 0.8  # orix agrees: not an equivalent


def test_bunge_euler_convention_is_passive_like_orix() -> None:
    from orix.quaternion import Rotation

    rng = np.random.default_rng(0)
    e = np.stack([rng.uniform(0, 2 * np.pi, 200), rng.uniform(0, np.pi, 200),
                  rng.uniform(0, 2 * np.pi, 200)], 1)
    e[:5, 1] = 0.0  # gimbal lock
    e[5:10, 1] = np.pi
    q = euler_to_quaternion(torch.tensor(e)).numpy()
    assert (q[:, 0] >= 0).all() and np.allclose(np.linalg.norm(q, axis=1), 1.0)
    qo = Rotation.from_euler(e).data
    assert np.allclose(np.abs((q * qo).sum(1)), 1.0, atol=1e-12)
    # passive Bunge matrix g = Z(phi2) X(Phi) Z(phi1) (sample -> crystal), textbook form
    p1, P, p2 = e[20]
    c1, s1, c, s, c2, s2 = (math.cos(p1), math.sin(p1), math.cos(P), math.sin(P),
                            math.cos(p2), math.sin(p2))
    g = np.array([[c1 * c2 - s1 * s2 * c, s1 * c2 + c1 * s2 * c, s2 * s],
                  [-c1 * s2 - s1 * c2 * c, -s1 * s2 + c1 * c2 * c, c2 * s],
                  [s1 * s, -c1 * s, c]])
    assert np.allclose(Rotation(q[20]).to_matrix().reshape(3, 3), g, atol=1e-12)
    # quaternion -> Euler -> quaternion, also from raw (negative, non-unit) quaternions
    for dt, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        e2 = quaternion_to_euler(torch.tensor(-2.5 * q).to(dt)).double()
        assert (e2[:, 1] >= 0).all() and (e2[:, 1] <= np.pi + 1e-6).all()
        assert (e2[:, [0, 2]] >= 0).all() and (e2[:, [0, 2]] < 2 * np.pi + 1e-6).all()
        back = euler_to_quaternion(e2).numpy()
        ang = np.rad2deg(Rotation(back).angle_with(Rotation(q)))
        assert ang.max() < tol * (1 if dt == torch.float64 else 100)
    e_orix = Rotation(q[10:]).to_euler()
    e_ours = quaternion_to_euler(torch.tensor(q[10:])).numpy()
    assert np.abs(np.angle(np.exp(1j * (e_ours - e_orix)))).max() < 1e-8


def _outputs(q: torch.Tensor, rep: str) -> torch.Tensor:
    """The network output of ``rep`` that represents ``q`` exactly."""
    from orix.quaternion import Rotation

    if rep == "euler":
        return normalize_euler(quaternion_to_euler(q.double())).float()
    if rep == "quat":
        return q.float() * 1.7
    R = torch.tensor(Rotation(q.double().numpy()).to_matrix()).reshape(-1, 3, 3)
    return torch.cat([R[:, 0] * 2.0, R[:, 1] * 0.5], -1).float()


@pytest.mark.parametrize("loss", LOSSES)
def test_losses_finite_gradients_and_symmetry_invariance(loss: str) -> None:
    rep = {"quat": "quat", "6d": "6d"}.get(loss, "euler")
    q = torch.tensor(random_quaternions(24, 31))
    from orix.quaternion import Orientation
    from orix.quaternion.symmetry import Oh

    q = torch.tensor(Orientation(q.numpy(), symmetry=Oh).reduce().data)  # labels in FZ
    e = normalize_euler(quaternion_to_euler(q)).float()
    targets = {"same": q, "symmetric": quaternion_multiply(SYM, q),
               "antipodal": -q}
    other = torch.tensor(random_quaternions(24, 32))
    for name, qt in targets.items():
        for start in (q, other):  # at 0 deg (identity misorientation) and elsewhere
            out = _outputs(start, rep).requires_grad_(True)
            val, logs = orientation_loss(out, qt.float(), e, loss, rep)
            (g,) = torch.autograd.grad(val, out)
            assert torch.isfinite(val) and torch.isfinite(g).all(), (name, start is q)
            if start is q:
                assert logs["mde_deg"] < 0.02, name
    # MDE term is the same for any symmetry-equivalent (s * q) or antipodal target
    out = _outputs(other, rep)
    base = orientation_loss(out, q.float(), e, loss, rep)[1]["mde_deg"]
    for qt in targets.values():
        assert orientation_loss(out, qt.float(), e, loss, rep)[1]["mde_deg"] == \
            pytest.approx(base, abs=1e-3)
    if loss in ("mde", "quat", "6d"):  # the loss value itself is invariant
        a = orientation_loss(out, q.float(), e, loss, rep)[0]
        b = orientation_loss(out, targets["symmetric"].float(), e, loss, rep)[0]
        assert float(a) == pytest.approx(float(b), abs=1e-5)


def test_mde_loss_agrees_with_orix_at_random_outputs() -> None:
    torch.manual_seed(0)
    out = torch.rand(16, 3)
    q = torch.tensor(random_quaternions(16, 41))
    val, logs = orientation_loss(out, q.float(), normalize_euler(quaternion_to_euler(q)).float(),
                                 "mae_mde", "euler")
    q_pred = euler_to_quaternion(out.double() * torch.tensor([2 * np.pi, np.pi, 2 * np.pi]))
    ref = _orix_deg(q_pred.numpy(), q.numpy())
    assert logs["mde_deg"] == pytest.approx(ref.mean(), abs=1e-3)
    mae = (out - normalize_euler(quaternion_to_euler(q)).float()).abs().mean()
    assert float(val) == pytest.approx(float(mae) + math.radians(ref.mean()), abs=1e-5)


def _random_patterns(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *DET.shape)).astype(np.float32)


@pytest.mark.parametrize("loss", ["mae_mde", "quat", "6d"])
def test_indexer_fit_predict_save_load(loss: str, tmp_path: Path) -> None:
    from matdisco.ebsd import sample_orientations

    x = _random_patterns(10)
    q = sample_orientations(10, seed=1)
    est = OMNetIndexer(loss=loss, preset="tiny", detector=DET, epochs=1, batch_size=8,
                       device="cpu")
    est.fit(x, q)
    p = est.predict(x)
    assert p.shape == (10, 4) and p.dtype == np.float64
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-12) and (p[:, 0] >= 0).all()
    assert est.predict(x[0]).shape == (1, 4)  # one 2-D pattern
    assert est.predict(x.reshape(2, 5, *DET.shape)).shape == (10, 4)  # a map of patterns
    back = OMNetIndexer.load(est.save(tmp_path / "m"))
    assert back.representation == est.representation and back.loss == loss
    assert np.allclose(back.predict(x), p, atol=1e-6)


def test_predicted_quaternions_are_exactly_unit_for_small_outputs() -> None:
    """A small raw ``quat`` output used to come back visibly shorter than unit length."""
    est = OMNetIndexer(loss="quat", preset="tiny", detector=DET)
    est.model_ = est._build().eval()
    last = est.model_.branches[0][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([-1e-7, 2e-7, 0.0, 5e-8]))
    p = est.predict(_random_patterns(3))
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-9)
    assert (p[:, 0] >= 0).all()
    ref = np.array([1.0, -2.0, 0.0, -0.5]) / np.linalg.norm([1.0, -2.0, 0.0, -0.5])
    assert np.allclose(p, ref, atol=1e-6)


def test_pattern_and_quaternion_checks() -> None:
    x = _random_patterns(4)
    assert check_patterns(x[0]).shape == (1, 20, 20)
    for bad, match in ((np.zeros(5), r"shape \(n, rows, cols\)"),
                       (np.zeros((2, 2, 2, 2, 2)), r"shape \(n, rows, cols\)"),
                       (x.astype(bool), "numeric"),
                       (np.zeros((2, 30, 20)), "expects"),):
        with pytest.raises(MatdiscoError, match=match):
            check_patterns(bad, DET.shape)
    inf = x.copy()
    inf[2, 0, 0] = np.inf
    with pytest.raises(MatdiscoError, match="pattern 3 contains NaN or infinite"):
        check_patterns(inf, DET.shape)
    q = random_quaternions(4, 0)
    assert check_quaternions(q.astype(np.float32), 4).dtype == np.float64
    nanq = q.copy()
    nanq[1, 2] = np.nan
    for bad, match in ((q[:, :3], r"shape \(4, 4\)"), (q[:3], r"shape \(4, 4\)"),
                       (q.astype(complex), r"shape \(4, 4\)"), (nanq, "row 2"),
                       (2 * q, "row 1 .* not a unit quaternion")):
        with pytest.raises(MatdiscoError, match=match):
            check_quaternions(bad, 4)
    est = OMNetIndexer(loss="mde", preset="tiny", detector=DET, epochs=1, device="cpu")
    with pytest.raises(MatdiscoError, match="not a unit quaternion"):
        est.fit(x, 2 * q)
    with pytest.raises(MatdiscoError, match="not fitted"):
        est.predict(x)


def test_orientation_metrics_known_values() -> None:
    t = random_quaternions(5, 51)
    degs = [0.0, 0.5, 0.99, 1.5, 10.0]
    axis = np.array([0.2, -0.5, 0.8]) / np.linalg.norm([0.2, -0.5, 0.8])
    p = np.stack([_rotate(_axis_angle(axis, d), t[i]) for i, d in enumerate(degs)])
    p[1] *= -1
    p[2] = _rotate(CUBIC_PROPER_ROTATIONS[9], p[2])  # a symmetry equivalent
    assert np.allclose(disorientation_deg(p, t), degs, atol=1e-6)
    m = orientation_metrics(p, t, seconds=2.0)
    assert m["mean_disorientation_deg"] == pytest.approx(np.mean(degs), abs=1e-6)
    assert m["median_disorientation_deg"] == pytest.approx(0.99, abs=1e-6)
    assert m["frac_within_1deg"] == pytest.approx(0.6)
    assert m["frac_within_2deg"] == pytest.approx(0.8)
    assert m["n"] == 5 and m["patterns_per_s"] == pytest.approx(2.5)
    with pytest.raises(MatdiscoError, match="differ in shape"):
        orientation_metrics(p[:3], t)


def test_ang_and_table_match_the_quaternions(tmp_path: Path) -> None:
    from orix import io as oio
    from orix.quaternion import Rotation

    q = random_quaternions(6, 61)
    raw = q * np.array([[-1.0], [2.0], [1.0], [-0.5], [1.0], [1.0]])  # sign, scale
    path = write_crystal_map(tmp_path / "m.ang", raw, (2, 3), step=0.5)
    xmap = oio.load(str(path))
    back = xmap.rotations.data.reshape(-1, 4)
    # the .ang Euler angles reproduce the rotations (no symmetry: the same rotation)
    assert np.rad2deg(Rotation(back).angle_with(Rotation(q))).max() < 0.01
    assert np.allclose(xmap.x, [0, 0.5, 1.0] * 2) and np.allclose(xmap.y, [0] * 3 + [0.5] * 3)
    tab = orientation_table(raw, (2, 3), step=0.5)
    e = np.deg2rad(tab[["phi1_deg", "Phi_deg", "phi2_deg"]].to_numpy())
    assert np.rad2deg(Rotation.from_euler(e).angle_with(Rotation(q))).max() < 1e-8
    tq = tab[["qw", "qx", "qy", "qz"]].to_numpy()
    assert np.allclose(np.linalg.norm(tq, axis=1), 1.0)  # documented as unit quaternions
    assert np.allclose(np.abs((tq * q).sum(1)), 1.0)
    assert tab["row"].tolist() == [0, 0, 0, 1, 1, 1] and tab["col"].tolist() == [0, 1, 2] * 2
    ang_euler = np.loadtxt(path, comments="#", usecols=(0, 1, 2))
    assert np.rad2deg(Rotation.from_euler(ang_euler).angle_with(Rotation(q))).max() < 0.01


def test_dictionary_indexing_of_exact_members_is_exact() -> None:
    from matdisco.ebsd import sample_orientations, simulate_patterns
    from matdisco.ebsd.dictionary import DictionaryIndexer

    q = sample_orientations(10, seed=5)
    x = simulate_patterns(q, config=DET)
    dq = q.copy()
    dq[::2] *= -1  # dictionary stored with negative w: the same rotations
    di = DictionaryIndexer(x, dq, detector=DET)
    pick = [3, 0, 7, 8]
    qi, scores = di.index(x[pick])
    assert np.allclose(disorientation_deg(qi, q[pick]), 0.0, atol=1e-5)
    assert scores.min() > 0.999
    q1, _ = di.index(x[4])  # a single pattern
    assert disorientation_deg(q1, q[4:5])[0] < 1e-5


def test_load_patterns_computes_a_lazy_signal_in_place(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """HyperSpy's ``compute()`` returns None; the reader used to assign that result."""
    import kikuchipy as kp

    from matdisco.ebsd.io import load_patterns

    f = tmp_path / "scan.h5"
    f.write_bytes(b"")
    monkeypatch.setattr(kp, "load", lambda *a, **k: kp.data.nickel_ebsd_small(lazy=True))
    x, nav, s = load_patterns(f, static=False)
    assert x.shape == (9, 60, 60) and nav == (3, 3) and not s._lazy
    assert np.isfinite(x).all()
