"""1D powder-diffraction simulation: peak lists, pseudo-Voigt profiles, mixtures.

The peak positions and intensities come from pymatgen's
:class:`~pymatgen.analysis.diffraction.xrd.XRDCalculator`; this module turns them into
patterns on a 2θ grid with Caglioti peak widths (``FWHM² = U tan²θ + V tanθ + W``), a
pseudo-Voigt shape, isotropic lattice strain (alloying shifts), a constant 2θ offset,
background and noise.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError

CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic",
)


def default_two_theta(n: int = 2000, lo: float = 10.0, hi: float = 80.0) -> np.ndarray:
    """Return the default 2θ grid (degrees): ``n`` points from ``lo`` to ``hi``."""
    if n < 2 or not hi > lo:
        raise MatdiscoError(f"bad 2θ grid: n={n}, lo={lo}, hi={hi}")
    return np.linspace(lo, hi, n)


@dataclass
class PeakList:
    """Diffraction peaks of one phase.

    Attributes
    ----------
    two_theta : ndarray
        Peak positions (degrees).
    intensity : ndarray
        Relative intensities (max 100).
    name : str
        Phase name.
    crystal_system : str
        One of :data:`CRYSTAL_SYSTEMS` (or ``""`` when unknown).
    wavelength : float
        X-ray wavelength (Å) used to compute the peaks.
    meta : dict
        Free-form extra information (formula, prototype label, ...).
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    name: str = ""
    crystal_system: str = ""
    wavelength: float = 1.54184
    meta: dict[str, Any] = field(default_factory=dict)

    def strained(self, strain: float) -> PeakList:
        """Peaks of the isotropically strained lattice (``d → d·(1+strain)``)."""
        theta = np.deg2rad(self.two_theta / 2.0)
        s = np.sin(theta) / (1.0 + strain)
        ok = np.abs(s) < 1.0
        tt = 2.0 * np.rad2deg(np.arcsin(s[ok]))
        return PeakList(tt, self.intensity[ok].copy(), self.name, self.crystal_system,
                        self.wavelength, dict(self.meta))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able representation."""
        return {"two_theta": self.two_theta.tolist(), "intensity": self.intensity.tolist(),
                "name": self.name, "crystal_system": self.crystal_system,
                "wavelength": self.wavelength, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PeakList:
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(d["two_theta"], float), np.asarray(d["intensity"], float),
                   d.get("name", ""), d.get("crystal_system", ""),
                   float(d.get("wavelength", 1.54184)), dict(d.get("meta", {})))


def crystal_system(structure: Any, symprec: float = 0.1) -> str:
    """Crystal system of a pymatgen structure."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return str(SpacegroupAnalyzer(structure, symprec=symprec).get_crystal_system())
    except Exception:  # noqa: BLE001 - spglib failures on odd structures
        return ""


def _three_index(hkl: Sequence[int]) -> tuple[int, int, int]:
    """Miller indices from pymatgen's 3- or 4-index (Miller–Bravais ``hkil``) form."""
    h = tuple(int(v) for v in hkl)
    return (h[0], h[1], h[3]) if len(h) == 4 else (h[0], h[1], h[2])


