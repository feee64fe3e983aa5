"""Dataset loaders and the ElemNet cleaning procedure.

Every loader returns a :class:`pandas.DataFrame` with at least the columns ``formula``
and ``target`` (float, finite), and validates each row with a clear error.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matdisco import MatdiscoError
from matdisco._io import read_table
from matdisco.data.composition import (
    ELEMNET_ELEMENTS,
    _zero_amount,
    parse_formula,
    reduced_key,
)


def shared_data_dir() -> Path | None:
    """The benchmark data folder (``$MATDISCO_SHARED_DATA`` or ``../shared/data``), if any."""
    env = os.environ.get("MATDISCO_SHARED_DATA")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [p / "shared" / "data" for p in here.parents]
    candidates.append(Path.cwd().parent / "shared" / "data")
    for c in candidates:
        if (c / "README.md").exists() or (c / "oqmd_formation_enthalpy").exists():
            return c
    return None


def _validate(df: pd.DataFrame, formula_col: str, target_col: str | None, source: str,
              elements: tuple[str, ...] | None) -> pd.DataFrame:
    if len(df) == 0:
        raise MatdiscoError(f"{source}: the file has no data rows")
    dup = df.columns[df.columns.duplicated()]
    if len(dup):
        raise MatdiscoError(f"{source}: duplicate column name {dup[0]!r}; rename one of them")
    missing = [c for c in (formula_col, target_col) if c is not None and c not in df.columns]
    if missing:
        raise MatdiscoError(
            f"{source}: missing column(s) {missing}; found columns {list(df.columns)}"
        )
    out = pd.DataFrame({"formula": df[formula_col].astype(object)})
    for i, f in enumerate(out["formula"]):
        parse_formula(f, row=i, source=source, elements=elements)
        zero = _zero_amount(f.strip())  # a string: parse_formula passed it
        if zero is not None:
            raise MatdiscoError(f"{source}: row {i + 1}: formula {f!r} has a zero amount of "
                                f"{zero}")
    out["formula"] = out["formula"].map(lambda s: str(s).strip())
    if target_col is not None:
        if pd.api.types.is_bool_dtype(df[target_col]):
            raise MatdiscoError(f"{source}: target column {target_col!r} holds True/False "
                                "values, not numbers (wrong target column?)")
        y = pd.to_numeric(df[target_col], errors="coerce")
        bad = ~np.isfinite(y.to_numpy(dtype=float))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise MatdiscoError(
                f"{source}: row {i + 1}: target {target_col!r} is {str(df[target_col].iloc[i])!r}, "
                f"not a finite number ({int(bad.sum())} such row{'s' if bad.sum() != 1 else ''})"
            )
        out["target"] = y.to_numpy(dtype=float)
    for c in df.columns:
        if c not in (formula_col, target_col) and c not in out.columns:
            out[c] = df[c].to_numpy()
    return out


#: File suffixes :func:`load_table` reads (CSV may be compressed, e.g. ``.csv.gz``).
_TABLE_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")


def load_table(path: str | os.PathLike[str], formula_col: str = "formula",
               target_col: str | None = "target",
               elements: tuple[str, ...] | None = ELEMNET_ELEMENTS) -> pd.DataFrame:
    """Load a CSV or Parquet file of formulas and (optionally) targets.

    Rows are numbered from 1 in error messages (row 1 is the first data row, the line
    after the header).

    Raises
    ------
    MatdiscoError
        For a missing/empty file, missing columns, unparseable formulas, unknown
        elements, non-positive amounts or NaN/inf targets.
    """
    path = Path(path)
    if not path.exists():
        raise MatdiscoError(f"{path}: file not found")
    if path.is_dir():
        raise MatdiscoError(f"{path}: is a directory, not a CSV or Parquet file")
    suffixes = [x.lower() for x in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] not in _TABLE_SUFFIXES:
        raise MatdiscoError(f"{path}: unsupported file type {path.suffix!r}; expected a CSV "
                            "(.csv, .txt, optionally compressed) or Parquet (.parquet) file")
    df = read_table(path)
    if path.suffix.lower() not in (".parquet", ".pq"):  # read as CSV
        df = _csv_raw_header_and_formulas(path, df, formula_col)
    return _validate(df, formula_col, target_col, str(path), elements)


def _csv_raw_header_and_formulas(path: Path, df: pd.DataFrame, formula_col: str
                                 ) -> pd.DataFrame:
    """Check what ``pandas.read_csv`` hides: it renames a repeated column name
    (``target``, ``target`` -> ``target``, ``target.1``) and reads the formulas ``NaN``
    (sodium nitride), ``NA``, ``None`` ... as missing values."""
    try:
        header = pd.read_csv(path, header=None, nrows=1, dtype=str,
                             keep_default_na=False).iloc[0].tolist()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError,
            ValueError, IndexError):
        return df
    first: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in first:
            raise MatdiscoError(f"{path}: duplicate column name {name!r} (columns "
                                f"{first[name] + 1} and {i + 1}); rename one of them")
        first[name] = i
    if (len(header) == len(df.columns) and formula_col in df.columns
            and df[formula_col].isna().any()):
        raw = pd.read_csv(path, usecols=[list(df.columns).index(formula_col)], dtype=str,
                          keep_default_na=False).iloc[:, 0]
        if len(raw) == len(df):
            df = df.assign(**{formula_col: raw.to_numpy(dtype=object)})
    return df


def _exp_compounds_path() -> Path:
    return Path(str(resources.files("pymatgen.analysis.compatibility")
                    .joinpath("exp_compounds.json.gz")))


def load_experimental_formation_enthalpy() -> pd.DataFrame:
    """The 2,135 experimental formation enthalpies that ship inside pymatgen.

    ``exp energy`` (eV per formula unit) is divided by the atoms per formula unit to give
    ``target`` in eV/atom; ``uncertainty`` is converted likewise.
    """
    path = _exp_compounds_path()
    with gzip.open(path, "rt") as fh:
        rows = json.load(fh)
    recs = []
    for r in rows:
        n_atoms = sum(parse_formula(r["formula"], elements=None).values())
        recs.append({
            "formula": r["formula"],
            "target": r["exp energy"] / n_atoms,
            "uncertainty": (math.nan if r.get("uncertainty") is None
                            else r["uncertainty"]) / n_atoms,
            "mpid": r.get("mpid"),
        })
    df = pd.DataFrame(recs)
    return _validate(df, "formula", "target", str(path), ELEMNET_ELEMENTS)


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset known to :func:`load_dataset`."""

    name: str
    description: str
    units: str
    embedded: bool
    relpath: str | None = None


