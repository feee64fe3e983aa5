"""2D detector images from 1D powder patterns (pyFAI geometry).

A flat area detector at a chosen distance, beam centre (PONI), tilt and wavelength is
described by :class:`DetectorGeometry`; pyFAI's
:class:`~pyFAI.integrator.azimuthal.AzimuthalIntegrator` gives the scattering angle 2θ and
the azimuth χ of every pixel. :func:`render_image` maps a 1D pattern onto those angles, adds
ring texture (spotty rings of coarse grains), one of two background families and Poisson
counting noise:

* ``"smooth"``: low, smooth, radially decaying background (like a laboratory instrument,
  the NIST-like family);
* ``"irregular"``: strong background that varies irregularly over the image and between
  samples (amorphous-substrate hump, random smooth 2D field, gradient, shadows; like the
  SLAC beamline family).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from matdisco import MatdiscoError

BACKGROUNDS: tuple[str, ...] = ("none", "smooth", "irregular")

_MAP_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


@dataclass(frozen=True)
class DetectorGeometry:
    """Geometry of a flat square-pixel detector.

    Parameters
    ----------
    shape : (int, int)
        Image size in pixels (rows, columns); 512×512 by default, 2048×2048 possible.
    detector_size : float
        Side of the sensitive area along the rows, in metres (the pixel size is
        ``detector_size / shape[0]``, so changing ``shape`` keeps the angles covered).
    distance : float
        Sample–detector distance (metres, along the beam for an untilted detector).
    poni : (float, float)
        Point of normal incidence (poni1 along rows, poni2 along columns), metres from
        the detector corner; a negative poni1 puts the beam below the detector so that
        the image shows arcs of the Debye–Scherrer rings.
    tilt : (float, float, float)
        pyFAI rotations rot1, rot2, rot3 (radians).
    wavelength : float
        X-ray wavelength in Å.
    """

    shape: tuple[int, int] = (512, 512)
    detector_size: float = 0.1024
    distance: float = 0.12
    poni: tuple[float, float] = (-0.01, 0.0512)
    tilt: tuple[float, float, float] = (0.0, 0.0, 0.0)
    wavelength: float = 1.0

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "poni", tuple(float(p) for p in self.poni))
        object.__setattr__(self, "tilt", tuple(float(t) for t in self.tilt))
        if len(shape) != 2 or min(shape) < 8:
            raise MatdiscoError(f"detector shape must be two sizes ≥ 8 pixels, got {shape}")
        if self.wavelength is None or not math.isfinite(self.wavelength) or self.wavelength <= 0:
            raise MatdiscoError(f"detector wavelength must be a positive number of Å, got "
                                f"{self.wavelength!r}")
        if not self.distance > 0:
            raise MatdiscoError(f"detector distance must be > 0 m, got {self.distance!r}")
        if not self.detector_size > 0:
            raise MatdiscoError(f"detector_size must be > 0 m, got {self.detector_size!r}")

    @property
    def pixel_size(self) -> float:
        """Pixel size in metres."""
        return self.detector_size / self.shape[0]

    def resized(self, shape: tuple[int, int] | int) -> DetectorGeometry:
        """The same detector read out with another number of pixels."""
        if isinstance(shape, int):
            shape = (shape, shape)
        if len(shape) != 2 or min(int(s) for s in shape) < 8:
            raise MatdiscoError(f"detector shape must be two sizes ≥ 8 pixels, got "
                                f"{tuple(shape)}")
        ratio = shape[1] / shape[0]
        poni2 = self.poni[1] * (ratio / (self.shape[1] / self.shape[0]))
        return replace(self, shape=cast(tuple[int, int], tuple(shape)), poni=(self.poni[0], poni2))

    def integrator(self) -> Any:
        """A pyFAI ``AzimuthalIntegrator`` of this geometry."""
        from pyFAI.detectors import Detector
        from pyFAI.integrator.azimuthal import AzimuthalIntegrator

        px = self.pixel_size
        det = Detector(pixel1=px, pixel2=px, max_shape=self.shape)
        return AzimuthalIntegrator(dist=self.distance, poni1=self.poni[0], poni2=self.poni[1],
                                   rot1=self.tilt[0], rot2=self.tilt[1], rot3=self.tilt[2],
                                   detector=det, wavelength=self.wavelength * 1e-10)

    def angle_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """(2θ, χ) of every pixel centre in degrees (cached per geometry)."""
        key = (self.shape, self.detector_size, self.distance, self.poni, self.tilt,
               self.wavelength)
        if key not in _MAP_CACHE:
            ai = self.integrator()
            tth = np.asarray(ai.center_array(self.shape, unit="2th_deg"), np.float64)
            chi = np.asarray(ai.center_array(self.shape, unit="chi_deg"), np.float64)
            if len(_MAP_CACHE) > 16:
                _MAP_CACHE.clear()
            _MAP_CACHE[key] = (tth, chi)
        return _MAP_CACHE[key]

    def two_theta_range(self) -> tuple[float, float]:
        """Smallest and largest 2θ (degrees) on the detector."""
        tth, _ = self.angle_maps()
        return float(tth.min()), float(tth.max())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able representation."""
        d = asdict(self)
        d["shape"], d["poni"], d["tilt"] = list(self.shape), list(self.poni), list(self.tilt)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorGeometry:
        """Inverse of :meth:`to_dict`."""
        return cls(shape=tuple(d["shape"]), detector_size=float(d["detector_size"]),
                   distance=float(d["distance"]), poni=tuple(d["poni"]),
                   tilt=tuple(d["tilt"]), wavelength=float(d["wavelength"]))

    @classmethod
    def from_poni(cls, path: str | Path, shape: tuple[int, int] | None = None
                  ) -> DetectorGeometry:
        """Read a pyFAI PONI file (square pixels assumed)."""
        from matdisco.xrd.readers import load_integrator

        ai = load_integrator(path)
        det = ai.detector
        shp = tuple(shape or det.max_shape or ())
        if len(shp) != 2:
            raise MatdiscoError(f"{path}: the PONI detector has no shape; pass shape=")
        return cls(shape=shp, detector_size=float(det.pixel1) * shp[0], distance=float(ai.dist),
                   poni=(float(ai.poni1), float(ai.poni2)),
                   tilt=(float(ai.rot1), float(ai.rot2), float(ai.rot3)),
                   wavelength=float(ai.wavelength) * 1e10)


