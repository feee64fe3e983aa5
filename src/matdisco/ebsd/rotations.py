"""Vectorized, differentiable rotation maths in torch for cubic (m-3m) crystals.

Conventions follow orix: unit quaternions ``(w, x, y, z)`` with ``w >= 0`` as the
canonical hemisphere, Bunge Euler angles ``(phi1, Phi, phi2)`` in radians, rotations
describe the sample-to-crystal ("lab2crystal") transformation, so the crystal symmetry
acts from the left (``s * g``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from matdisco import MatdiscoError

__all__ = [
    "CUBIC_PROPER_ROTATIONS",
    "cubic_symmetry",
    "disorientation_angle",
    "euler_to_quaternion",
    "matrix_to_quaternion",
    "quaternion_multiply",
    "quaternion_conjugate",
    "quaternion_to_euler",
    "rotation_6d_to_matrix",
    "random_quaternions",
]


def _cubic_proper_rotations() -> np.ndarray:
    """The 24 proper rotations of m-3m (point group 432) as unit quaternions."""
    h = 1.0 / math.sqrt(2.0)
    q = [
        (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1),
        (h, h, 0, 0), (h, 0, h, 0), (h, 0, 0, h),
        (h, -h, 0, 0), (h, 0, -h, 0), (h, 0, 0, -h),
        (0, h, h, 0), (0, -h, h, 0), (0, 0, h, h), (0, 0, -h, h),
        (0, h, 0, h), (0, -h, 0, h),
        (0.5, 0.5, 0.5, 0.5), (0.5, -0.5, -0.5, -0.5), (0.5, 0.5, -0.5, -0.5),
        (0.5, -0.5, 0.5, 0.5), (0.5, -0.5, 0.5, -0.5), (0.5, 0.5, -0.5, 0.5),
        (0.5, 0.5, 0.5, -0.5), (0.5, -0.5, -0.5, 0.5),
    ]
    return np.asarray(q, dtype=np.float64)


CUBIC_PROPER_ROTATIONS: np.ndarray = _cubic_proper_rotations()


def cubic_symmetry(dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """The 24 proper rotations of m-3m as a ``(24, 4)`` quaternion tensor."""
    return torch.as_tensor(CUBIC_PROPER_ROTATIONS, dtype=dtype, device=device)


def _check_quat(q: torch.Tensor, name: str) -> None:
    if q.ndim < 1 or q.shape[-1] != 4:
        raise MatdiscoError(f"{name} must have a last dimension of 4 (w, x, y, z); "
                            f"got shape {tuple(q.shape)}")


def quaternion_conjugate(q: torch.Tensor) -> torch.Tensor:
    """Conjugate (= inverse for unit quaternions) ``(w, -x, -y, -z)``."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` with broadcasting over leading dimensions."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def _safe_normalize(q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return q / torch.sqrt((q * q).sum(-1, keepdim=True) + eps)


def _min_angle_one_order(m: torch.Tensor, sym: torch.Tensor, method: str) -> torch.Tensor:
    # scalar part of s_i * m for all 24 s_i: w_i = s_i . conj(m)-ish -> use the product
    sw, sv = sym[:, 0], sym[:, 1:]
    w_all = m[..., :1] * sw - m[..., 1:] @ sv.T  # (..., 24)
    idx = w_all.detach().abs().argmax(-1)
    if method == "arccos":
        w = torch.gather(w_all, -1, idx.unsqueeze(-1)).squeeze(-1).abs()
        eps = 1e-12 if w.dtype == torch.float64 else 1e-7
        return 2.0 * torch.arccos(torch.clamp(w, 0.0, 1.0 - eps))
    s = sym[idx]  # (..., 4)
    q = quaternion_multiply(s, m)
    w = q[..., 0].abs()
    tiny = 1e-30 if q.dtype == torch.float64 else 1e-20
    v = torch.sqrt((q[..., 1:] ** 2).sum(-1) + tiny)
    return 2.0 * torch.atan2(v, w)


def disorientation_angle(q_pred: torch.Tensor, q_true: torch.Tensor, *,
                         degrees: bool = False, method: str = "atan2",
                         normalize: bool = True) -> torch.Tensor:
    """Disorientation angle between two sets of cubic (m-3m) orientations.

    The misorientation is formed in both orders, ``g_p g_t^-1`` and ``g_t g_p^-1``
    (Eq. 6.4 of the study), each is combined with the 24 proper rotations of m-3m,
    and the smallest rotation angle is returned. Fully vectorized over leading
    dimensions, differentiable, on the device of the inputs.

    Parameters
    ----------
    q_pred, q_true : tensor, shape (..., 4)
        Quaternions ``(w, x, y, z)`` (broadcastable). Predicted quaternions need not be
        normalized when ``normalize`` is True.
    degrees : bool
        Return degrees instead of radians.
    method : {"atan2", "arccos"}
        ``"arccos"``: ``2 arccos(clamp(|w|, 0, 1 - eps))`` (the textbook form, clamped so
        the gradient stays finite at 0°); ``"atan2"``: ``2 atan2(|v|, |w|)`` of the best
        symmetry-equivalent misorientation, accurate near 0° also in float32. Both are
        safe near 180° (no singularity there for cubic symmetry, max 62.8°).
    normalize : bool
        Normalize both inputs to unit length first.

    Returns
    -------
    tensor, shape (...)
        Disorientation angle in radians (or degrees).
    """
    _check_quat(q_pred, "q_pred")
    _check_quat(q_true, "q_true")
    if method not in ("atan2", "arccos"):
        raise MatdiscoError(f"method must be 'atan2' or 'arccos', got {method!r}")
    if not torch.is_floating_point(q_pred):
        q_pred = q_pred.double()
    q_true = q_true.to(q_pred.dtype)
    if normalize:
        q_pred = _safe_normalize(q_pred)
        q_true = _safe_normalize(q_true)
    sym = cubic_symmetry(q_pred.dtype, q_pred.device)
    m1 = quaternion_multiply(q_pred, quaternion_conjugate(q_true))
    m2 = quaternion_multiply(q_true, quaternion_conjugate(q_pred))
    a = torch.minimum(_min_angle_one_order(m1, sym, method),
                      _min_angle_one_order(m2, sym, method))
    return torch.rad2deg(a) if degrees else a


def euler_to_quaternion(euler: torch.Tensor) -> torch.Tensor:
    """Bunge Euler angles ``(phi1, Phi, phi2)`` in radians to unit quaternions (orix)."""
    if euler.shape[-1] != 3:
        raise MatdiscoError(f"Euler angles need a last dimension of 3; got {tuple(euler.shape)}")
    p1, P, p2 = euler.unbind(-1)
    sigma = 0.5 * (p1 + p2)
    delta = 0.5 * (p1 - p2)
    c = torch.cos(0.5 * P)
    s = torch.sin(0.5 * P)
    q = torch.stack((c * torch.cos(sigma), -s * torch.cos(delta),
                     -s * torch.sin(delta), -c * torch.sin(sigma)), dim=-1)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


def quaternion_to_euler(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions to Bunge Euler angles in ``[0, 2pi) x [0, pi] x [0, 2pi)``."""
    _check_quat(q, "q")
    q = _safe_normalize(q)
    w, x, y, z = q.unbind(-1)
    q03 = w * w + z * z
    q12 = x * x + y * y
    chi = torch.sqrt(q03 * q12)
    two_pi = 2 * math.pi
    # general case (orix / Rowenhorst et al. 2015 with P = -1 sign absorbed)
    p1 = torch.atan2((-w * y + x * z) / chi.clamp_min(1e-30),
                     (-w * x - y * z) / chi.clamp_min(1e-30))
    P = torch.atan2(2 * chi, q03 - q12)
    p2 = torch.atan2((w * y + x * z) / chi.clamp_min(1e-30),
                     (-w * x + y * z) / chi.clamp_min(1e-30))
    small = chi < 1e-10
    deg0 = small & (q12 < 1e-10)
    p1 = torch.where(deg0, torch.atan2(-2 * w * z, w * w - z * z), p1)
    P = torch.where(deg0, torch.zeros_like(P), P)
    p2 = torch.where(small, torch.zeros_like(p2), p2)
    deg1 = small & (q03 < 1e-10)
    p1 = torch.where(deg1, torch.atan2(2 * x * y, x * x - y * y), p1)
    P = torch.where(deg1, torch.full_like(P, math.pi), P)
    return torch.stack((torch.remainder(p1, two_pi), P, torch.remainder(p2, two_pi)), -1)


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Continuous 6-D representation (Zhou et al. 2019) to rotation matrices (Gram-Schmidt).

    The two 3-vectors become the first two *rows* of the matrix.
    """
    if d6.shape[-1] != 6:
        raise MatdiscoError(f"6-D rotations need a last dimension of 6; got {tuple(d6.shape)}")
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / torch.sqrt((a1 * a1).sum(-1, keepdim=True) + 1e-12)
    a2p = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2p / torch.sqrt((a2p * a2p).sum(-1, keepdim=True) + 1e-12)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices to unit quaternions (orix convention, ``w >= 0``), differentiable.

    Uses the numerically stable branch selection of Shepperd's method.
    """
    if R.shape[-2:] != (3, 3):
        raise MatdiscoError(f"rotation matrices must be (..., 3, 3); got {tuple(R.shape)}")
    m00, m01, m02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    m10, m11, m12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    m20, m21, m22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    cands = torch.stack(
        (
            torch.stack((1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01), -1),
            torch.stack((m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20), -1),
            torch.stack((m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21), -1),
            torch.stack((m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22), -1),
        ),
        dim=-2,
    )  # (..., 4, 4): row k is 4 q_k * q
    diag = torch.stack((cands[..., 0, 0], cands[..., 1, 1], cands[..., 2, 2],
                        cands[..., 3, 3]), -1)
    k = diag.detach().argmax(-1)
    sel = torch.gather(cands, -2, k[..., None, None].expand(*k.shape, 1, 4)).squeeze(-2)
    q = _safe_normalize(sel)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


def random_quaternions(n: int, seed: int | None = 0) -> np.ndarray:
    """``n`` unit quaternions sampled uniformly on SO(3) (Shoemake), ``w >= 0``."""
    rng = np.random.default_rng(seed)
    u1, u2, u3 = rng.random((3, n))
    q = np.stack((np.sqrt(1 - u1) * np.sin(2 * np.pi * u2),
                  np.sqrt(1 - u1) * np.cos(2 * np.pi * u2),
                  np.sqrt(u1) * np.sin(2 * np.pi * u3),
                  np.sqrt(u1) * np.cos(2 * np.pi * u3)), -1)
    q[q[:, 0] < 0] *= -1
    return q
