"""The 145 composition attributes of Ward et al. (2016), vectorized.

The element data come from matminer (``MagpieData`` for the 22 element properties and
the valence-orbital counts, ``PymatgenData`` for electronegativity and common oxidation
states, exactly as matminer's ``IonProperty`` uses them); the statistics are computed for
all compositions at once with NumPy instead of one ``Composition`` at a time, which makes
featurizing 10^5 compositions take seconds. Columns, in order:

* 132 element-property statistics (``ElementProperty.from_preset("magpie")``: minimum,
  maximum, range, mean, avg_dev, mode of 22 properties);
* 6 stoichiometric p-norms (``Stoichiometry``);
* 4 valence-orbital fractions (``ValenceOrbital(props=["frac"])``);
* 3 ionic attributes (``IonProperty(fast=True)``).

Element property values that Magpie leaves missing are replaced by the mean over the
elements of the list (matminer would return NaN for the whole row).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from matdisco.data.composition import ELEMNET_ELEMENTS, encode_fractions

MAGPIE_PROPERTIES: tuple[str, ...] = (
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row",
    "CovalentRadius", "Electronegativity", "NsValence", "NpValence", "NdValence",
    "NfValence", "NValence", "NsUnfilled", "NpUnfilled", "NdUnfilled", "NfUnfilled",
    "NUnfilled", "GSvolume_pa", "GSbandgap", "GSmagmom", "SpaceGroupNumber",
)
MAGPIE_STATS: tuple[str, ...] = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")
P_NORMS: tuple[int, ...] = (0, 2, 3, 5, 7, 10)
#: Part of the feature cache key: raise it whenever :func:`magpie_from_fractions`
#: changes its output, so that no cache file of the old code is returned.
CACHE_VERSION = 2


def feature_names() -> list[str]:
    """Names of the 145 attributes, in column order (matminer's labels)."""
    names = [f"MagpieData {s} {p}" for p in MAGPIE_PROPERTIES for s in MAGPIE_STATS]
    names += [f"{p}-norm" for p in P_NORMS]
    names += [f"frac {o} valence electrons" for o in "spdf"]
    names += ["compound possible", "max ionic char", "avg ionic char"]
    return names


@lru_cache(maxsize=4)
def _element_tables(elements: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray,
                                                        list[list[int]]]:
    from matminer.utils.data import MagpieData, PymatgenData
    from pymatgen.core import Element

    magpie = MagpieData()
    props = np.array([[float(magpie.all_elemental_props[p].get(el, np.nan))
                       for p in MAGPIE_PROPERTIES] for el in elements], dtype=np.float64)
    col_mean = np.nanmean(props, axis=0)
    nan = np.isnan(props)
    props[nan] = np.take(col_mean, np.nonzero(nan)[1])
    pmg = PymatgenData()
    x = np.array([pmg.get_elemental_property(Element(el), "X") for el in elements], float)
    x = np.where(np.isnan(x), np.nanmean(x), x)
    oxi = [list(pmg.get_oxidation_states(Element(el))) for el in elements]
    return props, x, oxi


def _compound_possible(fr: np.ndarray, oxi: list[list[int]]) -> np.ndarray:
    out = np.zeros(len(fr), dtype=np.float64)
    cache: dict[tuple, float] = {}
    for r in range(len(fr)):
        idx = np.flatnonzero(fr[r])
        if len(idx) < 2:
            out[r] = 1.0
            continue
        f = fr[r, idx]
        key = (tuple(idx), tuple(np.round(f, 8)))
        if key in cache:
            out[r] = cache[key]
            continue
        lists = [oxi[i] for i in idx]
        ok = 0.0
        if all(lists):
            combos = np.array(list(itertools.product(*lists)), dtype=np.float64)
            ok = float((np.abs(combos @ f) < 1e-5).any())
        cache[key] = ok
        out[r] = ok
    return out


def magpie_from_fractions(fr: np.ndarray,
                          elements: Sequence[str] = ELEMNET_ELEMENTS) -> np.ndarray:
    """The 145 attributes from an element-fraction matrix (rows summing to one).

    Parameters
    ----------
    fr : ndarray of shape (n, len(elements))
        Element fractions.
    elements : sequence of str
        Column order of ``fr``.

    Returns
    -------
    ndarray of shape (n, 145), float32
    """
    props, x, oxi = _element_tables(tuple(elements))
    fr = np.asarray(fr, dtype=np.float64)
    present = fr > 0
    n = len(fr)
    cols: list[np.ndarray] = []
    maxf = fr.max(axis=1, keepdims=True)
    is_mode = present & np.isclose(fr, maxf)
    for j in range(props.shape[1]):
        p = props[:, j]
        mn = np.where(present, p, np.inf).min(axis=1)
        mx = np.where(present, p, -np.inf).max(axis=1)
        mean = fr @ p
        avg_dev = (fr * np.abs(p[None, :] - mean[:, None])).sum(axis=1)
        mode = np.where(is_mode, p, np.inf).min(axis=1)
        cols += [mn, mx, mx - mn, mean, avg_dev, mode]
    n_el = present.sum(axis=1).astype(np.float64)
    cols.append(n_el)
    for q in P_NORMS[1:]:
        cols.append((fr ** q).sum(axis=1) ** (1.0 / q))
    names = list(MAGPIE_PROPERTIES)
    total = fr @ props[:, names.index("NValence")]
    for orb in "spdf":
        avg = fr @ props[:, names.index(f"N{orb}Valence")]
        cols.append(np.divide(avg, total, out=np.zeros(n), where=total != 0))
    cols.append(_compound_possible(fr, oxi))
    xs_max = np.where(present, x, -np.inf).max(axis=1)
    xs_min = np.where(present, x, np.inf).min(axis=1)
    single = n_el < 2
    cols.append(np.where(single, 0.0, 1.0 - np.exp(-0.25 * (xs_max - xs_min) ** 2)))
    ion = 1.0 - np.exp(-0.25 * (x[:, None] - x[None, :]) ** 2)
    cols.append(0.5 * ((fr @ ion) * fr).sum(axis=1))
    return np.stack(cols, axis=1).astype(np.float32)


def _cache_dir() -> Path:
    return Path(os.environ.get("MATDISCO_CACHE", Path.home() / ".cache" / "matdisco"))


def magpie_features(formulas: Sequence[str], elements: Sequence[str] = ELEMNET_ELEMENTS,
                    cache: bool = True) -> np.ndarray:
    """The 145 Ward et al. attributes of a list of formulas (cached on disk).

    The cache key is a hash of the formulas, the element list, :data:`CACHE_VERSION`
    and the matminer version (whose element data the features use); the cache lives in
    ``$MATDISCO_CACHE`` (default ``~/.cache/matdisco``) as plain ``.npy`` files (never
    unpickled). An unreadable or malformed cache file is recomputed and replaced.
    """
    from importlib.metadata import version

    formulas = [str(f) for f in formulas]
    spec = {"formulas": formulas, "elements": list(elements), "version": CACHE_VERSION,
            "matminer": version("matminer")}
    key = hashlib.sha1(json.dumps(spec).encode()).hexdigest()
    path = _cache_dir() / "magpie" / f"{key}.npy"
    if cache and path.exists():
        try:
            arr = np.load(path, allow_pickle=False)
            if (arr.shape == (len(formulas), 145) and arr.dtype == np.float32
                    and np.isfinite(arr).all()):
                return arr
        except (OSError, ValueError, EOFError):  # EOFError: an empty (truncated) file
            pass
    arr = magpie_from_fractions(encode_fractions(formulas, elements), elements)
    if cache:
        from matdisco._io import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
    return arr
