"""Periodic finite-element homogenization of 2-D pixel unit cells.

Plane stress, bilinear (Q4) square elements, one element per pixel, periodic boundary
conditions, following the energy-based formulation of Andreassen & Andreasen,
*How to determine composite material properties using numerical homogenization*,
Comput. Mater. Sci. 83 (2014) 488-495.

For each of the three unit macroscopic strains ``eps0`` the periodic fluctuation ``chi``
solves ``K chi = F`` with ``F = sum_e int B^T D_e eps0``; the homogenized stiffness is

``C_ij = 1/|Y| sum_e int (eps0_i - B chi_i)^T D_e (eps0_j - B chi_j)``.

The effective Young's modulus in direction 1 (x, along the image columns) is
``1 / S_11`` with ``S = C^-1``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from matdisco import MatdiscoError

#: Poisson's ratio of both phases.
NU = 0.3
#: Young's modulus of the solid phase (moduli are reported in units of it).
E_SOLID = 1.0
#: Young's modulus of the void phase ("small void stiffness").
E_VOID = 1e-3


def _plane_stress_d(nu: float) -> np.ndarray:
    return np.array([[1.0, nu, 0.0], [nu, 1.0, 0.0], [0.0, 0.0, (1.0 - nu) / 2.0]]) / (1 - nu**2)


@lru_cache(maxsize=4)
def element_matrices(nu: float = NU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-square Q4 element matrices for ``E = 1``.

    Nodes are ordered (0,0), (1,0), (1,1), (0,1); DOFs are (u_x, u_y) per node.

    Returns
    -------
    KE : (8, 8) array
        Element stiffness ``int B^T D B``.
    FE : (8, 3) array
        Element loads ``int B^T D eps0`` for the three unit strains
        (eps_xx, eps_yy, gamma_xy).
    D : (3, 3) array
        Plane-stress constitutive matrix.
    """
    d = _plane_stress_d(nu)
    xi_nodes = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    g = 1.0 / np.sqrt(3.0)
    ke = np.zeros((8, 8))
    fe = np.zeros((8, 3))
    for gx in (-g, g):
        for gy in (-g, g):
            # shape-function derivatives w.r.t. xi, eta; element side 1 => dxi/dx = 2
            dn_dxi = 0.25 * xi_nodes[:, 0] * (1 + xi_nodes[:, 1] * gy)
            dn_deta = 0.25 * xi_nodes[:, 1] * (1 + xi_nodes[:, 0] * gx)
            dn_dx, dn_dy = 2.0 * dn_dxi, 2.0 * dn_deta
            b = np.zeros((3, 8))
            b[0, 0::2] = dn_dx
            b[1, 1::2] = dn_dy
            b[2, 0::2] = dn_dy
            b[2, 1::2] = dn_dx
            w = 0.25  # Gauss weight 1 x Jacobian determinant 1/4
            ke += w * b.T @ d @ b
            fe += w * b.T @ d
    return ke, fe, d


@lru_cache(maxsize=8)
def _assembly(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Periodic element DOF map and sparse-assembly index arrays for an ny x nx grid."""
    rows: np.ndarray
    cols: np.ndarray
    rows, cols = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()

    def node(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (r % ny) * nx + (c % nx)

    # element nodes (x right = column, y up = row): (0,0), (1,0), (1,1), (0,1)
    nodes = np.stack([node(rows, cols), node(rows, cols + 1),
                      node(rows + 1, cols + 1), node(rows + 1, cols)], axis=1)
    edof = np.empty((len(rows), 8), dtype=np.int64)
    edof[:, 0::2] = 2 * nodes
    edof[:, 1::2] = 2 * nodes + 1
    ik = np.repeat(edof, 8, axis=1).ravel()
    jk = np.tile(edof, (1, 8)).ravel()
    return edof, ik, jk


def homogenized_stiffness(moduli: np.ndarray, nu: float = NU) -> np.ndarray:
    """Homogenized plane-stress stiffness ``C^H`` (3 x 3) of a periodic pixel cell.

    Parameters
    ----------
    moduli : (ny, nx) array
        Young's modulus of every pixel (row index = y, column index = x).
    nu : float
        Poisson's ratio of every phase.
    """
    moduli = np.asarray(moduli, dtype=float)
    if moduli.ndim != 2 or min(moduli.shape) < 2:
        raise MatdiscoError(f"unit cell must be a 2-D image of at least 2x2, got {moduli.shape}")
    if not np.all(np.isfinite(moduli)) or np.any(moduli <= 0):
        raise MatdiscoError("pixel moduli must be finite and positive")
    ny, nx = moduli.shape
    ke, fe, d = element_matrices(nu)
    edof, ik, jk = _assembly(ny, nx)
    e = moduli.ravel()
    ndof = 2 * ny * nx
    k = sp.csc_matrix(((e[:, None] * ke.ravel()[None, :]).ravel(), (ik, jk)), shape=(ndof, ndof))
    f = np.stack([np.bincount(edof.ravel(), (e[:, None] * fe[:, j][None, :]).ravel(),
                              minlength=ndof) for j in range(3)], axis=1)
    free = np.arange(2, ndof)  # fix node 0 (rigid translation)
    chi = np.zeros((ndof, 3))
    lu = splu(k[free][:, free].tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
              options={"SymmetricMode": True})
    chi[free] = lu.solve(f[free])
    ce = chi[edof]  # (n_el, 8, 3)
    # energy terms per element for all (i, j) pairs
    t_kk = ce.transpose(0, 2, 1) @ (ke @ ce)
    t_fk = fe.T @ ce
    area = float(ny * nx)
    c = (e.sum() * d - np.einsum("e,eij->ij", e, t_fk + t_fk.transpose(0, 2, 1))
         + np.einsum("e,eij->ij", e, t_kk)) / area
    return 0.5 * (c + c.T)


def effective_youngs_modulus(cell: np.ndarray, e_solid: float = E_SOLID,
                             e_void: float = E_VOID, nu: float = NU,
                             direction: int = 0) -> float:
    """Effective Young's modulus of a binary pixel cell (1 = solid, 0 = void).

    Parameters
    ----------
    cell : (ny, nx) array of {0, 1}
        Unit cell; values are rounded to 0/1.
    direction : {0, 1}
        0 for x (along image columns), 1 for y (along rows).
    """
    if isinstance(direction, bool) or direction not in (0, 1):
        raise MatdiscoError(f"direction must be 0 (x) or 1 (y), got {direction!r}")
    cell = np.asarray(cell)
    moduli = np.where(cell >= 0.5, e_solid, e_void)
    c = homogenized_stiffness(moduli, nu)
    s = np.linalg.inv(c)
    return float(1.0 / s[direction, direction])
