"""Reading and writing signals (one per row) for imitation refinement and phase maps.

Signals are read from ``.npz`` (arrays ``X`` and optionally ``y``, ``two_theta``,
``true``, ``names``), ``.npy`` (just ``X``), or CSV/Parquet (one signal per row, numeric
columns; a ``label`` column is taken as ``y``; columns of text such as sample names or
IDs are not part of the signal and are carried to per-signal outputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError

__all__ = ["check_ids", "class_labels", "load_signals", "save_signals", "signal_ids",
           "with_ids"]


def load_signals(path: Path) -> dict[str, Any]:
    """Read signals (and optional labels/grid/true signals) from a file."""
    if not path.exists():
        raise MatdiscoError(f"{path}: file not found")
    suf = path.suffix.lower()
    try:
        if suf == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "X" not in z:
                    raise MatdiscoError(f"{path}: no array 'X' (found {sorted(z.files)})")
                return _checked(path, {k: z[k] for k in z.files})
        if suf == ".npy":
            return _checked(path, {"X": np.load(path, allow_pickle=False)})
        if suf in (".csv", ".parquet"):
            import pandas as pd

            df = pd.read_parquet(path) if suf == ".parquet" else pd.read_csv(path)
            out: dict[str, Any] = {}
            if "label" in df.columns:
                out["y"] = df["label"].to_numpy()
            text = [c for c in df.columns
                    if c != "label" and not np.issubdtype(df[c].dtype, np.number)]
            for c in list(text):  # a signal point (named by its 2θ, say) stored as text
                if _is_number(c):
                    v = pd.to_numeric(df[c], errors="coerce")
                    bad = np.flatnonzero(v.isna() & df[c].notna())
                    if len(bad):
                        i = int(bad[0])
                        raise MatdiscoError(f"{path}: row {i + 1}: column {str(c)!r} holds "
                                            f"{df[c].iloc[i]!r}, not a number")
                    df[c] = v
                    text.remove(c)
            keep = [c for c in df.columns if c == "label" or c in text]
            sig = df.drop(columns=keep)
            out["X"] = sig.to_numpy(float)
            out[_TABLE] = df[keep].reset_index(drop=True)
            return _checked(path, out, [str(c) for c in sig.columns])
    except (OSError, ValueError) as exc:
        if isinstance(exc, MatdiscoError):
            raise
        raise MatdiscoError(f"{path}: unreadable signal file ({exc})") from exc
    raise MatdiscoError(f"{path}: unsupported format {suf!r} (.npz, .npy, .csv, .parquet)")


def _checked(path: Path, d: dict[str, Any], columns: list[str] | None = None
             ) -> dict[str, Any]:
    """Refuse, naming the file and row, signals with missing/non-finite values and per-signal
    arrays (``y``, ``true``, ``two_theta``) that do not match the signals' shape."""
    x = np.asarray(d["X"])
    if x.dtype.kind not in "biuf":
        raise MatdiscoError(f"{path}: signals 'X' must be numeric, got {x.dtype} values")
    bad = ~np.isfinite(x)
    if x.ndim == 2 and bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        col = repr(columns[c]) if columns is not None else str(c)
        raise MatdiscoError(f"{path}: row {r + 1}: missing or non-finite value (NaN/inf) in "
                            f"signal column {col} (an empty cell or a short row?)")
    if x.ndim != 2:
        return d
    n, length = x.shape
    if "y" in d and np.ndim(d["y"]) == 1 and len(d["y"]) != n:
        raise MatdiscoError(f"{path}: labels y have shape {np.shape(d['y'])}, expected "
                            f"({n},) for {n} signals")
    if "true" in d and np.shape(d["true"]) != x.shape:
        raise MatdiscoError(f"{path}: true signals have shape {np.shape(d['true'])}, the "
                            f"signals {x.shape}")
    if "two_theta" in d and np.shape(d["two_theta"]) != (length,):
        raise MatdiscoError(f"{path}: 2θ grid has shape {np.shape(d['two_theta'])}, expected "
                            f"({length},) for signals of {length} points")
    return d


#: Key of :func:`load_signals`'s result holding a table's non-signal columns (a DataFrame).
_TABLE = "\0columns"


