"""Atomic file writing helpers: write to a temporary file, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _strict(o: Any) -> Any:
    """``o`` with every non-finite float (NaN, inf) replaced by ``None``."""
    if isinstance(o, float | np.floating):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _strict(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_strict(v) for v in o]
    if isinstance(o, np.ndarray):
        return _strict(o.tolist())
    return o


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented, strict JSON atomically.

    Non-finite numbers (e.g. R² of a one-row holdout) are written as ``null``: bare
    ``NaN`` is not JSON, and strict parsers (browsers, ``jq``, other languages) reject it.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_strict(obj), indent=2, default=_default, allow_nan=False)
                       + "\n")
    return Path(path)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, raising a clear error naming the file when it is corrupt."""
    from matdisco import MatdiscoError

    path = Path(path)
    if not path.exists():
        raise MatdiscoError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MatdiscoError(f"{path}: corrupt JSON ({exc})") from exc


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_table(path: str | os.PathLike[str], df: Any) -> Path:
    """Write a pandas DataFrame as CSV or Parquet (by suffix) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    return path


def read_table(path: str | os.PathLike[str]) -> Any:
    """Read a CSV (``.parquet``/``.pq``: Parquet) file as a pandas DataFrame.

    An empty, unreadable or malformed file raises :class:`~matdisco.MatdiscoError`
    naming it.
    """
    import warnings

    import pandas as pd

    from matdisco import MatdiscoError

    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        with warnings.catch_warnings():
            # a row with more fields than the header: pandas would take the first column
            # as an index and shift every other one left (index_col=False) or drop data
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:
                return pd.read_csv(path, index_col=False)
            except pd.errors.ParserWarning:
                raise MatdiscoError(_long_row_message(path)) from None
    except MatdiscoError:
        raise
    except pd.errors.EmptyDataError:
        raise MatdiscoError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        if "Expected" in str(exc) and "fields" in str(exc):  # a row with too many fields
            raise MatdiscoError(_long_row_message(path)) from None
        raise MatdiscoError(f"{path}: cannot read table ({exc})") from None
    except (UnicodeDecodeError, OSError, ValueError) as exc:
        raise MatdiscoError(f"{path}: cannot read table ({exc})") from None


def _long_row_message(path: Path) -> str:
    """Name the first CSV row with more fields than the header (rows from 1 = the line
    after the header)."""
    import csv

    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        for i, row in enumerate(reader, start=1):
            if len(row) > len(header):
                return (f"{path}: row {i} has {len(row)} fields but the header has "
                        f"{len(header)} ({', '.join(header)}); a stray comma or an unquoted "
                        "value with a comma?")
    return f"{path}: a row has more fields than the header ({len(header)} columns)"


def finite_column(df: Any, col: str, source: str) -> np.ndarray:
    """Column ``col`` of ``df`` as floats; the first non-finite entry raises, naming the row.

    Rows are numbered from 1 (row 1 is the first data row, the line after the header),
    as in every input error.
    """
    import pandas as pd

    from matdisco import MatdiscoError

    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(v)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MatdiscoError(f"{source}: row {i + 1}: {col} is {str(df[col].iloc[i])!r}, not a "
                            "finite number")
    return v


def check_output_file(path: str | os.PathLike[str], suffixes: tuple[str, ...],
                      option: str = "--output") -> None:
    """Refuse, before any work, an output that is a directory or has another suffix."""
    from matdisco import MatdiscoError

    path = Path(path)
    if path.is_dir():
        raise MatdiscoError(f"{option} {path} is a directory; give a file name ending in "
                            f"{' or '.join(suffixes)}")
    if path.suffix not in suffixes:
        raise MatdiscoError(f"{option} {path}: unsupported output file type "
                            f"{path.suffix or '(no suffix)'!r}; use {' or '.join(suffixes)}")


@contextlib.contextmanager
def config_errors(source: str, what: str) -> Iterator[None]:
    """Re-raise errors of building an object from a saved configuration as one
    :class:`~matdisco.MatdiscoError` that names ``source`` (the file) and ``what``."""
    from matdisco import MatdiscoError

    try:
        yield
    except MatdiscoError as exc:
        raise MatdiscoError(f"{source}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
        raise MatdiscoError(f"{source}: corrupt or edited {what} configuration "
                            f"({detail})") from exc


def save_figure(path: str | os.PathLike[str], fig: Any, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """Write arrays as an uncompressed ``.npz`` atomically (temporary name, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # numpy>=2.1 stubs have `allow_pickle: bool` before `**kwds`, and mypy matches
        # `**arrays` against it; passing allow_pickle explicitly would break numpy<2.1
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return path