def march_dollase(structure: Any, peak_hkls: Sequence[Sequence[dict[str, Any]]],
                  direction: Sequence[int], r: float) -> np.ndarray:
    """March–Dollase preferred-orientation factors of the peaks of a structure.

    For a reflection whose plane normal makes the angle ``α`` with the preferred-orientation
    direction (the normal of the plane ``direction = (h, k, l)`` that the crystallites lie
    on), ``P(α) = (r² cos² α + sin² α / r)^(-3/2)``; ``r = 1`` is a random powder,
    ``r < 1`` platelets lying on that plane (its reflections grow in Bragg–Brentano
    geometry), ``r > 1`` needles. Each peak's factor is the mean of ``P`` over all
    symmetry-equivalent members of the families that make up the peak (pymatgen's
    ``hkls``), i.e. families are weighted by their multiplicity.

    Parameters
    ----------
    structure : pymatgen Structure
    peak_hkls : sequence
        pymatgen's ``DiffractionPattern.hkls`` (one list of ``{"hkl", "multiplicity"}`` per
        peak).
    direction : (h, k, l)
        Miller indices of the preferred-orientation plane.
    r : float
        March–Dollase parameter (> 0).

    Returns
    -------
    ndarray
        One factor per peak.
    """
    from pymatgen.core.surface import get_symmetrically_equivalent_miller_indices

    if not r > 0 or not np.isfinite(r):
        raise MatdiscoError(f"March–Dollase r must be a positive number, got {r}")
    d = np.asarray(direction, float)
    if d.shape != (3,) or not np.any(d):
        raise MatdiscoError(f"preferred-orientation direction must be 3 Miller indices, not all "
                            f"zero; got {list(direction)}")
    recip = structure.lattice.reciprocal_lattice_crystallographic
    g0 = recip.get_cartesian_coords(d)
    g0 = g0 / np.linalg.norm(g0)
    out = np.empty(len(peak_hkls))
    for i, families in enumerate(peak_hkls):
        members = [_three_index(m) for fam in families for m in
                   get_symmetrically_equivalent_miller_indices(structure,
                                                               _three_index(fam["hkl"]))]
        g = recip.get_cartesian_coords(np.asarray(members, float))
        cos2 = (g @ g0 / np.linalg.norm(g, axis=1)) ** 2
        out[i] = float(np.mean((r * r * cos2 + (1.0 - cos2) / r) ** -1.5))
    return out


def peak_list(structure: Any, two_theta_range: tuple[float, float] = (10.0, 80.0),
              wavelength: str | float = "CuKa", name: str = "",
              with_crystal_system: bool = True,
              preferred_orientation: tuple[Sequence[int], float] | None = None) -> PeakList:
    """Compute the diffraction peaks of a structure with pymatgen's XRDCalculator.

    Parameters
    ----------
    structure : pymatgen Structure
        The crystal.
    two_theta_range : (float, float)
        Range of 2θ (degrees); widen it a little beyond your grid so that peaks just
        outside still contribute their tails.
    wavelength : str or float
        Anode name understood by pymatgen (``"CuKa"``) or a wavelength in Å.
    name : str
        Phase name (defaults to the reduced formula).
    with_crystal_system : bool
        Also determine the crystal system (spglib).
    preferred_orientation : ((h, k, l), r), optional
        Texture: intensities multiplied by the :func:`march_dollase` factors of that plane
        and parameter ``r``, then rescaled to a maximum of 100.
    """
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    calc = XRDCalculator(wavelength=wavelength)
    try:
        pat = calc.get_pattern(structure, scaled=True, two_theta_range=two_theta_range)
    except Exception as exc:  # noqa: BLE001
        raise MatdiscoError(f"XRD calculation failed for {name or structure.formula}: {exc}") \
            from exc
    cs = crystal_system(structure) if with_crystal_system else ""
    y = np.asarray(pat.y, float)
    meta: dict[str, Any] = {"formula": structure.composition.reduced_formula}
    if preferred_orientation is not None:
        direction, r = preferred_orientation
        y = y * march_dollase(structure, pat.hkls, direction, float(r))
        y = 100.0 * y / y.max() if len(y) and y.max() > 0 else y
        meta["preferred_orientation"] = {"hkl": [int(v) for v in direction], "r": float(r)}
    return PeakList(np.asarray(pat.x, float), y,
                    name or structure.composition.reduced_formula, cs,
                    float(calc.wavelength), meta)


def caglioti_fwhm(two_theta: np.ndarray, u: float = 0.01, v: float = -0.005,
                  w: float = 0.02) -> np.ndarray:
    """Caglioti peak width ``sqrt(U tan²θ + V tanθ + W)`` in degrees 2θ."""
    t = np.tan(np.deg2rad(np.asarray(two_theta) / 2.0))
    return np.sqrt(np.clip(u * t * t + v * t + w, 1e-6, None))


