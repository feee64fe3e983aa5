"""Simulated EBSD patterns from kikuchipy's bundled Ni master pattern, cached to HDF5.

Orientations are sampled uniformly on SO(3) or on a cubochoric grid (orix), projected
through a :class:`kikuchipy.detectors.EBSDDetector` in chunks (kikuchipy builds a Dask
graph per chunk, so the projection runs in parallel on the Dask scheduler), and written
to an HDF5 file whose name is a hash of everything that determines the patterns.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from matdisco import MatdiscoError
from matdisco._io import atomic_path

__all__ = [
    "DetectorConfig",
    "DEGRADATION_LEVELS",
    "Degradation",
    "cache_dir",
    "degrade_patterns",
    "load_master_pattern",
    "make_detector",
    "sample_orientations",
    "simulate_dataset",
    "simulate_patterns",
    "load_dataset",
    "save_dataset",
]


@dataclass(frozen=True)
class DetectorConfig:
    """EBSD detector geometry (defaults match kikuchipy's bundled Ni data set).

    Parameters
    ----------
    shape : (int, int)
        Detector rows and columns in pixels (60x60 by default).
    pc : (float, float, float)
        Projection centre ``(PCx, PCy, PCz)`` in the Bruker convention.
    tilt : float
        Detector tilt in degrees.
    sample_tilt : float
        Sample tilt in degrees.
    px_size : float
        Unbinned pixel size in microns.
    binning : int
        Detector binning.
    energy : float
        Beam energy (kV) of the master pattern to use.
    """

    shape: tuple[int, int] = (60, 60)
    pc: tuple[float, float, float] = (0.425, 0.213, 0.501)
    tilt: float = 0.0
    sample_tilt: float = 70.0
    px_size: float = 1.0
    binning: int = 8
    energy: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["pc"] = list(self.pc)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "detector") -> DetectorConfig:
        """Inverse of :meth:`to_dict`; a malformed entry raises a
        :class:`~matdisco.MatdiscoError` naming ``source`` and the field."""
        if not isinstance(d, dict):
            raise MatdiscoError(f"{source}: expected an object of detector settings, got "
                                f"{type(d).__name__}")
        d = dict(d)
        field = "shape"
        try:
            d["shape"] = tuple(int(v) for v in d.get("shape", (60, 60)))
            field = "pc"
            d["pc"] = tuple(float(v) for v in d.get("pc", (0.425, 0.213, 0.501)))
            for field in ("tilt", "sample_tilt", "px_size", "energy"):
                if field in d:
                    d[field] = float(d[field])
            field = "binning"
            if "binning" in d:
                d["binning"] = int(d["binning"])
        except (TypeError, ValueError) as exc:
            raise MatdiscoError(f"{source}: bad {field} {d.get(field)!r} ({exc})") from None
        if len(d["shape"]) != 2 or len(d["pc"]) != 3:
            raise MatdiscoError(f"{source}: shape needs 2 sizes and pc 3 numbers, got shape "
                                f"{list(d['shape'])} and pc {list(d['pc'])}")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def cache_dir() -> Path:
    """Directory of cached pattern sets (``$MATDISCO_CACHE/ebsd``)."""
    root = os.environ.get("MATDISCO_CACHE", os.path.join(Path.home(), ".cache", "matdisco"))
    return Path(root) / "ebsd"


_MASTER: dict[str, Any] = {}


def load_master_pattern() -> Any:
    """kikuchipy's bundled EMsoft Ni master pattern (20 kV, Lambert, both hemispheres)."""
    if "ni" not in _MASTER:
        import kikuchipy as kp

        _MASTER["ni"] = kp.data.nickel_ebsd_master_pattern_small(
            projection="lambert", hemisphere="both"
        )
    return _MASTER["ni"]


def make_detector(config: DetectorConfig | None = None, pc: np.ndarray | None = None) -> Any:
    """Build a :class:`kikuchipy.detectors.EBSDDetector` from a :class:`DetectorConfig`.

    ``pc`` (shape ``(n, 3)``) overrides the single projection centre, one per pattern.
    """
    import kikuchipy as kp

    cfg = config or DetectorConfig()
    if len(cfg.shape) != 2 or min(cfg.shape) < 8:
        raise MatdiscoError(f"detector shape must be two sizes >= 8, got {cfg.shape}")
    return kp.detectors.EBSDDetector(
        shape=tuple(cfg.shape), pc=np.asarray(cfg.pc if pc is None else pc, dtype=float),
        tilt=cfg.tilt, sample_tilt=cfg.sample_tilt, px_size=cfg.px_size,
        binning=cfg.binning, convention="bruker",
    )


def sample_orientations(n: int | None = None, *, method: str = "random",
                        resolution: float | None = None, seed: int = 0,
                        fundamental_zone: bool = True) -> np.ndarray:
    """Orientations as unit quaternions ``(n, 4)`` (orix convention, ``w >= 0``).

    Parameters
    ----------
    n : int, optional
        Number of orientations for ``method="random"``.
    method : {"random", "cubochoric"}
        Uniform random on SO(3), or orix's cubochoric grid of the m-3m fundamental zone.
    resolution : float, optional
        Grid resolution in degrees for ``"cubochoric"``.
    seed : int
        Random seed for ``"random"``.
    fundamental_zone : bool
        Reduce random orientations into the m-3m fundamental zone (so Euler-angle labels
        are unique up to the zone's boundaries).
    """
    from orix.quaternion import Orientation
    from orix.quaternion.symmetry import Oh

    if method == "random":
        if n is None or n < 1:
            raise MatdiscoError(f"n must be a positive integer for random sampling, got {n}")
        from matdisco.ebsd.rotations import random_quaternions

        q = random_quaternions(int(n), seed)
    elif method == "cubochoric":
        if resolution is None or resolution <= 0:
            raise MatdiscoError(f"cubochoric sampling needs resolution > 0 deg, got {resolution}")
        from orix.sampling import get_sample_fundamental

        q = get_sample_fundamental(resolution, point_group=Oh, method="cubochoric").data
        if n is not None and n < len(q):
            q = q[np.random.default_rng(seed).choice(len(q), n, replace=False)]
    else:
        raise MatdiscoError(f"unknown sampling method {method!r} (random, cubochoric)")
    if fundamental_zone:
        q = Orientation(q, symmetry=Oh).reduce().data
    q = np.asarray(q, dtype=np.float64)
    q[q[:, 0] < 0] *= -1
    return q


def simulate_patterns(quaternions: np.ndarray, detector: Any | None = None, *,
                      chunk_size: int = 2000, pc: np.ndarray | None = None,
                      config: DetectorConfig | None = None) -> np.ndarray:
    """Project the Ni master pattern onto the detector for each orientation.

    Parameters
    ----------
    quaternions : ndarray, shape (n, 4)
        Orientations (sample-to-crystal, orix convention).
    detector : EBSDDetector, optional
        Built from ``config`` when omitted.
    chunk_size : int
        Patterns per Dask chunk.
    pc : ndarray, shape (n, 3), optional
        One projection centre per pattern (projection-centre error).
    config : DetectorConfig, optional
        Detector configuration (when ``detector`` is omitted).

    Returns
    -------
    ndarray, shape (n, rows, cols), float32
    """
    from orix.quaternion import Rotation

    q = np.asarray(quaternions, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 4:
        raise MatdiscoError(f"quaternions must have shape (n, 4), got {q.shape}")
    cfg = config or DetectorConfig()
    mp = load_master_pattern()
    out = []
    # with one projection centre per pattern, kikuchipy needs the rotations of a call in
    # a single Dask block (the detector's navigation shape must match it)
    step = chunk_size if pc is None else min(chunk_size, 500)
    for i in range(0, len(q), step):
        qi = q[i:i + step]
        if pc is not None:
            det = make_detector(cfg, pc=np.asarray(pc)[i:i + step])
        else:
            det = detector if detector is not None else make_detector(cfg)
        sig = mp.get_patterns(Rotation(qi), det, energy=cfg.energy, dtype_out="float32",
                              compute=True, show_progressbar=False,
                              chunk_shape=len(qi) if pc is not None
                              else max(1, min(len(qi), 500)))
        out.append(np.asarray(sig.data, dtype=np.float32).reshape(len(qi), *det.shape))
    return np.concatenate(out) if out else np.zeros((0, *cfg.shape), np.float32)


@dataclass(frozen=True)
class Degradation:
    """Experiment-like degradation of simulated patterns.

    Parameters
    ----------
    dose : float or None
        Mean electron counts per pixel for Poisson shot noise (None: no shot noise).
    background : float
        Amplitude of a smooth static background (fraction of the mean intensity) that
        multiplies the pattern, as a detector's intensity fall-off does.
    blur : float
        Gaussian blur sigma in pixels.
    pc_error : float
        Standard deviation of the projection-centre error (PC units); patterns are
        re-projected with the perturbed PCs.
    """

    dose: float | None = None
    background: float = 0.0
    blur: float = 0.0
    pc_error: float = 0.0


DEGRADATION_LEVELS: dict[str, Degradation] = {
    "noise0": Degradation(),
    "noise1": Degradation(dose=200.0, background=0.3, blur=0.5, pc_error=0.001),
    "noise2": Degradation(dose=40.0, background=0.6, blur=1.0, pc_error=0.003),
    "noise3": Degradation(dose=10.0, background=0.9, blur=1.5, pc_error=0.005),
}


def static_background(shape: tuple[int, int], amplitude: float) -> np.ndarray:
    """A smooth radial fall-off (bright centre) of relative amplitude ``amplitude``."""
    r, c = shape
    y, x = np.mgrid[0:r, 0:c].astype(float)
    d2 = ((y - 0.45 * r) / r) ** 2 + ((x - 0.5 * c) / c) ** 2
    return (1.0 - amplitude) + amplitude * np.exp(-d2 / 0.18)


def degrade_patterns(patterns: np.ndarray, level: Degradation | str, *, seed: int = 0,
                     quaternions: np.ndarray | None = None,
                     config: DetectorConfig | None = None) -> np.ndarray:
    """Apply projection-centre error, static background, blur and shot noise.

    Parameters
    ----------
    patterns : ndarray, shape (n, rows, cols)
        Clean simulated patterns.
    level : Degradation or str
        A :class:`Degradation` or a key of :data:`DEGRADATION_LEVELS`.
    seed : int
        Random seed.
    quaternions : ndarray, optional
        Needed when ``pc_error > 0`` (patterns are re-projected).
    config : DetectorConfig, optional
        Detector used for re-projection.
    """
    from scipy.ndimage import gaussian_filter

    if isinstance(level, str):
        if level not in DEGRADATION_LEVELS:
            raise MatdiscoError(f"unknown degradation level {level!r}; "
                                f"choose from {sorted(DEGRADATION_LEVELS)}")
        level = DEGRADATION_LEVELS[level]
    x = np.asarray(patterns, dtype=np.float64)
    if x.ndim != 3:
        raise MatdiscoError(f"patterns must have shape (n, rows, cols), got {x.shape}")
    rng = np.random.default_rng(seed)
    if level.pc_error > 0:
        if quaternions is None:
            raise MatdiscoError("pc_error > 0 needs the quaternions to re-project patterns")
        cfg = config or DetectorConfig()
        pcs = np.asarray(cfg.pc) + rng.normal(0.0, level.pc_error, size=(len(x), 3))
        x = simulate_patterns(quaternions, pc=pcs, config=cfg).astype(np.float64)
    lo = x.min(axis=(1, 2), keepdims=True)
    hi = x.max(axis=(1, 2), keepdims=True)
    x = (x - lo) / np.maximum(hi - lo, 1e-12)
    x = 0.2 + 0.8 * x  # keep a floor of intensity like a real detector
    if level.background > 0:
        x = x * static_background(x.shape[1:], level.background)[None]
    if level.blur > 0:
        x = gaussian_filter(x, sigma=(0, level.blur, level.blur))
    if level.dose is not None:
        lam = x / x.mean(axis=(1, 2), keepdims=True) * level.dose
        x = rng.poisson(lam).astype(np.float64) / level.dose
    return x.astype(np.float32)


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_dataset(path: str | os.PathLike[str], patterns: np.ndarray, quaternions: np.ndarray,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write patterns and orientations to HDF5 (chunked, compressed) atomically."""
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        n = max(1, len(patterns))
        f.create_dataset("patterns", data=patterns, chunks=(min(n, 256), *patterns.shape[1:]),
                         compression="gzip", compression_opts=4)
        f.create_dataset("quaternions", data=quaternions)
        f.attrs["meta"] = json.dumps(meta or {})
    return path


def load_dataset(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read ``(patterns, quaternions, meta)`` written by :func:`save_dataset`."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise MatdiscoError(f"{path}: pattern file not found")
    try:
        with h5py.File(path, "r") as f:
            if "patterns" not in f or "quaternions" not in f:
                raise MatdiscoError(f"{path}: missing 'patterns' or 'quaternions' dataset")
            x = f["patterns"][()]
            q = f["quaternions"][()]
            raw = f.attrs.get("meta", "{}")
    except OSError as exc:
        raise MatdiscoError(f"{path}: not a readable HDF5 pattern file ({exc})") from exc
    try:
        meta = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise MatdiscoError(f"{path}: the 'meta' attribute is not valid JSON ({exc})"
                            ) from None
    if not isinstance(meta, dict):
        raise MatdiscoError(f"{path}: the 'meta' attribute must be a JSON object")
    return x, q, meta


def simulate_dataset(n: int | None = None, *, method: str = "random",
                     resolution: float | None = None, seed: int = 0,
                     config: DetectorConfig | None = None,
                     levels: tuple[str, ...] = ("noise0",), chunk_size: int = 2000,
                     cache: bool = True, path: str | os.PathLike[str] | None = None,
                     ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Simulate (and cache) a pattern set at one or more degradation levels.

    Returns
    -------
    dict
        ``level -> (patterns (n, rows, cols) float32, quaternions (n, 4))``.
    """
    cfg = config or DetectorConfig()
    q = sample_orientations(n, method=method, resolution=resolution, seed=seed)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    key = {"q": _hash(np.round(q, 10).tolist()), "det": cfg.to_dict(), "v": 1}
    clean: np.ndarray | None = None
    for lev in levels:
        if lev not in DEGRADATION_LEVELS:
            raise MatdiscoError(f"unknown degradation level {lev!r}; "
                                f"choose from {sorted(DEGRADATION_LEVELS)}")
        file = None
        if cache:
            k = dict(key, level=lev, deg=asdict(DEGRADATION_LEVELS[lev]), seed=seed)
            file = cache_dir() / f"ni_{len(q)}_{_hash(k)}.h5"
            if file.exists():
                x, qq, _ = load_dataset(file)
                out[lev] = (x, qq)
                continue
        if clean is None:
            clean = simulate_patterns(q, config=cfg, chunk_size=chunk_size)
        deg = DEGRADATION_LEVELS[lev]
        x = clean if lev == "noise0" and deg == Degradation() else degrade_patterns(
            clean, deg, seed=seed + 1, quaternions=q, config=cfg)
        out[lev] = (x, q)
        if file is not None:
            save_dataset(file, x, q, {"level": lev, "detector": cfg.to_dict(),
                                      "method": method, "resolution": resolution,
                                      "seed": seed})
    if path is not None:
        for lev, (x, qq) in out.items():
            p = Path(path)
            p = p if len(out) == 1 else p.with_name(f"{p.stem}_{lev}{p.suffix or '.h5'}")
            save_dataset(p, x, qq, {"level": lev, "detector": cfg.to_dict(), "method": method,
                                    "resolution": resolution, "seed": seed})
    return out


def with_pc(config: DetectorConfig, pc: tuple[float, float, float]) -> DetectorConfig:
    """Copy of ``config`` with another projection centre."""
    return replace(config, pc=cast(tuple[float, float, float], tuple(float(v) for v in pc)))