def _is_number(name: object) -> bool:
    try:
        float(str(name))
    except ValueError:
        return False
    return True


def signal_ids(data: dict[str, Any]) -> Any:
    """The per-signal identifier columns of :func:`load_signals`'s result, one row per
    signal in input order (a DataFrame, maybe without columns).

    From a CSV/Parquet file: its columns that are not part of the signal (``label`` and
    text columns such as names or IDs), in their input order. From a ``.npz``: ``name``
    (its ``names`` array, as ``xrd simulate`` writes) and ``label`` (its ``y``) when they
    hold one value per signal.
    """
    import pandas as pd

    table = data.get(_TABLE)
    if isinstance(table, pd.DataFrame):
        return table
    x = np.asarray(data["X"])
    n = len(x) if x.ndim == 2 else 0  # other shapes are refused where they are used
    cols: dict[str, Any] = {}
    for key, col in (("names", "name"), ("y", "label")):
        v = np.asarray(data[key]) if key in data else None
        if v is not None and v.shape == (n,):
            cols[col] = v
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


def check_ids(ids: Any, columns: Any, source: object) -> None:
    """Refuse identifier columns ``ids`` (from :func:`signal_ids`) named like one of the
    output ``columns`` (they would be overwritten or duplicated); call it before the work
    whose output :func:`with_ids` joins."""
    clash = [c for c in ids.columns if c in set(columns)]
    if clash:
        raise MatdiscoError(f"{source}: already has column(s) {clash}, which the output "
                            "columns would overwrite; rename them first")


def with_ids(ids: Any, result: Any, source: object) -> Any:
    """``ids`` (from :func:`signal_ids`) then ``result``'s columns; an identifier column
    named like a result column is refused (:func:`check_ids`)."""
    import pandas as pd

    if not len(ids.columns):
        return result
    check_ids(ids, result.columns, source)
    return pd.concat([ids.reset_index(drop=True), result.reset_index(drop=True)], axis=1)


def class_labels(y: Any, path: Path) -> np.ndarray:
    """Integer class labels read from ``path``; non-integer values are an error (never
    truncated)."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise MatdiscoError(f"{path}: labels 'y' must be 1-D, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64)
    try:
        f = a.astype(float)
    except (TypeError, ValueError):
        raise MatdiscoError(f"{path}: labels 'y' must be integer class indices, got "
                            f"{a.dtype} values") from None
    bad = ~np.isfinite(f) | (f != np.round(f))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MatdiscoError(f"{path}: row {i + 1}: label {a[i].item()!r} is not an integer "
                            "class index")
    return f.astype(np.int64)


def save_signals(output: Path, xr: np.ndarray, data: dict[str, Any],
                  source: object = "input") -> None:
    """Write refined signals atomically, in input order: .npz keeps the input's other
    arrays (and a table's name/ID columns, one array each); .npy; .csv/.parquet start
    with the input's identifier columns (:func:`signal_ids`), then ``x0, x1, ...``."""
    import pandas as pd

    from matdisco._io import atomic_path, write_table

    suf = output.suffix.lower()
    if suf == ".npz":
        extra = {k: v for k, v in data.items() if k not in ("X", _TABLE)}
        table = data.get(_TABLE)
        if isinstance(table, pd.DataFrame):
            for c in table.columns:
                if c == "label":  # already there as y
                    continue
                if str(c) in ("X", "y", "two_theta", "true", "class_names") or str(c) in extra:
                    raise MatdiscoError(f"{source}: column {str(c)!r} has the name of an "
                                        "output array; rename it first")
                v = table[c].to_numpy()
                extra[str(c)] = v.astype(str) if v.dtype == object else v
        with atomic_path(output) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, X=xr, **extra)
    elif suf == ".npy":
        with atomic_path(output) as tmp, open(tmp, "wb") as fh:
            np.save(fh, xr)
    elif suf in (".csv", ".parquet"):
        res = pd.DataFrame(xr, columns=[f"x{i}" for i in range(xr.shape[1])])
        write_table(output, with_ids(signal_ids(data), res, source))
    else:
        raise MatdiscoError(f"{output}: unsupported output format {suf!r}")