def nist_like_geometries(shape: tuple[int, int] | int = (512, 512), wavelength: float = 1.0
                         ) -> list[DetectorGeometry]:
    """Two detector frames (low and high 2θ) of a laboratory two-frame measurement."""
    g = DetectorGeometry(wavelength=wavelength)
    g1 = g.resized(shape)
    g2 = replace(g1, poni=(-0.055, g1.poni[1]))
    return [g1, g2]


def slac_like_geometry(shape: tuple[int, int] | int = (512, 512), wavelength: float = 1.0
                       ) -> DetectorGeometry:
    """One large-angle frame with a slightly tilted detector (beamline-like)."""
    g = DetectorGeometry(wavelength=wavelength, distance=0.1, poni=(-0.012, 0.0512),
                         tilt=(0.0, -0.05, 0.0))
    return g.resized(shape)


def ring_texture(two_theta: np.ndarray, chi: np.ndarray, rng: np.random.Generator,
                 spottiness: float = 0.3, spot_width: float = 0.3) -> np.ndarray:
    """Multiplicative ring-texture map (mean ≈ 1) for coarse-grained samples.

    Parameters
    ----------
    two_theta, chi : ndarray
        Pixel angles in degrees.
    rng : numpy Generator
        Random source (a new grain arrangement per call).
    spottiness : float in [0, 1]
        0 gives uniform rings, 1 fully spotty rings.
    spot_width : float
        Angular size of one diffracting grain (degrees, in 2θ and χ/3).
    """
    from scipy.ndimage import gaussian_filter

    if not 0.0 <= spottiness <= 1.0:
        raise MatdiscoError(f"spottiness must be in [0, 1], got {spottiness}")
    if spottiness == 0:
        return np.ones_like(two_theta)
    t0, t1 = float(two_theta.min()), float(two_theta.max())
    nt = max(2, int((t1 - t0) / spot_width) + 2)
    nc = max(2, int(360.0 / (3 * spot_width)) + 1)
    spots = rng.gamma(0.35, 1 / 0.35, size=(nt, nc))
    spots = gaussian_filter(spots, 0.7, mode=("nearest", "wrap"))
    spots /= spots.mean()
    it = np.clip(((two_theta - t0) / spot_width).astype(np.int64), 0, nt - 1)
    ic = np.clip((((chi + 180.0) % 360.0) / (3 * spot_width)).astype(np.int64), 0, nc - 1)
    return (1.0 - spottiness) + spottiness * spots[it, ic]


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int) -> np.ndarray:
    from scipy.ndimage import zoom

    coarse = rng.normal(size=(cells, cells))
    f = zoom(coarse, (shape[0] / cells, shape[1] / cells), order=3, mode="nearest")
    return f[:shape[0], :shape[1]]


