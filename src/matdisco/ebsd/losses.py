"""Training objectives for orientation regression (Euler MAE, MDE, both, 6-D / quaternion)."""

from __future__ import annotations

import math

import torch

from matdisco import MatdiscoError
from matdisco.ebsd.rotations import (
    disorientation_angle,
    euler_to_quaternion,
    matrix_to_quaternion,
    rotation_6d_to_matrix,
)

__all__ = ["EULER_RANGE", "LOSSES", "denormalize_euler", "normalize_euler",
           "output_to_quaternion", "orientation_loss"]

#: ranges of the Bunge angles used to scale the network's Euler outputs to [0, 1]
EULER_RANGE = (2 * math.pi, math.pi, 2 * math.pi)
LOSSES = ("mae", "mde", "mae_mde", "quat", "6d")


def normalize_euler(euler: torch.Tensor) -> torch.Tensor:
    """Bunge angles (radians) to ``[0, 1]`` per angle."""
    return euler / euler.new_tensor(EULER_RANGE)


def denormalize_euler(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize_euler`."""
    return y * y.new_tensor(EULER_RANGE)


def output_to_quaternion(out: torch.Tensor, representation: str) -> torch.Tensor:
    """Network output to unit quaternions.

    ``"euler"``: three normalized Bunge angles; ``"quat"``: four numbers normalized to a
    unit quaternion; ``"6d"``: the continuous 6-D representation (Gram-Schmidt).
    """
    if representation == "euler":
        return euler_to_quaternion(denormalize_euler(out))
    if representation == "quat":
        return out / torch.sqrt((out * out).sum(-1, keepdim=True) + 1e-12)
    if representation == "6d":
        return matrix_to_quaternion(rotation_6d_to_matrix(out))
    raise MatdiscoError(f"unknown representation {representation!r} (euler, quat, 6d)")


def orientation_loss(out: torch.Tensor, q_true: torch.Tensor, euler_true: torch.Tensor,
                     loss: str, representation: str,
                     ) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of a batch and the mean disorientation (degrees) for the logs.

    Parameters
    ----------
    out : tensor (n, 3 | 4 | 6)
        Network output for ``representation``.
    q_true : tensor (n, 4)
        True orientations.
    euler_true : tensor (n, 3)
        True normalized Euler angles (for ``"mae"`` and ``"mae_mde"``).
    loss : {"mae", "mde", "mae_mde", "quat", "6d"}
        ``mae``: mean absolute error of the normalized Euler angles; ``mde``: mean
        disorientation (radians) under m-3m; ``mae_mde``: their sum (the study's best);
        ``quat``/``6d``: mean disorientation of a quaternion / 6-D output (symmetry-aware).
    representation : {"euler", "quat", "6d"}
    """
    if loss not in LOSSES:
        raise MatdiscoError(f"unknown loss {loss!r}; choose from {LOSSES}")
    q_pred = output_to_quaternion(out, representation)
    dis = disorientation_angle(q_pred, q_true)
    mde = dis.mean()
    logs = {"mde_deg": float(torch.rad2deg(mde.detach()))}
    if loss in ("mae", "mae_mde"):
        if representation != "euler":
            raise MatdiscoError(f"loss {loss!r} needs the Euler representation")
        mae = (out - euler_true).abs().mean()
        logs["euler_mae"] = float(mae.detach())
        return (mae if loss == "mae" else mae + mde), logs
    return mde, logs