DATASETS: dict[str, DatasetInfo] = {
    "exp_formation_enthalpy": DatasetInfo(
        "exp_formation_enthalpy",
        "2,135 experimental formation enthalpies shipped with pymatgen (embedded default)",
        "eV/atom", True),
    "oqmd_val": DatasetInfo(
        "oqmd_val", "OQMD DFT formation enthalpy, benchmark training split (shared data)",
        "eV/atom", False, "oqmd_formation_enthalpy/val.csv"),
    "oqmd_test": DatasetInfo(
        "oqmd_test", "OQMD DFT formation enthalpy, benchmark test split (shared data)",
        "eV/atom", False, "oqmd_formation_enthalpy/test.csv"),
    "mp_e_form": DatasetInfo(
        "mp_e_form", "Materials Project formation energy (Matbench mp_e_form, shared data)",
        "eV/atom", False, "mp_formation_energy.csv"),
}


def dataset_available(name: str) -> bool:
    """Whether a named dataset can be loaded on this machine."""
    info = DATASETS[name]
    if info.embedded:
        return True
    root = shared_data_dir()
    return root is not None and (root / str(info.relpath)).exists()


def load_dataset(name_or_path: str, formula_col: str = "formula",
                 target_col: str | None = "target") -> pd.DataFrame:
    """Load a named dataset (see :data:`DATASETS`) or a CSV/Parquet file path."""
    if name_or_path in DATASETS:
        info = DATASETS[name_or_path]
        if info.embedded:
            return load_experimental_formation_enthalpy()
        root = shared_data_dir()
        if root is None or not (root / str(info.relpath)).exists():
            raise MatdiscoError(
                f"dataset {name_or_path!r} needs the shared benchmark data "
                f"({info.relpath}); set MATDISCO_SHARED_DATA or use a file path"
            )
        return load_table(root / str(info.relpath), "formula", "target")
    path = Path(name_or_path)
    if path.exists():
        return load_table(path, formula_col, target_col)
    raise MatdiscoError(
        f"unknown dataset {name_or_path!r}: not a file and not one of {sorted(DATASETS)}"
    )


