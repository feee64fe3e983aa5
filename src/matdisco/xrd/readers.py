"""Readers for measured data: 2D detector images (fabio), PONI geometry and integration
(pyFAI), and 1D patterns from ``.xy``/``.csv`` files."""

from __future__ import annotations

import os
from collections.abc import Sequence
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
    data = np.rint(img).astype(np.int32) if suffix == ".cbf" else img
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

    Lines starting with ``#`` or ``'`` are comments; a file may have one header row of
    column names.
    Returns ``(two_theta, intensity)`` sorted by angle.
    """
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise MatdiscoError(f"{p}: pattern file not found")
    try:
        if p.suffix.lower() == ".csv":
            df = pd.read_csv(p, comment="#", header=None, dtype=str)
            # a header row has no number in its first two cells; a first data row is kept
            if len(df) and pd.to_numeric(df.iloc[0, :2], errors="coerce").isna().all():
                df = df.iloc[1:]
            arr = df.to_numpy().astype(float)
        else:
            try:
                arr = np.loadtxt(p, comments=("#", "'"), ndmin=2)
            except ValueError:  # one uncommented header line (column names)
                lines = [ln for ln in p.read_text(errors="replace").splitlines()
                         if ln.strip() and not ln.lstrip().startswith(("#", "'"))]
                arr = np.loadtxt(lines[1:], comments=("#", "'"), ndmin=2)
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


def load_images(inputs: Sequence[str | os.PathLike[str]]
                ) -> tuple[np.ndarray, np.ndarray | None, list[str], list[tuple[str, int]]]:
    """Images (N, F, H, W), compositions or None, names and sources from a library .npz
    or files.

    ``names`` are ``stem[i]`` for the images of a .npz and file names for image files;
    ``sources`` are ``(path as given, index in that file)``, one per image in input order
    (a unique key even when two image files share a name).
    """
    import zipfile

    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and paths[0].suffix == ".npz":
        p = paths[0]
        if not p.exists():
            raise MatdiscoError(f"{p}: file not found")
        try:
            with np.load(p, allow_pickle=False) as z:
                if "images" not in z.files:
                    raise MatdiscoError(f"{p}: no 'images' array in the .npz")
                x = z["images"]
                comp = z["compositions"] if "compositions" in z.files else None
        except MatdiscoError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise MatdiscoError(f"{p}: not a readable .npz of images ({exc})") from exc
        x = validate_image(x, name=f"{p}: images")
        if x.ndim == 2:  # one image
            x = x[None, None]
        elif x.ndim == 3:
            x = x[:, None]
        elif x.ndim != 4:
            raise MatdiscoError(f"{p}: images must be (N, F, H, W), (N, H, W) or (H, W), "
                                f"got shape {x.shape}")
        return (x, comp, [f"{p.stem}[{i}]" for i in range(len(x))],
                [(str(p), i) for i in range(len(x))])
    if any(p.suffix == ".npz" for p in paths):
        raise MatdiscoError("give one library .npz, or image files (TIFF/EDF/CBF/...), not "
                            "several .npz files or a mixture")
    imgs = [read_image(p) for p in paths]
    shapes = {i.shape for i in imgs}
    if len(shapes) > 1:
        raise MatdiscoError(f"images have different sizes: {sorted(shapes)}")
    return np.stack(imgs)[:, None], None, [p.name for p in paths], [(str(p), 0) for p in paths]