def make_background(kind: str, geometry: DetectorGeometry, rng: np.random.Generator,
                    level: float | None = None) -> np.ndarray:
    """A background image of the given family.

    Parameters
    ----------
    kind : {"none", "smooth", "irregular"}
        Background family (see the module docstring).
    geometry : DetectorGeometry
        Detector (for the pixel angles).
    rng : numpy Generator
        Random source (backgrounds differ between samples).
    level : float, optional
        Typical background height relative to the strongest peak (default 0.05 for
        ``smooth`` and 1.0 for ``irregular``).
    """
    tth, chi = geometry.angle_maps()
    h, w = geometry.shape
    if kind == "none":
        return np.zeros(geometry.shape)
    t = (tth - tth.min()) / max(tth.max() - tth.min(), 1e-9)
    if kind == "smooth":
        lv = 0.05 if level is None else level
        decay = np.exp(-t / rng.uniform(0.3, 0.8))
        return lv * (0.5 + rng.uniform(0.5, 1.0) * decay)
    if kind == "irregular":
        lv = 1.0 if level is None else level
        hump = np.exp(-0.5 * ((t - rng.uniform(0.2, 0.6)) / rng.uniform(0.1, 0.3)) ** 2)
        field = np.exp(0.5 * _smooth_field((h, w), rng, int(rng.integers(3, 6))))
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        ang = rng.uniform(0, 2 * np.pi)
        grad = 1.0 + 0.8 * ((np.cos(ang) * xx + np.sin(ang) * yy) - 0.5)
        bg = (0.6 * hump + 0.4) * field * np.clip(grad, 0.1, None)
        # a soft shadow (beam stop / sample holder) at a random place
        cy, cx = rng.uniform(0, 1, 2)
        r = rng.uniform(0.1, 0.3)
        shadow = 1.0 - 0.5 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
        bg = bg * shadow
        return lv * rng.uniform(0.5, 1.5) * bg / bg.mean()
    raise MatdiscoError(f"unknown background kind {kind!r} (one of {', '.join(BACKGROUNDS)})")


def render_image(pattern: np.ndarray, two_theta: np.ndarray,
                 geometry: DetectorGeometry | None = None, *,
                 background: str | np.ndarray = "none", background_level: float | None = None,
                 spottiness: float = 0.0, counts: float | None = 500.0,
                 rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Render a 1D pattern into a 2D detector image.

    Parameters
    ----------
    pattern : ndarray (L,)
        Intensity on ``two_theta`` (≥ 0, any scale; normalised to maximum 1 here).
    two_theta : ndarray (L,)
        Increasing 2θ grid in degrees, for the detector wavelength.
    geometry : DetectorGeometry, optional
        Detector (default 512×512, λ = 1 Å).
    background : str or ndarray
        A family of :data:`BACKGROUNDS` or a ready background image.
    background_level : float, optional
        Background height relative to the strongest peak (see :func:`make_background`).
    spottiness : float in [0, 1]
        Ring texture (0: smooth rings, 1: spotty rings of coarse grains).
    counts : float or None
        Photon counts of the strongest peak; Poisson noise is drawn when set.
    rng : Generator, int or None
        Random source or seed.

    Returns
    -------
    ndarray, float32, shape ``geometry.shape``
        The image in counts (or relative units when ``counts`` is None).
    """
    from matdisco.xrd.simulate import validate_grid

    geometry = geometry or DetectorGeometry()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    p = np.asarray(pattern, float)
    grid = np.asarray(two_theta, float)
    validate_grid(grid)
    if p.shape != grid.shape:
        raise MatdiscoError(f"pattern has {p.shape} points but the 2θ grid has {grid.shape}")
    if not np.all(np.isfinite(p)):
        raise MatdiscoError("pattern contains NaN/inf values")
    m = p.max()
    p = p / m if m > 0 else p
    tth, chi = geometry.angle_maps()
    img = np.interp(tth, grid, p, left=0.0, right=0.0)
    if spottiness > 0:
        img *= ring_texture(tth, chi, rng, spottiness)
    if isinstance(background, str):
        img = img + make_background(background, geometry, rng, background_level)
    else:
        bg = np.asarray(background, float)
        if bg.shape != img.shape:
            raise MatdiscoError(f"background image has shape {bg.shape}, detector {img.shape}")
        img = img + bg
    if counts is not None:
        img = rng.poisson(np.clip(img, 0, None) * counts).astype(np.float64)
    return img.astype(np.float32)


def validate_image(image: Any, shape: tuple[int, ...] | None = None, name: str = "image"
                   ) -> np.ndarray:
    """Check one image or a stack of images; return float32.

    Refuses non-numeric dtypes (bool, complex, strings, objects), NaN/inf pixels (naming
    the image and pixel) and a wrong size when ``shape`` (the last two dimensions) is
    given.
    """
    a = np.asarray(image)
    if a.dtype.kind not in "iuf":
        raise MatdiscoError(f"{name}: pixel dtype {a.dtype} is not a real number type "
                            "(expected integer or float counts)")
    if a.ndim < 2:
        raise MatdiscoError(f"{name}: expected a 2-D image (or a stack), got shape {a.shape}")
    if shape is not None and tuple(a.shape[-2:]) != tuple(shape[-2:]):
        raise MatdiscoError(f"{name}: image size {tuple(a.shape[-2:])} differs from the "
                            f"expected {tuple(shape[-2:])}")
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise MatdiscoError(f"{name}: NaN/inf pixel at index {idx}; mask or fill it first")
    return a.astype(np.float32, copy=False)
