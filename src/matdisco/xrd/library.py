"""Combinatorial libraries of 2D detector images on a ternary composition spread.

A :class:`RegionMap` divides the composition triangle into phase regions (polygons in
barycentric coordinates), each listing the phases present. :func:`make_library` places
``n_samples`` (177 by default, like the study's wafer) on the triangle, gives every sample
the phases of its region with fractions from the lever rule (so they vary smoothly inside a
region), alloying strain, crystallite-size broadening, and renders 1D patterns and 2D
detector images (one frame, or two frames for the NIST-like setup).

:func:`default_phases` builds the seven phases of the Sn–Ti–Zn–O library with pymatgen from
published lattice parameters and Wyckoff positions; :func:`default_region_map` splits the
triangle into 8 regions (3 single-phase, 4 two-phase, 1 three-phase).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco.xrd.detector import (
    BACKGROUNDS,
    DetectorGeometry,
    nist_like_geometries,
    render_image,
    slac_like_geometry,
    validate_image,
)
from matdisco.xrd.simulate import (
    PeakList,
    _scaled,
    caglioti_fwhm,
    peak_list,
    pseudo_voigt,
)

ELEMENTS: tuple[str, str, str] = ("Sn", "Ti", "Zn")

# name: (space group, lattice kind + parameters (Å), species, Wyckoff coordinates,
#        cation composition (Sn, Ti, Zn), source)
# Coordinates use the settings of pymatgen's ``Structure.from_spacegroup`` (origin
# choice 1 for I4_1/amd and Fd-3m).
_PHASE_SPECS: dict[str, dict[str, Any]] = {
    "SnO2_rutile": dict(sg="P4_2/mnm", lattice=("tetragonal", 4.7374, 3.1864),
                        species=["Sn", "O"], coords=[[0, 0, 0], [0.3057, 0.3057, 0]],
                        cations=(1, 0, 0), source="Bolzan et al., Acta Cryst. B53 (1997)"),
    "TiO2_rutile": dict(sg="P4_2/mnm", lattice=("tetragonal", 4.5937, 2.9587),
                        species=["Ti", "O"], coords=[[0, 0, 0], [0.3048, 0.3048, 0]],
                        cations=(0, 1, 0), source="Burdett et al., JACS 109 (1987)"),
    "TiO2_anatase": dict(sg="I4_1/amd", lattice=("tetragonal", 3.7845, 9.5143),
                         species=["Ti", "O"], coords=[[0, 0, 0], [0, 0, 0.2081]],
                         cations=(0, 1, 0), source="Horn et al., Z. Kristallogr. 136 (1972)"),
    "ZnO_wurtzite": dict(sg="P6_3mc", lattice=("hexagonal", 3.2498, 5.2066),
                         species=["Zn", "O"], coords=[[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.3819]],
                         cations=(0, 0, 1), source="Kisi & Elcombe, Acta Cryst. C45 (1989)"),
    "Zn2SnO4_spinel": dict(sg="Fd-3m", lattice=("cubic", 8.657),
                           species=["Zn", {"Zn": 0.5, "Sn": 0.5}, "O"],
                           coords=[[0, 0, 0], [0.625, 0.625, 0.625], [0.385, 0.385, 0.385]],
                           cations=(1 / 3, 0, 2 / 3),
                           source="inverse spinel, a from PDF 24-1470"),
    "Zn2TiO4_spinel": dict(sg="Fd-3m", lattice=("cubic", 8.46),
                           species=["Zn", {"Zn": 0.5, "Ti": 0.5}, "O"],
                           coords=[[0, 0, 0], [0.625, 0.625, 0.625], [0.385, 0.385, 0.385]],
                           cations=(0, 1 / 3, 2 / 3),
                           source="inverse spinel, a from PDF 25-1164"),
    "ZnTiO3_ilmenite": dict(sg="R-3", lattice=("hexagonal", 5.0787, 13.927),
                            species=["Zn", "Ti", "O"],
                            coords=[[0, 0, 0.3554], [0, 0, 0.1440], [0.3176, 0.0218, 0.2438]],
                            cations=(0, 0.5, 0.5),
                            source="ilmenite type, a, c from PDF 26-1500"),
}


def default_phase_names() -> list[str]:
    """Names of the seven phases of the default Sn–Ti–Zn–O library."""
    return list(_PHASE_SPECS)


def phase_cations(name: str) -> np.ndarray:
    """Cation fractions (Sn, Ti, Zn) of a default phase."""
    if name not in _PHASE_SPECS:
        raise MatdiscoError(f"unknown phase {name!r}; known: {', '.join(_PHASE_SPECS)}")
    return np.asarray(_PHASE_SPECS[name]["cations"], float)


def default_phases(names: Sequence[str] | None = None) -> dict[str, Any]:
    """pymatgen structures of the default phases (from lattice parameters + Wyckoff sites)."""
    from pymatgen.core import Lattice, Structure

    out = {}
    for name in names or list(_PHASE_SPECS):
        if name not in _PHASE_SPECS:
            raise MatdiscoError(f"unknown phase {name!r}; known: {', '.join(_PHASE_SPECS)}")
        spec = _PHASE_SPECS[name]
        kind, *par = spec["lattice"]
        lat = getattr(Lattice, kind)(*par)
        out[name] = Structure.from_spacegroup(spec["sg"], lat, spec["species"], spec["coords"])
    return out


# ---------------------------------------------------------------- composition spread
def to_cartesian(comp: np.ndarray) -> np.ndarray:
    """Barycentric (a, b, c) → 2D cartesian (b at (1, 0), c at (0.5, √3/2))."""
    c = np.asarray(comp, float)
    return np.stack([c[..., 1] + 0.5 * c[..., 2], np.sqrt(3) / 2 * c[..., 2]], -1)


def ternary_spread(n: int = 177, seed: int = 0) -> np.ndarray:
    """``n`` compositions spread evenly over the triangle (R2 low-discrepancy sequence)."""
    if n < 1:
        raise MatdiscoError(f"n_samples must be ≥ 1, got {n}")
    g = 1.32471795724474602596
    a = np.array([1 / g, 1 / g ** 2])
    i = np.arange(1, n + 1)[:, None] + seed * 7919
    uv = (0.5 + a[None, :] * i) % 1.0
    flip = uv.sum(1) > 1
    uv[flip] = 1 - uv[flip]
    return np.column_stack([1 - uv.sum(1), uv[:, 0], uv[:, 1]])


@dataclass
class PhaseRegion:
    """A region of the composition triangle.

    Attributes
    ----------
    name : str
        Region label.
    phases : tuple of str
        Phases present in the region.
    polygon : ndarray (m, 3)
        Vertices in barycentric coordinates (fractions of the three elements).
    """

    name: str
    phases: tuple[str, ...]
    polygon: np.ndarray

    def __post_init__(self) -> None:
        self.phases = tuple(self.phases)
        self.polygon = np.asarray(self.polygon, float)
        if self.polygon.ndim != 2 or self.polygon.shape[1] != 3 or len(self.polygon) < 3:
            raise MatdiscoError(f"region {self.name!r}: polygon must be ≥3 ternary vertices "
                                f"(m, 3), got shape {self.polygon.shape}")
        if not self.phases:
            raise MatdiscoError(f"region {self.name!r} lists no phases")

    def contains(self, comp: np.ndarray, radius: float = 1e-9) -> np.ndarray:
        """Boolean mask of the compositions inside (or on the border of) the region."""
        from matplotlib.path import Path as MplPath

        path = MplPath(to_cartesian(self.polygon))
        pts = to_cartesian(comp)
        return path.contains_points(pts, radius=radius) | path.contains_points(pts,
                                                                                radius=-radius)


@dataclass
class RegionMap:
    """Phase regions covering the composition triangle.

    Parameters
    ----------
    regions : list of PhaseRegion
        Regions; together they must cover the whole triangle.
    elements : (str, str, str)
        Names of the three composition axes.
    """

    regions: list[PhaseRegion]
    elements: tuple[str, str, str] = ELEMENTS

    @property
    def names(self) -> list[str]:
        """Region names (class labels are indices into this list)."""
        return [r.name for r in self.regions]

    @property
    def phase_names(self) -> list[str]:
        """All phases, in order of first appearance."""
        out: list[str] = []
        for r in self.regions:
            out += [p for p in r.phases if p not in out]
        return out

    def validate(self, known_phases: Sequence[str] | None = None, resolution: int = 60
                 ) -> None:
        """Check phase names and that the regions cover the triangle.

        Raises :class:`~matdisco.MatdiscoError` naming an unknown phase, or an uncovered
        composition.
        """
        if not self.regions:
            raise MatdiscoError("the region map has no regions")
        if known_phases is not None:
            for r in self.regions:
                for p in r.phases:
                    if p not in known_phases:
                        raise MatdiscoError(
                            f"region {r.name!r}: unknown phase {p!r} "
                            f"(known: {', '.join(known_phases)})")
        n = resolution
        i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        keep = i + j <= n
        grid = np.column_stack([(n - i - j)[keep], i[keep], j[keep]]) / n
        covered = np.zeros(len(grid), bool)
        for r in self.regions:
            covered |= r.contains(grid, radius=1e-6)
        if not covered.all():
            c = grid[np.argmin(covered)]
            comp = ", ".join(f"{e}={v:.3f}" for e, v in zip(self.elements, c, strict=True))
            raise MatdiscoError(f"the region map does not cover the composition triangle: "
                                f"no region contains {comp}")

    def label(self, comp: np.ndarray) -> np.ndarray:
        """Region index of every composition (first region containing it)."""
        comp = np.asarray(comp, float)
        lab = np.full(len(comp), -1, np.int64)
        for k, r in enumerate(self.regions):
            inside = r.contains(comp, radius=1e-6) & (lab < 0)
            lab[inside] = k
        if (lab < 0).any():
            c = comp[np.argmin(lab)]
            raise MatdiscoError(f"composition {np.round(c, 4).tolist()} lies in no region")
        return lab

    def to_dict(self) -> dict[str, Any]:
        """JSON-able representation."""
        return {"elements": list(self.elements),
                "regions": [{"name": r.name, "phases": list(r.phases),
                             "polygon": r.polygon.tolist()} for r in self.regions]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RegionMap:
        """Inverse of :meth:`to_dict` (also reads a user JSON region map)."""
        try:
            regions = [PhaseRegion(r["name"], tuple(r["phases"]), np.asarray(r["polygon"]))
                       for r in d["regions"]]
        except (KeyError, TypeError) as exc:
            raise MatdiscoError(f"region map needs 'regions' with name/phases/polygon: {exc}"
                                ) from exc
        return cls(regions, tuple(d.get("elements", ELEMENTS)))


def default_region_map() -> RegionMap:
    """Eight phase regions of the Sn–Ti–Zn(–O) triangle (cation fractions Sn, Ti, Zn)."""
    sn, ti, zn = (1, 0, 0), (0, 1, 0), (0, 0, 1)
    p1, z2s, p2 = (0.6, 0, 0.4), (1 / 3, 0, 2 / 3), (0.22, 0, 0.78)
    p3, z2t, zt, p4 = (0, 0.22, 0.78), (0, 1 / 3, 2 / 3), (0, 0.5, 0.5), (0, 0.75, 0.25)
    p5, p6 = (0.6, 0.4, 0), (0.3, 0.7, 0)
    c, e = (1 / 3, 1 / 3, 1 / 3), (0.15, 0.5, 0.35)

    def R(name: str, phases: tuple[str, ...], polygon: list[tuple[float, float, float]]
          ) -> PhaseRegion:
        return PhaseRegion(name, phases, np.asarray(polygon, float))

    return RegionMap([
        R("SnO2", ("SnO2_rutile",), [sn, p1, p5]),
        R("SnO2+Zn2SnO4", ("SnO2_rutile", "Zn2SnO4_spinel"), [p1, z2s, c, p5]),
        R("ZnO+Zn2SnO4+Zn2TiO4", ("ZnO_wurtzite", "Zn2SnO4_spinel", "Zn2TiO4_spinel"),
          [z2s, p2, p3, z2t, c]),
        R("ZnO", ("ZnO_wurtzite",), [zn, p3, p2]),
        R("Zn2TiO4+ZnTiO3", ("Zn2TiO4_spinel", "ZnTiO3_ilmenite"), [z2t, zt, e, c]),
        R("ZnTiO3+anatase", ("ZnTiO3_ilmenite", "TiO2_anatase"), [zt, p4, p6, e]),
        R("anatase", ("TiO2_anatase",), [ti, p4, p6]),
        R("SnO2+rutile", ("SnO2_rutile", "TiO2_rutile"), [p5, c, e, p6]),
    ])


def lever_fractions(comp: np.ndarray, phase_comps: np.ndarray, min_fraction: float = 0.15
                    ) -> np.ndarray:
    """Phase fractions of one composition from the lever rule (non-negative least squares).

    Every phase of the region keeps at least ``min_fraction`` so it stays visible; the
    fractions vary smoothly with the composition and sum to 1.
    """
    from scipy.optimize import nnls

    k = len(phase_comps)
    if k == 1:
        return np.ones(1)
    A = np.vstack([np.asarray(phase_comps, float).T, np.full(k, 3.0)])
    b = np.append(np.asarray(comp, float), 3.0)
    f, _ = nnls(A, b)
    f = np.clip(f, 0, None)
    f = f / f.sum() if f.sum() > 0 else np.full(k, 1 / k)
    return min_fraction + (1 - k * min_fraction) * f


def render_phase(peaks: PeakList, two_theta: np.ndarray, *, u: float = 0.004,
                 v: float = -0.002, w: float = 0.004, eta: float = 0.5, strain: float = 0.0,
                 crystallite_size: float | None = 30.0, intensity: str = "height"
                 ) -> np.ndarray:
    """Pattern of one phase with Caglioti + Scherrer (crystallite size, nm) broadening.

    ``intensity``: ``"height"`` (default, as the stored benchmarks) or ``"area"``
    (integrated intensities: broadening lowers a peak, keeping its area); see
    :func:`~matdisco.xrd.simulate.render_peaks`.
    """
    pk = peaks.strained(strain) if strain else peaks
    grid = np.asarray(two_theta, float)
    keep = (pk.two_theta > grid[0] - 3) & (pk.two_theta < grid[-1] + 3)
    centers, heights = pk.two_theta[keep], pk.intensity[keep]
    if len(centers) == 0:
        return np.zeros_like(grid)
    fwhm = caglioti_fwhm(centers, u, v, w)
    if crystallite_size:
        theta = np.deg2rad(centers / 2)
        size = np.rad2deg(0.9 * pk.wavelength / (crystallite_size * 10.0 * np.cos(theta)))
        fwhm = np.sqrt(fwhm ** 2 + size ** 2)
    return _scaled(heights, fwhm, eta, intensity) @ pseudo_voigt(grid, centers, fwhm, eta)


@dataclass
class ImageLibrary:
    """A simulated (or loaded) combinatorial library of detector images.

    Attributes
    ----------
    images : ndarray (N, F, H, W) float32
        Detector frames of every sample (F = 1, or 2 for the two-frame setup).
    patterns : ndarray (N, L) float32
        Noise-free 1D patterns (maximum 1) on ``two_theta``.
    two_theta : ndarray (L,)
        2θ grid (degrees) for the library wavelength.
    compositions : ndarray (N, 3)
        Cation fractions of the three elements.
    labels : ndarray (N,) int
        Phase-region index of each sample.
    fractions : ndarray (N, K)
        Phase fractions (columns in ``phase_names`` order).
    region_names, phase_names : list of str
    geometries : list of DetectorGeometry
        One per frame.
    meta : dict
        Generator settings (background family, seed, ...).
    """

    images: np.ndarray
    patterns: np.ndarray
    two_theta: np.ndarray
    compositions: np.ndarray
    labels: np.ndarray
    fractions: np.ndarray
    region_names: list[str]
    phase_names: list[str]
    geometries: list[DetectorGeometry]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a compressed ``.npz`` (arrays + JSON metadata, no pickles)."""
        from matdisco._io import atomic_path

        info = {"region_names": self.region_names, "phase_names": self.phase_names,
                "geometries": [g.to_dict() for g in self.geometries], "meta": self.meta}
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, images=self.images, patterns=self.patterns,
                                two_theta=self.two_theta, compositions=self.compositions,
                                labels=self.labels, fractions=self.fractions,
                                info=np.array(json.dumps(info)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImageLibrary:
        """Read a library written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise MatdiscoError(f"{path}: library file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise MatdiscoError(f"{path}: not a readable .npz library ({exc})") from exc
        missing = {"images", "labels", "compositions", "info"} - set(arrays)
        if missing:
            raise MatdiscoError(f"{path}: library lacks arrays {sorted(missing)}")
        try:
            info = json.loads(str(arrays["info"]))
            region_names = [str(r) for r in info["region_names"]]
            phase_names = [str(p) for p in info["phase_names"]]
            geometries = [DetectorGeometry.from_dict(g) for g in info["geometries"]]
            meta = dict(info.get("meta", {}))
        except MatdiscoError as exc:
            raise MatdiscoError(f"{path}: bad detector geometry in 'info' ({exc})") from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MatdiscoError(f"{path}: the 'info' array is not a valid library "
                                f"description ({type(exc).__name__}: {exc})") from exc
        images = validate_image(arrays["images"], name=f"{path}: images")
        if images.ndim == 3:
            images = images[:, None]
        if images.ndim != 4:
            raise MatdiscoError(f"{path}: images must be (N, F, H, W), got {images.shape}")
        n = len(images)
        labels = np.asarray(arrays["labels"])
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise MatdiscoError(f"{path}: labels must be {n} integers (one per image), got "
                                f"dtype {labels.dtype} and shape {labels.shape}")
        bad = np.flatnonzero((labels < 0) | (labels >= len(region_names)))
        if len(bad):
            raise MatdiscoError(f"{path}: row {int(bad[0]) + 1}: label {int(labels[bad[0]])} is "
                                f"not a region index 0..{len(region_names) - 1}")
        comp = np.asarray(arrays["compositions"])
        if comp.shape != (n, 3) or comp.dtype.kind not in "iuf" or not np.all(
                np.isfinite(comp)):
            raise MatdiscoError(f"{path}: compositions must be finite numbers of shape "
                                f"({n}, 3), got dtype {comp.dtype} and shape {comp.shape}")
        return cls(images, arrays.get("patterns", np.zeros((0, 0), np.float32)),
                   arrays.get("two_theta", np.zeros(0)), comp, labels,
                   arrays.get("fractions", np.zeros((0, 0))), region_names, phase_names,
                   geometries, meta)


def make_library(phases: Mapping[str, Any] | None = None,
                 region_map: RegionMap | None = None, n_samples: int = 177, *,
                 background: str = "irregular", n_frames: int = 1,
                 shape: tuple[int, int] | int = (512, 512), wavelength: float = 1.0,
                 geometries: Sequence[DetectorGeometry] | None = None,
                 spottiness: float = 0.3, counts: float = 500.0,
                 background_level: float | None = None, max_strain: float = 0.006,
                 crystallite_size: tuple[float, float] = (15.0, 60.0),
                 min_fraction: float = 0.15, n_points: int = 2000,
                 compositions: np.ndarray | None = None, seed: int = 0) -> ImageLibrary:
    """Simulate a combinatorial library of detector images.

    Parameters
    ----------
    phases : mapping name → pymatgen Structure or PeakList, optional
        Phases (default: :func:`default_phases`, the Sn–Ti–Zn–O set).
    region_map : RegionMap, optional
        Phase regions (default: :func:`default_region_map`); checked for unknown phase
        names and coverage of the triangle.
    n_samples : int
        Number of samples (177 like the study).
    background : {"irregular", "smooth", "none"}
        Background family (``irregular`` is SLAC-like, ``smooth`` NIST-like).
    n_frames : {1, 2}
        One frame (SLAC-like geometry) or two frames (NIST-like low/high 2θ).
    shape : int or (int, int)
        Image size (512×512 by default).
    wavelength : float
        X-ray wavelength (Å).
    geometries : list of DetectorGeometry, optional
        Explicit frames (overrides ``n_frames``, ``shape`` and ``wavelength``).
    spottiness : float in [0, 1]
        Ring texture of coarse grains (random per sample up to this value).
    counts : float
        Photon counts of the strongest peak (Poisson noise).
    background_level : float, optional
        Background height relative to the strongest peak.
    max_strain : float
        Largest alloying strain (lattice parameters change linearly with composition).
    crystallite_size : (float, float)
        Range of crystallite sizes (nm) for Scherrer broadening (varies over the wafer).
    min_fraction : float
        Smallest fraction of a phase present in a region.
    n_points : int
        Length of the 1D 2θ grid.
    compositions : ndarray (N, 3), optional
        Explicit compositions (default :func:`ternary_spread`).
    seed : int
        Random seed.
    """
    if background not in BACKGROUNDS:
        raise MatdiscoError(f"unknown background {background!r} ({', '.join(BACKGROUNDS)})")
    region_map = region_map or default_region_map()
    if phases is None:
        phases = default_phases([p for p in region_map.phase_names if p in _PHASE_SPECS]
                                or None)
    region_map.validate(list(phases))
    if geometries is None:
        if n_frames == 1:
            geometries = [slac_like_geometry(shape, wavelength)]
        elif n_frames == 2:
            geometries = nist_like_geometries(shape, wavelength)
        else:
            raise MatdiscoError(f"n_frames must be 1 or 2, got {n_frames}")
    geometries = list(geometries)
    wl = geometries[0].wavelength
    if any(abs(g.wavelength - wl) > 1e-9 for g in geometries):
        raise MatdiscoError("all detector frames must share one wavelength")
    lo = min(g.two_theta_range()[0] for g in geometries)
    hi = max(g.two_theta_range()[1] for g in geometries)
    grid = np.linspace(max(0.5, lo - 0.5), min(179.0, hi + 0.5), n_points)
    names = region_map.phase_names
    peaks = {}
    for n in names:
        obj = phases[n]
        peaks[n] = obj if isinstance(obj, PeakList) else peak_list(
            obj, (max(0.5, grid[0] - 3), min(179.0, grid[-1] + 3)), wavelength=wl, name=n,
            with_crystal_system=False)
    cations = {n: (phase_cations(n) if n in _PHASE_SPECS else None) for n in names}

    rng = np.random.default_rng(seed)
    comp = ternary_spread(n_samples, seed) if compositions is None else np.asarray(
        compositions, float)
    if comp.ndim != 2 or comp.shape[1] != 3 or np.any(comp < -1e-9) or not np.allclose(
            comp.sum(1), 1, atol=1e-6):
        raise MatdiscoError("compositions must be (N, 3) non-negative fractions summing to 1")
    labels = region_map.label(comp)
    direction = rng.normal(size=(len(names), 3))
    size_dir = rng.normal(size=3)
    K = len(names)
    N = len(comp)
    frac = np.zeros((N, K), np.float32)
    pats = np.zeros((N, len(grid)), np.float32)
    imgs = np.zeros((N, len(geometries), *geometries[0].shape), np.float32)
    for i in range(N):
        reg = region_map.regions[labels[i]]
        idx = [names.index(p) for p in reg.phases]
        pcomp = [cations[p] if cations[p] is not None else np.full(3, 1 / 3)
                 for p in reg.phases]
        frac[i, idx] = lever_fractions(comp[i], np.array(pcomp), min_fraction)
        t = 0.5 + 0.5 * np.tanh(2 * (comp[i] - 1 / 3) @ size_dir)
        size = crystallite_size[0] + (crystallite_size[1] - crystallite_size[0]) * t
        x = np.zeros(len(grid))
        for j in idx:
            strain = max_strain * np.tanh(2 * (comp[i] - 1 / 3) @ direction[j])
            p = render_phase(peaks[names[j]], grid, strain=float(strain),
                             crystallite_size=float(size))
            m = p.max()
            x += frac[i, j] * (p / m if m > 0 else p)
        x /= max(x.max(), 1e-12)
        pats[i] = x
        spot = float(rng.uniform(0, spottiness)) if spottiness > 0 else 0.0
        for fi, g in enumerate(geometries):
            imgs[i, fi] = render_image(x, grid, g, background=background,
                                       background_level=background_level, spottiness=spot,
                                       counts=counts, rng=rng)
    meta = {"background": background, "n_frames": len(geometries), "seed": seed,
            "spottiness": spottiness, "counts": counts, "background_level": background_level,
            "max_strain": max_strain, "crystallite_size": list(crystallite_size),
            "region_map": region_map.to_dict()}
    return ImageLibrary(imgs, pats, grid.astype(np.float32), comp.astype(np.float32), labels,
                        frac, region_map.names, names, geometries, meta)
