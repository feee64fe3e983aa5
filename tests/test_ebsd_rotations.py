"""Tests of the torch m-3m disorientation, rotation conversions, losses and OMNet."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from matdisco import MatdiscoError
from matdisco.ebsd.losses import LOSSES, normalize_euler, orientation_loss
from matdisco.ebsd.nets import OMNet, count_parameters, inference_module
from matdisco.ebsd.rotations import (
    CUBIC_PROPER_ROTATIONS,
    disorientation_angle,
    euler_to_quaternion,
    matrix_to_quaternion,
    quaternion_multiply,
    quaternion_to_euler,
    random_quaternions,
    rotation_6d_to_matrix,
)


def test_symmetry_group_is_closed() -> None:
    s = torch.tensor(CUBIC_PROPER_ROTATIONS)
    prod = quaternion_multiply(s[:, None], s[None]).reshape(-1, 4)
    # every product is +/- one of the 24 elements
    match = (prod @ s.T).abs().max(-1).values
    assert torch.allclose(match, torch.ones_like(match), atol=1e-12)
    gram = (s @ s.T).abs() - torch.eye(24, dtype=s.dtype)
    assert gram.max() < 1 - 1e-9  # 24 distinct rotations


def test_disorientation_matches_orix_10000_pairs() -> None:
    from orix.quaternion import Orientation
    from orix.quaternion.symmetry import Oh

    n = 10_000
    a = random_quaternions(n, 1)
    b = random_quaternions(n, 2)
    rng = np.random.default_rng(0)
    b[:2000] = a[:2000] + 1e-3 * rng.normal(size=(2000, 4))  # near 0 deg
    b[2000:2024] = quaternion_multiply(torch.tensor(CUBIC_PROPER_ROTATIONS),
                                       torch.tensor(a[2000:2024])).numpy()  # exactly 0 deg
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    ref = np.rad2deg(Orientation(a, symmetry=Oh).angle_with(Orientation(b, symmetry=Oh)))
    for method in ("atan2", "arccos"):
        d = disorientation_angle(torch.tensor(a), torch.tensor(b), degrees=True,
                                 method=method).numpy()
        assert np.abs(d - ref).max() < 1e-3
    d32 = disorientation_angle(torch.tensor(a).float(), torch.tensor(b).float(), degrees=True)
    assert np.abs(d32.numpy() - ref).max() < 1e-2
    assert ref.max() < 62.8 + 1e-6 and d32.max() < 62.81


def test_disorientation_symmetry_invariance_and_gradients() -> None:
    q = torch.tensor(random_quaternions(50, 3))
    s = torch.tensor(CUBIC_PROPER_ROTATIONS[7])
    d = disorientation_angle(quaternion_multiply(s, q), q)
    assert d.abs().max() < 1e-6
    d_neg = disorientation_angle(-q, q)  # antipodal quaternion = same rotation
    assert d_neg.abs().max() < 1e-6
    for method in ("atan2", "arccos"):
        x = q.clone().requires_grad_(True)
        loss = disorientation_angle(x, q, method=method).sum()  # exactly at 0 deg
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(g).all()
    p = torch.tensor(random_quaternions(50, 4), requires_grad=True)
    loss = disorientation_angle(p, q).mean()
    (g,) = torch.autograd.grad(loss, p)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # a gradient step reduces the disorientation
    with torch.no_grad():
        p2 = p - 0.05 * g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    assert disorientation_angle(p2, q).mean() < loss
    with pytest.raises(MatdiscoError, match="last dimension of 4"):
        disorientation_angle(torch.zeros(3, 3), q[:3])


def test_conversions_roundtrip_against_orix() -> None:
    from orix.quaternion import Rotation

    q = random_quaternions(500, 7)
    e = Rotation(q).to_euler()
    assert np.allclose(euler_to_quaternion(torch.tensor(e)).numpy(), q, atol=1e-10)
    e2 = quaternion_to_euler(torch.tensor(q)).numpy()
    assert np.abs(np.angle(np.exp(1j * (e2 - e)))).max() < 1e-8
    R = torch.tensor(Rotation(q).to_matrix())
    q2 = matrix_to_quaternion(R).numpy()
    assert np.allclose(np.abs((q2 * q).sum(1)), 1.0, atol=1e-10)
    # 6-D representation: first two rows of the matrix reproduce the rotation
    d6 = torch.cat([R[:, 0], R[:, 1]], dim=-1) * 3.0
    assert torch.allclose(rotation_6d_to_matrix(d6), R, atol=1e-10)


@pytest.mark.parametrize("loss", LOSSES)
def test_losses_backpropagate_through_omnet(loss: str) -> None:
    rep = {"quat": "quat", "6d": "6d"}.get(loss, "euler")
    torch.manual_seed(0)
    net = OMNet((32, 32), rep, preset="tiny")
    x = torch.randn(4, 32, 32)
    q = torch.tensor(random_quaternions(4, 0)).float()
    e = normalize_euler(quaternion_to_euler(q.double()).float())
    out = net(x)
    assert out.shape == (4, {"euler": 3, "quat": 4, "6d": 6}[rep])
    val, logs = orientation_loss(out, q, e, loss, rep)
    val.backward()
    assert math.isfinite(float(val.detach())) and 0 <= logs["mde_deg"] <= 62.81
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_omnet_shapes_presets_and_errors() -> None:
    full = OMNet((60, 60), preset="full")
    compact = OMNet((60, 60), preset="compact")
    assert count_parameters(full) > 5 * count_parameters(compact)
    assert len(compact.branches) == 3  # one branch per Euler angle
    with pytest.raises(MatdiscoError, match=r"\(n, 60, 60\)"):
        compact(torch.zeros(2, 50, 50))
    with pytest.raises(MatdiscoError, match="too small"):
        OMNet((8, 8), preset="full")
    with pytest.raises(MatdiscoError, match="unknown loss"):
        orientation_loss(torch.zeros(1, 3), torch.zeros(1, 4), torch.zeros(1, 3), "l2", "euler")
    with pytest.raises(MatdiscoError, match="needs the Euler"):
        orientation_loss(torch.zeros(1, 4), torch.ones(1, 4), torch.zeros(1, 3), "mae", "quat")


@pytest.mark.parametrize("representation", ["euler", "6d"])
@pytest.mark.parametrize("script", [False, True])
def test_inference_module_matches_the_network(representation: str, script: bool) -> None:
    torch.manual_seed(0)
    net = OMNet((20, 20), representation=representation, preset="tiny")
    # non-trivial batch-norm statistics, so folding them into the convolutions matters
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 1, 20, 20) * 2 + 1)
    net.eval()
    x = torch.randn(7, 1, 20, 20)
    ref = net(x).detach()
    xc = x.contiguous(memory_format=torch.channels_last)
    fast = inference_module(net, xc[:4], script=script)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    with torch.no_grad():
        out = fast(xc)  # another batch size than the tracing example
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    assert net.training is False and any(isinstance(m, torch.nn.BatchNorm2d)
                                         for m in net.modules())  # original untouched