def pseudo_voigt(x: np.ndarray, center: np.ndarray, fwhm: np.ndarray, eta: float = 0.5
                 ) -> np.ndarray:
    """Unit-height pseudo-Voigt profiles, shape ``(len(center), len(x))``."""
    d = x[None, :] - np.asarray(center)[:, None]
    f = np.asarray(fwhm)[:, None]
    g = np.exp(-4.0 * np.log(2.0) * (d / f) ** 2)
    lor = 1.0 / (1.0 + 4.0 * (d / f) ** 2)
    return eta * lor + (1.0 - eta) * g


def pseudo_voigt_area(fwhm: np.ndarray, eta: float = 0.5) -> np.ndarray:
    """Area of the unit-height :func:`pseudo_voigt` profile of width ``fwhm``."""
    return np.asarray(fwhm) * (eta * np.pi / 2.0
                               + (1.0 - eta) * np.sqrt(np.pi / (4.0 * np.log(2.0))))


def _scaled(intensities: np.ndarray, fwhm: np.ndarray, eta: float, intensity: str
            ) -> np.ndarray:
    """Peak heights for unit-height profiles: the intensities (``"height"``) or the
    intensities over each profile's area (``"area"``: integrated intensities)."""
    if intensity == "height":
        return intensities
    if intensity == "area":
        return intensities / pseudo_voigt_area(fwhm, eta)
    raise MatdiscoError(f"intensity must be 'height' or 'area', got {intensity!r}")


def render_peaks(peaks: PeakList, two_theta: np.ndarray | None = None, *,
                 u: float = 0.01, v: float = -0.005, w: float = 0.02, eta: float = 0.5,
                 strain: float = 0.0, shift: float = 0.0, normalize: bool = True,
                 intensity: str = "height") -> np.ndarray:
    """Render a peak list into a pattern on ``two_theta``.

    ``intensity="height"`` (the default, which every stored benchmark used) gives each
    peak the height of its pymatgen intensity; ``intensity="area"`` treats the intensity
    as integrated, as pymatgen computes it, so each profile's area equals it and broader
    peaks are lower (physically right; see ``notes/issue-5.md``, session 26).

    Parameters
    ----------
    peaks : PeakList
        Peaks to render.
    two_theta : ndarray, optional
        Grid in degrees (default :func:`default_two_theta`).
    u, v, w : float
        Caglioti parameters (degrees²).
    eta : float
        Lorentzian fraction of the pseudo-Voigt.
    strain : float
        Isotropic lattice strain (e.g. from alloying); shifts peaks.
    shift : float
        Constant 2θ offset (sample displacement), degrees.
    normalize : bool
        Scale to maximum 1.
    """
    grid = default_two_theta() if two_theta is None else np.asarray(two_theta, float)
    pk = peaks.strained(strain) if strain else peaks
    centers = pk.two_theta + shift
    keep = (centers > grid[0] - 5) & (centers < grid[-1] + 5)
    centers, heights = centers[keep], pk.intensity[keep]
    if len(centers) == 0:
        return np.zeros_like(grid)
    fwhm = caglioti_fwhm(centers, u, v, w)
    out = _scaled(heights, fwhm, eta, intensity) @ pseudo_voigt(grid, centers, fwhm, eta)
    if normalize and out.max() > 0:
        out = out / out.max()
    return out


