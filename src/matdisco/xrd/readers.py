"""Readers for measured data: 2D detector images (fabio), PONI geometry and integration
(pyFAI), and 1D patterns from ``.xy``/``.csv`` files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco.xrd.detector import validate_image

IMAGE_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".edf", ".cbf", ".gfrm", ".img", ".h5")


def read_image(path: str | os.PathLike[str], shape: tuple[int, int] | None = None
               ) -> np.ndarray:
    """Read a detector image with fabio (TIFF, EDF, CBF, GFRM, ... as fabio supports).

    Returns float32 pixels; refuses missing files, unreadable formats, non-numeric
    pixels, NaN/inf pixels and (when ``shape`` is given) a wrong size, naming the file.
    """
    import fabio

    p = Path(path)
    if not p.exists():
        raise MatdiscoError(f"{p}: image file not found")
    try:
        data = fabio.open(str(p)).data
    except Exception as exc:  # noqa: BLE001 - fabio raises many types
        raise MatdiscoError(f"{p}: fabio cannot read this image ({exc})") from exc
    if data is None:
        raise MatdiscoError(f"{p}: the file holds no image data")
    return validate_image(data, shape, name=str(p))


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write one image with fabio (format by suffix: .tif, .edf, .cbf)."""
    import fabio.cbfimage
    import fabio.edfimage
    import fabio.tifimage

    from matdisco._io import atomic_path

    p = Path(path)
    img = validate_image(image, name=str(p))
    if img.ndim != 2:
        raise MatdiscoError(f"{p}: write_image needs one 2-D image, got {img.shape}")
    suffix = p.suffix.lower()
    cls: Any = {".tif": fabio.tifimage.TifImage, ".tiff": fabio.tifimage.TifImage,
                ".edf": fabio.edfimage.EdfImage, ".cbf": fabio.cbfimage.CbfImage}.get(suffix)
    if cls is None:
        raise MatdiscoError(f"{p}: unsupported image suffix {suffix!r} (.tif, .edf, .cbf)")
    data = img.astype(np.int32) if suffix == ".cbf" else img
    with atomic_path(p) as tmp:
        cls(data=data).write(str(tmp))
    return p


def load_integrator(poni: str | os.PathLike[str]) -> Any:
    """A pyFAI ``AzimuthalIntegrator`` from a PONI file (checks file and wavelength)."""
    import pyFAI

    p = Path(poni)
    if not p.exists():
        raise MatdiscoError(f"{p}: PONI file not found (the detector geometry is required)")
    try:
        ai = pyFAI.load(str(p))
    except Exception as exc:  # noqa: BLE001
        raise MatdiscoError(f"{p}: not a readable PONI file ({exc})") from exc
    wl = getattr(ai, "wavelength", None)
    if wl is None or not wl > 0:
        raise MatdiscoError(f"{p}: the PONI file has no wavelength; add 'Wavelength: <m>'")
    return ai


def integrate(image: np.ndarray, poni: str | os.PathLike[str] | Any, npt: int = 1000,
              unit: str = "2th_deg") -> tuple[np.ndarray, np.ndarray]:
    """Integrate one image to 1D with pyFAI.

    Parameters
    ----------
    image : ndarray (H, W)
        Detector image.
    poni : path or AzimuthalIntegrator or DetectorGeometry
        Geometry.
    npt : int
        Number of radial points.
    unit : str
        pyFAI radial unit (``2th_deg``, ``q_A^-1``, ``q_nm^-1``).

    Returns
    -------
    radial, intensity : ndarray
    """
    from matdisco.xrd.detector import DetectorGeometry

    if poni is None:
        raise MatdiscoError("integration needs a PONI file or a detector geometry")
    if isinstance(poni, DetectorGeometry):
        ai = poni.integrator()
    elif isinstance(poni, (str, os.PathLike)):
        ai = load_integrator(poni)
    else:
        ai = poni
    img = validate_image(image)
    if img.ndim != 2:
        raise MatdiscoError(f"integrate needs one 2-D image, got shape {img.shape}")
    det_shape = getattr(ai.detector, "max_shape", None)
    if det_shape is not None and tuple(det_shape) != img.shape:
        raise MatdiscoError(f"image size {img.shape} differs from the detector "
                            f"{tuple(det_shape)} of the geometry")
    try:
        res = ai.integrate1d(img, npt, unit=unit)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise MatdiscoError(f"pyFAI integration failed ({exc})") from exc
    return np.asarray(res.radial), np.asarray(res.intensity)


def read_pattern(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a 1D pattern from a two-column ``.xy``/``.dat``/``.txt`` or ``.csv`` file.

    Lines starting with ``#`` or ``'`` are comments; CSV files may have a header row.
    Returns ``(two_theta, intensity)`` sorted by angle.
    """
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise MatdiscoError(f"{p}: pattern file not found")
    try:
        if p.suffix.lower() == ".csv":
            df = pd.read_csv(p, comment="#")
            if not np.issubdtype(df.dtypes.iloc[0], np.number):
                df = pd.read_csv(p, comment="#", header=None)
            arr = df.to_numpy(dtype=float)
        else:
            arr = np.loadtxt(p, comments=("#", "'"), ndmin=2)
    except (ValueError, pd.errors.ParserError) as exc:
        raise MatdiscoError(f"{p}: cannot parse the pattern ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] < 2 or len(arr) < 2:
        raise MatdiscoError(f"{p}: expected two columns (2θ, intensity), got {arr.shape}")
    bad = ~np.isfinite(arr[:, :2])
    if bad.any():
        r = int(np.argwhere(bad)[0][0])
        raise MatdiscoError(f"{p}: row {r + 1} has a non-numeric or NaN value")
    order = np.argsort(arr[:, 0])
    return arr[order, 0], arr[order, 1]