def load_matminer(name: str, formula_col: str = "formula", target_col: str = "target",
                  **kwargs: Any) -> pd.DataFrame:
    """Load a dataset with ``matminer.datasets.load_dataset`` (needs network once).

    Structure-based datasets get their formula from the ``structure`` or
    ``composition`` column.
    """
    from matminer.datasets import load_dataset as mm_load

    df = mm_load(name, **kwargs)
    if formula_col not in df.columns:
        for col in ("composition", "structure"):
            if col in df.columns:
                df[formula_col] = [getattr(v, "composition", v).formula.replace(" ", "")
                                   if not isinstance(v, str) else v for v in df[col]]
                break
    return _validate(df, formula_col, target_col, f"matminer:{name}", ELEMNET_ELEMENTS)


def parse_optimade_response(payload: dict[str, Any], target_field: str) -> pd.DataFrame:
    """Turn an OPTIMADE ``/structures`` JSON response into ``formula, target`` rows.

    Entries whose ``target_field`` is missing are skipped.
    """
    rows = []
    for entry in payload.get("data", []):
        attrs = entry.get("attributes", {})
        formula = attrs.get("chemical_formula_reduced") or attrs.get("chemical_formula_descriptive")
        value = attrs.get(target_field)
        if formula is None or value is None:
            continue
        rows.append({"formula": formula, "target": value, "id": entry.get("id")})
    if not rows:
        raise MatdiscoError(f"OPTIMADE response has no entry with field {target_field!r}")
    return _validate(pd.DataFrame(rows), "formula", "target", "optimade", ELEMNET_ELEMENTS)


def load_optimade(base_url: str, target_field: str, filter_: str = "",
                  page_limit: int = 100, max_pages: int = 10,
                  fetch: Any = None) -> pd.DataFrame:
    """Page through an OPTIMADE ``/structures`` endpoint (needs network).

    ``fetch(url) -> dict`` can be replaced (tests pass a recorded response).
    """
    import urllib.parse
    import urllib.request

    def _fetch(url: str) -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
            return json.loads(resp.read().decode())

    fetch = fetch or _fetch
    params = {"page_limit": str(page_limit),
              "response_fields": f"chemical_formula_reduced,{target_field}"}
    if filter_:
        params["filter"] = filter_
    url: str | None = f"{base_url.rstrip('/')}/structures?{urllib.parse.urlencode(params)}"
    frames = []
    for _ in range(max_pages):
        if url is None:
            break
        payload = fetch(url)
        try:
            frames.append(parse_optimade_response(payload, target_field))
        except MatdiscoError:
            pass
        nxt = (payload.get("links") or {}).get("next")
        url = nxt.get("href") if isinstance(nxt, dict) else nxt
    if not frames:
        raise MatdiscoError(f"OPTIMADE {base_url}: no entry with field {target_field!r}")
    return pd.concat(frames, ignore_index=True)


def clean_dataset(df: pd.DataFrame, n_sigma: float = 5.0,
                  sigma_reference: pd.DataFrame | None = None
                  ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The cleaning of the ElemNet study, with a count of rows removed by each step.

    1. drop single-element entries;
    2. keep the lowest target per unique reduced composition;
    3. drop targets outside mean ± ``n_sigma`` standard deviations (of
       ``sigma_reference``, by default the data itself after step 2).

    Returns
    -------
    (DataFrame, dict)
        The cleaned rows and ``{"input": n, "single_element": k1, "duplicates": k2,
        "outliers": k3, "output": m}``.
    """
    report = {"input": len(df)}
    df = df.reset_index(drop=True)  # a repeated index label would reorder the rows
    n_el = df["formula"].map(lambda f: len(parse_formula(f, elements=None)))
    df = df[n_el > 1]
    report["single_element"] = report["input"] - len(df)
    keys = df["formula"].map(reduced_key)
    df = (df.assign(_key=keys).sort_values("target", kind="stable")
          .drop_duplicates("_key", keep="first").sort_index().drop(columns="_key"))
    report["duplicates"] = report["input"] - report["single_element"] - len(df)
    ref = sigma_reference if sigma_reference is not None else df
    mu, sd = float(ref["target"].mean()), float(ref["target"].std())
    # fewer than two reference rows give no spread: nothing can be called an outlier
    keep = ((df["target"] - mu).abs() <= n_sigma * sd) if np.isfinite(sd) else (
        pd.Series(True, index=df.index))
    n_before = len(df)
    df = df[keep].reset_index(drop=True)
    report["outliers"] = n_before - len(df)
    report["output"] = len(df)
    return df, report