def simulate_pattern(structure: Any, two_theta: np.ndarray | None = None, *,
                     wavelength: str | float = "CuKa", u: float = 0.01, v: float = -0.005,
                     w: float = 0.02, eta: float = 0.5, strain: float = 0.0,
                     shift: float = 0.0, normalize: bool = True,
                     preferred_orientation: tuple[Sequence[int], float] | None = None
                     ) -> np.ndarray:
    """Simulate the 1D powder pattern of a pymatgen structure on a 2θ grid.

    See :func:`render_peaks` for the profile parameters and :func:`peak_list` for
    ``preferred_orientation`` (March–Dollase texture).

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> s = Structure(Lattice.cubic(4.05), ["Al"] * 4,
    ...               [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    >>> simulate_pattern(s).shape
    (2000,)
    """
    grid = default_two_theta() if two_theta is None else np.asarray(two_theta, float)
    validate_grid(grid)
    pk = peak_list(structure, (max(0.5, grid[0] - 5), min(179.0, grid[-1] + 5)), wavelength,
                   with_crystal_system=False, preferred_orientation=preferred_orientation)
    return render_peaks(pk, grid, u=u, v=v, w=w, eta=eta, strain=strain, shift=shift,
                        normalize=normalize)


def validate_grid(two_theta: np.ndarray) -> None:
    """Check that a 2θ grid is finite, strictly increasing and within (0, 180)."""
    g = np.asarray(two_theta)
    if g.ndim != 1 or len(g) < 2:
        raise MatdiscoError(f"2θ grid must be 1-D with ≥2 points, got shape {g.shape}")
    if not np.all(np.isfinite(g)) or np.any(np.diff(g) <= 0):
        raise MatdiscoError("2θ grid must be finite and strictly increasing")
    if g[0] <= 0 or g[-1] >= 180:
        raise MatdiscoError(f"2θ grid must lie in (0, 180) degrees, got {g[0]}..{g[-1]}")


def validate_signals(x: Any, length: int | None = None, *, allow_negative: bool = False,
                     name: str = "signals", two_theta: np.ndarray | None = None,
                     expected_two_theta: np.ndarray | None = None) -> np.ndarray:
    """Validate a batch of 1D signals; return it as a 2-D float32 array.

    Raises :class:`~matdisco.MatdiscoError` naming the row for NaN/inf values, negative
    intensities (unless ``allow_negative``), a wrong length, or a grid that differs from
    the expected one.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise MatdiscoError(f"{name}: expected a 2-D array (n_signals, length), got {a.shape}")
    if length is not None and a.shape[1] != length:
        raise MatdiscoError(
            f"{name}: signals have length {a.shape[1]}, the model expects {length}"
        )
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise MatdiscoError(f"{name}: row {r + 1} has a non-finite value (NaN/inf) at index {c}")
    if not allow_negative and (a < 0).any():
        r, c = np.argwhere(a < 0)[0]
        raise MatdiscoError(
            f"{name}: row {r + 1} has a negative intensity {a[r, c]:.4g} at index {c}; "
            "intensities must be ≥ 0"
        )
    if two_theta is not None and expected_two_theta is not None:
        g, e = np.asarray(two_theta, float), np.asarray(expected_two_theta, float)
        if g.shape != e.shape or not np.allclose(g, e, atol=1e-6):
            raise MatdiscoError(
                f"{name}: 2θ grid ({len(g)} points, {g[0]:.3f}..{g[-1]:.3f}) differs from the "
                f"model's grid ({len(e)} points, {e[0]:.3f}..{e[-1]:.3f})"
            )
    return a.astype(np.float32)


def load_cif(path: str | os.PathLike[str]) -> Any:
    """Read a CIF file into a pymatgen Structure, with a clear error naming the file."""
    from pymatgen.core import Structure

    p = Path(path)
    if not p.exists():
        raise MatdiscoError(f"{p}: CIF file not found")
    try:
        return Structure.from_file(str(p))
    except Exception as exc:  # noqa: BLE001
        raise MatdiscoError(f"{p}: could not parse CIF ({exc})") from exc


# element pools for decorating prototypes: substitute each species with a chemically
# similar element (same pool) so the structure stays plausible
_POOLS: tuple[tuple[str, ...], ...] = (
    ("Li", "Na", "K", "Rb", "Cs"),
    ("Be", "Mg", "Ca", "Sr", "Ba"),
    ("Sc", "Y", "La", "Ce", "Pr", "Nd", "Ho", "Lu"),
    ("Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W"),
    ("Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ru", "Rh", "Pd", "Ag", "Cd", "Ir", "Pt", "Au"),
    ("B", "Al", "Ga", "In", "Tl"),
    ("C", "Si", "Ge", "Sn", "Pb"),
    ("N", "P", "As", "Sb", "Bi"),
    ("O", "S", "Se", "Te"),
    ("F", "Cl", "Br", "I"),
)


def decorate(structure: Any, rng: np.random.Generator) -> Any:
    """Return a copy of ``structure`` with each species replaced by a similar element.

    The lattice is rescaled by the cube root of the ratio of atomic radii so that the
    peak positions change plausibly with the new chemistry.
    """
    from pymatgen.core import Element

    mapping: dict[str, str] = {}
    used: set[str] = set()
    for el in structure.composition.elements:
        sym = str(el.symbol)
        pool = next((p for p in _POOLS if sym in p), None)
        choices = [e for e in (pool or (sym,)) if e not in used] or [sym]
        new = str(rng.choice(choices))
        mapping[sym] = new
        used.add(new)
    s = structure.copy()
    s.replace_species(mapping)

    def _r(sym: str) -> float:
        r = Element(sym).atomic_radius
        return float(r) if r is not None else 1.5

    ratio = np.mean([_r(mapping[k]) / _r(k) for k in mapping])
    s.scale_lattice(structure.volume * float(np.clip(ratio, 0.85, 1.15)) ** 3)
    return s


def aflow_prototypes() -> list[tuple[str, Any]]:
    """The 288 AFLOW prototype structures shipped with pymatgen as ``(label, structure)``."""
    from monty.json import MontyDecoder
    from pymatgen.analysis import prototypes

    path = Path(prototypes.__file__).parent / "aflow_prototypes.json.gz"
    with gzip.open(path, "rt") as fh:
        raw = json.load(fh)
    out = []
    for e in MontyDecoder().process_decoded(raw):
        out.append((str(e["tags"]["aflow"]), e["snl"].structure))
    return out


def prototype_phases(n_decorations: int = 1, include_original: bool = True,
                     two_theta_range: tuple[float, float] = (5.0, 85.0), seed: int = 0,
                     structures: Sequence[tuple[str, Any]] | None = None) -> list[PeakList]:
    """Peak lists of the AFLOW prototypes (or ``structures``), decorated with elements.

    Parameters
    ----------
    n_decorations : int
        Number of randomly decorated variants per prototype.
    include_original : bool
        Also include the prototype with its original elements.
    two_theta_range : (float, float)
        2θ range of the peak computation.
    seed : int
        Seed of the decoration.
    structures : list of (name, Structure), optional
        Use these (e.g. from CIF files) instead of the AFLOW prototypes.
    """
    rng = np.random.default_rng(seed)
    protos = list(structures) if structures is not None else aflow_prototypes()
    phases: list[PeakList] = []
    for label, s in protos:
        cs = crystal_system(s)
        variants = [s] if include_original else []
        variants += [decorate(s, rng) for _ in range(n_decorations)]
        for i, st in enumerate(variants):
            pk = peak_list(st, two_theta_range, name=f"{label}#{i}",
                           with_crystal_system=False)
            pk.crystal_system = cs
            pk.meta["prototype"] = label
            if len(pk.two_theta):
                phases.append(pk)
    return phases


def save_phases(path: str | os.PathLike[str], phases: Sequence[PeakList]) -> Path:
    """Save peak lists as JSON (atomic)."""
    from matdisco._io import write_json

    return write_json(path, [p.to_dict() for p in phases])


def load_phases(path: str | os.PathLike[str]) -> list[PeakList]:
    """Load peak lists written by :func:`save_phases`."""
    from matdisco._io import read_json

    data = read_json(path)
    if not isinstance(data, list):
        raise MatdiscoError(f"{path}: expected a JSON list of peak lists")
    try:
        return [PeakList.from_dict(d) for d in data]
    except (KeyError, TypeError, ValueError) as exc:
        raise MatdiscoError(f"{path}: malformed peak list ({exc})") from exc
