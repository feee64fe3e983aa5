"""Stability analysis: known convex hulls, predicted distances, summaries, plots, holdouts.

Reference energies are formation enthalpies (eV/atom) per composition (e.g. OQMD).
Convex hulls are built per chemical system with pymatgen's :class:`PhaseDiagram`
(elements pinned at 0 eV/atom). A candidate's predicted distance to the known hull is
``predicted - E_hull(x)``; since ``E_hull <= 0`` everywhere, only candidates predicted
at or below ``-threshold`` can be ``threshold`` below the hull, which prunes the search.

Hull energies of many compositions are evaluated vectorized: the lower hull is convex,
so ``E_hull(x)`` is the maximum over the hull facets of their affine planes.
"""

from __future__ import annotations

import itertools
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matdisco import MatdiscoError
from matdisco._io import finite_column
from matdisco.data.composition import parse_formula
from matdisco.screening.enumerate import CompositionSpace

_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")
_SIMPLE = re.compile(r"(?:[A-Z][a-z]?\d+)+")


def load_references(data: str | os.PathLike[str] | pd.DataFrame, formula_col: str = "formula",
                    target_col: str = "target") -> pd.DataFrame:
    """Reference formation enthalpies, one row per reduced composition (lowest kept).

    Parameters
    ----------
    data : path (CSV/Parquet) or DataFrame
        Needs ``formula_col`` and ``target_col`` (eV/atom).

    Returns
    -------
    DataFrame with ``formula``, ``target``, ``system`` (``"Fe-O"``), ``key`` (reduced
    composition key), ``elements`` (tuple) and ``fractions`` (dict).
    """
    source = "references"
    if not isinstance(data, pd.DataFrame):
        path = Path(data)
        source = str(path)
        if not path.exists():
            raise MatdiscoError(f"{path}: reference file not found")
        try:
            df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise MatdiscoError(f"{path}: cannot read reference table ({exc})") from exc
    else:
        df = data
    missing = [c for c in (formula_col, target_col) if c not in df.columns]
    if missing:
        raise MatdiscoError(
            f"{source}: missing column(s) {missing} needed for reference energies; "
            f"found {list(df.columns)}"
        )
    if len(df) == 0:
        raise MatdiscoError(f"{source}: the reference table has no rows")
    y = finite_column(df, target_col, str(source))
    from pymatgen.core.periodic_table import Element

    rows = []
    valid: dict[str, bool] = {}
    for i, (f, e) in enumerate(zip(df[formula_col], y, strict=True)):
        amounts = None
        if isinstance(f, str) and _SIMPLE.fullmatch(f.strip()):
            amounts = parse_simple_formulas([f.strip()])[0]
            for el in amounts:
                if el not in valid:
                    valid[el] = Element.is_valid_symbol(el)
            if not all(valid[el] for el in amounts) or len(amounts) != len(
                    _TOKEN.findall(f.strip())) or not all(v > 0 for v in amounts.values()):
                amounts = None  # the full parser (drops zero amounts like pymatgen)
        if amounts is None:
            amounts = parse_formula(f, row=i, source=source, elements=None)
            unknown = [el for el in amounts if not Element.is_valid_symbol(el)]
            if unknown:
                raise MatdiscoError(f"{source}: row {i + 1}: formula {str(f)!r} contains unknown "
                                    f"element {unknown[0]!r}")
        tot = sum(amounts.values())
        els = tuple(sorted(amounts))
        key = " ".join(f"{el}{amounts[el] / tot:.6f}" for el in els)
        frac = {el: amounts[el] / tot for el in els}
        rows.append((str(f).strip(), float(e), "-".join(els), key, els, frac))
    out = pd.DataFrame(rows, columns=["formula", "target", "system", "key", "elements",
                                      "fractions"])
    out = out.sort_values("target", kind="stable").drop_duplicates("key").reset_index(drop=True)
    return out


def parse_simple_formulas(formulas: Iterable[str]) -> list[dict[str, float]]:
    """Fast parser for ``El<n>El<n>`` formulas (the enumerator's output)."""
    out = []
    for f in formulas:
        d: dict[str, float] = {}
        for el, n in _TOKEN.findall(f):
            d[el] = d.get(el, 0.0) + (float(n) if n else 1.0)
        out.append(d)
    return out


@dataclass
class _Hull:
    elements: tuple[str, ...]
    planes: np.ndarray  # (n_facets, d): coefficients of fractions of elements[1:], then b
    stable: list[tuple[str, np.ndarray, float]]  # (formula, fractions over elements, e/atom)


class ReferenceHulls:
    """Known convex hulls per chemical system from reference formation enthalpies.

    Parameters
    ----------
    references : DataFrame
        Output of :func:`load_references`.
    """

    def __init__(self, references: pd.DataFrame) -> None:
        self.references = references
        self._by_set: dict[frozenset[str], list[tuple[str, float]]] = defaultdict(list)
        by_fr: dict[frozenset[str], list[tuple[dict[str, float], float]]] = defaultdict(list)
        for f, e, els, fr in zip(references["formula"], references["target"],
                                 references["elements"], references["fractions"],
                                 strict=True):
            if len(els) > 1:  # elements are pinned at 0 eV/atom
                self._by_set[frozenset(els)].append((f, float(e)))
                by_fr[frozenset(els)].append((fr, float(e)))
        self._keys = set(references["key"])
        self._cache: dict[tuple[str, ...], _Hull] = {}
        self._planes: dict[tuple[str, ...], np.ndarray] = {}
        self._fr_by_set: dict[frozenset[str], tuple[list[dict[str, float]], np.ndarray]] = {}
        for s_, lst2 in by_fr.items():
            self._fr_by_set[s_] = ([fr for fr, _ in lst2], np.array([e for _, e in lst2]))

    def entries(self, system: Sequence[str]) -> list[Any]:
        """pymatgen ``PDEntry`` list of a system (subsystems included, elements at 0)."""
        from pymatgen.analysis.phase_diagram import PDEntry
        from pymatgen.core import Composition

        els = sorted(set(system))
        entries = [PDEntry(Composition(e), 0.0) for e in els]
        for k in range(2, len(els) + 1):
            for sub in itertools.combinations(els, k):
                for f, e in self._by_set.get(frozenset(sub), []):
                    c = Composition(f)
                    entries.append(PDEntry(c, e * c.num_atoms, name=f))
        return entries

    def phase_diagram(self, system: Sequence[str]) -> Any:
        """pymatgen ``PhaseDiagram`` of the known compounds of a system."""
        from pymatgen.analysis.phase_diagram import PhaseDiagram

        return PhaseDiagram(self.entries(system))

    def hull(self, system: Sequence[str]) -> _Hull:
        """Facet planes and stable compounds of a system (cached)."""
        key = tuple(sorted(set(system)))
        if key not in self._cache:
            pd_ = self.phase_diagram(key)
            self._cache[key] = _hull_from_pd(pd_, key)
        return self._cache[key]

    def planes(self, system: Sequence[str]) -> np.ndarray:
        """Lower-hull facet planes of a system, ``E = p[:-1] . x[1:] + p[-1]`` over the
        sorted elements (scipy Qhull directly; pymatgen as the fallback)."""
        key = tuple(sorted(set(system)))
        if key in self._planes:
            return self._planes[key]
        d = len(key)
        pts = [np.eye(d)]
        es = [np.zeros(d)]
        for k in range(2, d + 1):
            for sub in itertools.combinations(key, k):
                got = self._fr_by_set.get(frozenset(sub))
                if got is None:
                    continue
                frs, e = got
                pts.append(np.array([[fr.get(el, 0.0) for el in key] for fr in frs]))
                es.append(e)
        X = np.concatenate(pts)
        E = np.concatenate(es)
        planes: np.ndarray | None
        if (E >= 0).all():
            planes = np.zeros((1, d))
        else:
            planes = self._qhull_planes(X, E)
            if planes is None:
                planes = self.hull(key).planes
        self._planes[key] = planes
        return planes

    @staticmethod
    def _qhull_planes(X: np.ndarray, E: np.ndarray) -> np.ndarray | None:
        from scipy.spatial import ConvexHull, QhullError

        keep = E <= 0  # points above 0 can never be on the lower hull (elements are 0)
        pts = np.concatenate([X[keep, 1:], E[keep, None]], axis=1)
        try:
            hull = ConvexHull(pts)
        except (QhullError, ValueError):
            return None
        eq = hull.equations  # n_x . x + n_e * E + c = 0, outward normals
        lower = eq[:, -2] < -1e-9
        eq = eq[lower]
        # E = -(n_x . x + c) / n_e
        return np.concatenate([-eq[:, :-2] / eq[:, -2:-1], -eq[:, -1:] / eq[:, -2:-1]],
                              axis=1)

    def hull_energy(self, system: Sequence[str], fr: np.ndarray) -> np.ndarray:
        """Known hull energy (eV/atom) at fractions ``fr`` (n, len(system)) over the
        sorted elements of ``system``."""
        planes = self.planes(system)
        fr = np.asarray(fr, dtype=float)
        x = np.concatenate([fr[:, 1:], np.ones((len(fr), 1))], axis=1)
        return (x @ planes.T).max(axis=1)

    def is_known(self, key: str) -> bool:
        """Whether a reduced composition key is in the references."""
        return key in self._keys


def _hull_from_pd(pd_: Any, system: tuple[str, ...]) -> _Hull:
    order = [str(e) for e in pd_.elements]
    data = np.asarray(pd_.qhull_data, dtype=float)
    planes = []
    for facet in pd_.facets:
        v = data[np.asarray(facet)]
        A = np.concatenate([v[:, :-1], np.ones((len(v), 1))], axis=1)
        try:
            coef = np.linalg.solve(A, v[:, -1])
        except np.linalg.LinAlgError:
            continue
        planes.append(coef)
    planes_arr = np.array(planes).reshape(-1, len(order))
    # re-express in the sorted element order of ``system``: x_pd[j] = x_sys[perm[j]]
    perm = [system.index(e) for e in order]
    full = np.zeros((len(planes_arr), len(system) + 1))
    # energy = sum_{j>=1} c_j x_pd[j] + b ; with x_pd[0] = 1 - sum others
    for j in range(1, len(order)):
        full[:, perm[j]] += planes_arr[:, j - 1]
    full[:, -1] = planes_arr[:, -1]
    # now energy = sum_i full[i] x_sys[i] + b; eliminate x_sys[0] = 1 - sum_{i>0} x_sys[i]
    coef0 = full[:, 0].copy()
    out = np.concatenate([full[:, 1:-1] - coef0[:, None], (full[:, -1] + coef0)[:, None]],
                         axis=1)
    stable = []
    for e in pd_.stable_entries:
        comp = e.composition
        frv = np.array([comp.get_atomic_fraction(el) for el in system])
        stable.append((comp.reduced_formula, frv, float(pd_.get_form_energy_per_atom(e))))
    return _Hull(system, out, stable)


def hull_distances(candidates: pd.DataFrame, hulls: ReferenceHulls,
                   threshold: float = 0.2, prefilter: bool = True) -> pd.DataFrame:
    """Predicted distance of candidates to the known hull, keeping those ``threshold`` below.

    Parameters
    ----------
    candidates : DataFrame
        ``formula`` and ``predicted`` (eV/atom) columns, optionally ``spread``.
    hulls : ReferenceHulls
        The known hulls.
    threshold : float
        Keep candidates with ``predicted - E_hull <= -threshold``; ``None``-like
        ``float('inf')`` keeps all.
    prefilter : bool
        Skip candidates predicted above ``-threshold`` (they cannot qualify).

    Returns
    -------
    DataFrame sorted by distance with ``formula``, ``system``, ``arity``, ``predicted``,
    ``hull_energy``, ``distance``, ``known`` (composition present in the references),
    ``reduced_formula`` (pymatgen's, e.g. ``NiFeO3`` for ``O3Fe1Ni1``) and ``spread``
    when given.
    """
    for col in ("formula", "predicted"):
        if col not in candidates.columns:
            raise MatdiscoError(f"candidates: missing column {col!r}")
    df = candidates
    if prefilter and np.isfinite(threshold):
        df = df[df["predicted"].to_numpy() <= -threshold]
    parsed = parse_simple_formulas(df["formula"])
    systems = ["-".join(sorted(d)) for d in parsed]
    df = df.assign(system=systems, arity=[len(d) for d in parsed])
    df = df[df["arity"] > 1]
    parsed = [p for p, a in zip(parsed, [len(d) for d in parsed], strict=True) if a > 1]
    hull_e = np.empty(len(df))
    keys = []
    pos = defaultdict(list)
    for i, s in enumerate(df["system"]):
        pos[s].append(i)
    for s, idx in pos.items():
        els = tuple(s.split("-"))
        fr = np.zeros((len(idx), len(els)))
        for r, i in enumerate(idx):
            d = parsed[i]
            tot = sum(d.values())
            for j, el in enumerate(els):
                fr[r, j] = d[el] / tot
        hull_e[idx] = hulls.hull_energy(els, fr)
    for d in parsed:
        tot = sum(d.values())
        keys.append(" ".join(f"{el}{d[el] / tot:.6f}" for el in sorted(d)))
    out = df.assign(hull_energy=hull_e, distance=df["predicted"].to_numpy() - hull_e,
                    known=[hulls.is_known(k) for k in keys])
    out = out[out["distance"] <= -threshold] if np.isfinite(threshold) else out
    out = out.assign(reduced_formula=readable_formulas(out["formula"]))
    return out.sort_values("distance", kind="stable").reset_index(drop=True)


def readable_formulas(formulas: Iterable[str]) -> list[str]:
    """pymatgen's reduced formulas (``NiFeO3``) of the enumerator's ``O3Fe1Ni1`` strings."""
    from pymatgen.core import Composition

    return [Composition(d).reduced_formula for d in parse_simple_formulas(formulas)]


def summarize(stable: pd.DataFrame, top: int = 3) -> tuple[pd.DataFrame, dict[str, int]]:
    """Counts per chemical system with its most stable examples (ElemNet Table 3.3 style).

    Returns
    -------
    per_system : DataFrame
        ``system``, ``arity``, ``n_candidates``, ``best_distance``, ``examples``.
    totals : dict
        Candidate counts for ``binary``, ``ternary``, ``quaternary`` (and ``other``).
    """
    names = {2: "binary", 3: "ternary", 4: "quaternary"}
    totals = {"binary": 0, "ternary": 0, "quaternary": 0, "other": 0}
    for a, n in stable.groupby("arity").size().items():
        totals[names.get(int(a), "other")] += int(n)
    rows = []
    for s, g in stable.groupby("system", sort=False):
        g = g.sort_values("distance")
        names = g["reduced_formula"] if "reduced_formula" in g else g["formula"]
        ex = ", ".join(f"{f} ({d:.3f})" for f, d in zip(names[:top], g["distance"][:top],
                                                         strict=True))
        rows.append({"system": s, "arity": int(g["arity"].iloc[0]),
                     "n_candidates": len(g), "best_distance": float(g["distance"].iloc[0]),
                     "examples": ex})
    per = pd.DataFrame(rows, columns=["system", "arity", "n_candidates", "best_distance",
                                      "examples"])
    per = per.sort_values(["arity", "n_candidates", "best_distance"],
                          ascending=[True, False, True]).reset_index(drop=True)
    return per, totals


def analyse_screen(out: str | os.PathLike[str], references: pd.DataFrame | str | os.PathLike,
                   threshold: float = 0.2, top: int = 3,
                   batch_rows: int = 2_000_000) -> tuple[pd.DataFrame, pd.DataFrame,
                                                         dict[str, int]]:
    """Hull analysis of a screening output folder, streaming its Parquet parts.

    Returns ``(stable_candidates, per_system_summary, totals)``. An unfinished output,
    or one written with a ``keep_below`` that dropped candidates, gives a
    :class:`UserWarning` (:func:`screen_warnings`).
    """
    from matdisco.screening.run import read_manifest

    _check_threshold(threshold, top)
    manifest = read_manifest(out)
    for w in screen_warnings(manifest, threshold):
        warnings.warn(w, UserWarning, stacklevel=2)
    return _analyse(out, manifest, references, threshold, top, batch_rows)


def _check_threshold(threshold: float, top: int) -> None:
    if np.isnan(threshold):
        raise MatdiscoError("threshold must be a number, got NaN")
    if not np.isfinite(threshold):
        raise MatdiscoError(f"threshold must be a finite number (eV/atom), got {threshold}")
    if top < 0:
        raise MatdiscoError(f"top must be >= 0, got {top}")


def _analyse(out: str | os.PathLike[str], manifest: dict[str, Any],
             references: pd.DataFrame | str | os.PathLike, threshold: float, top: int,
             batch_rows: int = 2_000_000
             ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """:func:`analyse_screen` of an output whose manifest has been read."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from matdisco.screening.run import open_results

    refs = references if isinstance(references, pd.DataFrame) else load_references(references)
    hulls = ReferenceHulls(refs)
    ds = open_results(out, manifest)
    parts = []
    try:
        for batch in ds.to_batches(columns=["formula", "predicted", "spread"],
                                   filter=pc.field("predicted") <= -threshold,
                                   batch_size=batch_rows):
            if batch.num_rows:
                parts.append(hull_distances(batch.to_pandas(), hulls, threshold))
    except (pa.ArrowException, OSError) as exc:
        raise MatdiscoError(
            f"{out}: unreadable part file ({exc}); run the same `screen run` again to "
            "recompute damaged chunks"
        ) from exc
    stable = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({
        "formula": pd.Series(dtype=object), "predicted": pd.Series(dtype=np.float32),
        "spread": pd.Series(dtype=np.float32), "system": pd.Series(dtype=object),
        "arity": pd.Series(dtype=np.int64), "hull_energy": pd.Series(dtype=float),
        "distance": pd.Series(dtype=float), "known": pd.Series(dtype=bool),
        "reduced_formula": pd.Series(dtype=object)})
    stable = stable.sort_values("distance", kind="stable").reset_index(drop=True)
    per, totals = summarize(stable, top)
    return stable, per, totals


def screen_warnings(manifest: dict[str, Any], threshold: float) -> list[str]:
    """Why a hull analysis of a screening output at ``threshold`` would be incomplete.

    An unfinished scan holds only some chunks; a scan written with ``keep_below`` above
    ``-threshold`` dropped rows that could still lie ``threshold`` below the hull.
    """
    out = []
    done, total = len(manifest.get("completed", {})), manifest.get("n_chunks")
    if isinstance(total, int) and done < total:
        out.append(f"the screening output is unfinished ({done}/{total} chunks); counts "
                   "cover the completed chunks only (run the same `screen run` to finish)")
    kb = manifest.get("keep_below")
    if isinstance(kb, (int, float)) and kb < -threshold:
        out.append(f"the screening output kept only rows predicted <= {kb:g} eV/atom, so "
                   f"candidates predicted between {kb:g} and {-threshold:g} are missing; "
                   f"use a threshold >= {-kb:g} or screen again without --keep-below")
    return out


# --------------------------------------------------------------------------- grids, holdout
def system_grid(system: Sequence[str] | str, max_atoms: int,
                columns: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every reduced composition of a system (subsystems and elements included).

    Returns formulas, fractions over ``columns`` and fractions over the sorted system
    elements.
    """
    from matdisco.data.splits import parse_system

    els = sorted(parse_system(system))
    lacking = [e for e in els if e not in set(columns)]
    if lacking:
        raise MatdiscoError(f"system {'-'.join(els)}: the model's element list "
                            f"({len(columns)} elements) lacks {lacking}")
    space = CompositionSpace(elements=els, arities=len(els), max_atoms=max_atoms,
                             universe=tuple(columns), chunk_size=10**9)
    formulas = space.formulas(0, len(space)).to_pylist()
    fr = space.fractions(0, len(space), columns)
    cols = [list(columns).index(e) for e in els]
    return formulas, fr, fr[:, cols].astype(float)


def predicted_hull(els: Sequence[str], fr_sys: np.ndarray, energies: np.ndarray,
                   formulas: Sequence[str]) -> Any:
    """pymatgen ``PhaseDiagram`` of predicted energies on a grid (elements at 0)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    entries = [PDEntry(Composition(e), 0.0) for e in els]
    for f, x, e in zip(formulas, fr_sys, energies, strict=True):
        if (x > 0).sum() > 1:
            c = Composition(f)
            entries.append(PDEntry(c, float(e) * c.num_atoms, name=f))
    return PhaseDiagram(entries)


def spurious_stable(model: Any, hulls: ReferenceHulls, system: Sequence[str] | str,
                    max_atoms: int | None = None, tol: float = 0.05,
                    margin: float = 0.0) -> dict[str, Any]:
    """Count predicted-stable compounds with no known hull compound nearby.

    A compound is *predicted stable* when it lies on the hull of the model's predictions
    over a dense grid of the system; it is *spurious* when no compound on the known hull
    (elements excluded) lies within ``tol`` of it in atomic fraction (max-norm).
    With ``margin > 0`` a grid point only counts as predicted stable when it lies at least
    ``margin`` eV/atom below the hull of all the other predicted points (a smooth convex
    prediction otherwise puts every grid point on the hull by an infinitesimal amount).

    Returns a dict with ``n_spurious``, ``n_predicted_stable``, ``n_known_stable``,
    ``spurious`` (formulas), ``predicted_stable`` and ``known_stable`` (formulas).
    """
    from matdisco.data.splits import parse_system
    from matdisco.screening.models import load_model

    if not (np.isfinite(tol) and tol >= 0):
        raise MatdiscoError(f"tol must be a finite fraction >= 0, got {tol}")
    if not (np.isfinite(margin) and margin >= 0):
        raise MatdiscoError(f"margin must be a finite energy >= 0 (eV/atom), got {margin}")
    els = sorted(parse_system(system))
    if len(els) < 2:
        raise MatdiscoError(f"holdout system {'-'.join(els)!r}: needs at least two elements "
                            "(an element alone has no compounds)")
    model = load_model(model)
    if max_atoms is None:
        max_atoms = {2: 24, 3: 16}.get(len(els), 12)
    formulas, fr, fr_sys = system_grid(els, max_atoms, model.elements)
    pred = np.asarray(model.predict_fractions(fr)[0], dtype=float)
    pd_pred = predicted_hull(els, fr_sys, pred, formulas)
    known = [(f, x) for f, x, _ in hulls.hull(els).stable if (x > 0).sum() > 1]
    pstable = []
    for e in pd_pred.stable_entries:
        x = np.array([e.composition.get_atomic_fraction(el) for el in els])
        if (x > 0).sum() > 1:
            pstable.append((e.composition.reduced_formula, x))
    if margin > 0 and pstable:
        pts = np.concatenate([np.eye(len(els)), fr_sys])
        es = np.concatenate([np.zeros(len(els)), pred])
        kept = []
        for f, x in pstable:
            i = int(np.argmin(np.abs(pts - x).max(axis=1)))
            others = np.ones(len(pts), dtype=bool)
            others[i] = False
            planes = ReferenceHulls._qhull_planes(pts[others], es[others])
            if planes is None:
                kept.append((f, x))
                continue
            e_hull = (np.append(x[1:], 1.0) @ planes.T).max()
            if es[i] <= e_hull - margin:
                kept.append((f, x))
        pstable = kept
    spurious = [f for f, x in pstable
                if not any(np.abs(x - kx).max() <= tol + 1e-9 for _, kx in known)]
    return {"system": "-".join(els), "n_spurious": len(spurious),
            "n_predicted_stable": len(pstable), "n_known_stable": len(known),
            "spurious": spurious, "predicted_stable": [f for f, _ in pstable],
            "known_stable": [f for f, _ in known], "grid_size": len(formulas),
            "max_atoms": max_atoms, "tol": tol, "margin": margin}


# --------------------------------------------------------------------------- plots
def plot_phase_diagram(system: Sequence[str] | str, hulls: ReferenceHulls,
                       models: dict[str, Any], max_atoms: int | None = None) -> Any:
    """Known hull and the hulls predicted by each model (ElemNet Figure 3.5 style).

    Binary systems: formation enthalpy vs fraction of the second element, known compounds
    and hull, each model's predictions and predicted hull. Ternary systems: a Gibbs
    triangle with the known stable compounds and each model's predicted stable points.

    Returns a matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matdisco.data.splits import parse_system
    from matdisco.screening.models import load_model

    els = sorted(parse_system(system))
    if len(els) not in (2, 3):
        raise MatdiscoError(f"phase-diagram plots need a binary or ternary system, got {els}")
    if max_atoms is None:
        max_atoms = 24 if len(els) == 2 else 16
    kh = hulls.hull(els)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(6.5, 5))
    if len(els) == 2:
        refs = hulls.entries(els)
        xs = [e.composition.get_atomic_fraction(els[1]) for e in refs]
        es = [e.energy_per_atom for e in refs]
        ax.scatter(xs, es, marker="s", color="k", s=18, label="known compounds", zorder=3)
        st = sorted((x[1], e) for _, x, e in kh.stable)
        ax.plot([p[0] for p in st], [p[1] for p in st], "k-", lw=2, label="known hull")
        for i, (name, spec) in enumerate(models.items()):
            m = load_model(spec)
            formulas, fr, fr_sys = system_grid(els, max_atoms, m.elements)
            pred = np.asarray(m.predict_fractions(fr)[0], dtype=float)
            c = colors[i % len(colors)]
            ax.scatter(fr_sys[:, 1], pred, s=8, color=c, alpha=0.5)
            pdp = predicted_hull(els, fr_sys, pred, formulas)
            pts = sorted((e.composition.get_atomic_fraction(els[1]),
                          pdp.get_form_energy_per_atom(e)) for e in pdp.stable_entries)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "--o", color=c, ms=4,
                    label=f"{name} predicted hull")
        ax.set_xlabel(f"fraction of {els[1]} in {els[0]}$_{{1-x}}${els[1]}$_x$")
        ax.set_ylabel("formation enthalpy (eV/atom)")
        ax.axhline(0, color="0.7", lw=0.8)
    else:
        def tri(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = np.atleast_2d(x)
            return x[:, 1] + 0.5 * x[:, 2], (np.sqrt(3) / 2) * x[:, 2]

        corners = np.eye(3)
        cx, cy = tri(np.vstack([corners, corners[:1]]))
        ax.plot(cx, cy, "k-", lw=1)
        for j, e in enumerate(els):
            px, py = tri(corners[j])
            ax.annotate(e, (px[0], py[0]), textcoords="offset points",
                        xytext=(0, 6 if j == 2 else -14), ha="center")
        kx = np.array([x for _, x, _ in kh.stable])
        px, py = tri(kx)
        ax.scatter(px, py, marker="s", s=40, color="k", label="known hull", zorder=3)
        for i, (name, spec) in enumerate(models.items()):
            m = load_model(spec)
            formulas, fr, fr_sys = system_grid(els, max_atoms, m.elements)
            pred = np.asarray(m.predict_fractions(fr)[0], dtype=float)
            pdp = predicted_hull(els, fr_sys, pred, formulas)
            sx = np.array([[e.composition.get_atomic_fraction(el) for el in els]
                           for e in pdp.stable_entries])
            qx, qy = tri(sx)
            ax.scatter(qx, qy, s=18, color=colors[i % len(colors)], alpha=0.8,
                       label=f"{name} predicted stable")
        ax.set_aspect("equal")
        ax.axis("off")
    ax.set_title("-".join(els) + ": known and predicted convex hulls")
    ax.legend(fontsize=8, loc="best")
    return fig


def hull_report(results: str | os.PathLike[str],
                references: pd.DataFrame | str | os.PathLike[str],
                out: str | os.PathLike[str], threshold: float = 0.2, top: int = 3
                ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Write the hull analysis of a screening output (the ``screen hull`` command).

    Writes ``candidates.parquet`` (every candidate predicted at least ``threshold`` eV/atom
    below the known hull), ``summary.csv`` (one row per chemical system, with ``top``
    examples) and ``summary.json`` (totals, and whether the output was complete: an
    unfinished scan or a ``keep_below`` that dropped candidates is recorded under
    ``warnings``) into ``out``, each file atomically.

    Returns ``(candidates, per_system, summary)``.
    """
    from matdisco._io import write_json, write_table
    from matdisco.screening.run import read_manifest

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MatdiscoError(f"--out {out} is a file; give a folder")
    for name in ("candidates.parquet", "summary.csv", "summary.json"):
        if (out / name).is_dir():
            raise MatdiscoError(f"--out {out}: {out / name} is a folder")
    _check_threshold(threshold, top)
    manifest = read_manifest(results)
    notes = screen_warnings(manifest, threshold)  # returned, and kept in summary.json
    stable, per, totals = _analyse(results, manifest, references, threshold, top)
    summary = {"threshold": threshold, "totals": totals, "n_systems": len(per),
               "n_candidates": len(stable), "results": str(Path(results).resolve()),
               "chunks_completed": len(manifest["completed"]),
               "n_chunks": manifest["n_chunks"], "keep_below": manifest.get("keep_below"),
               "complete": not notes, "warnings": notes}
    write_table(out / "candidates.parquet", stable)
    write_table(out / "summary.csv", per)
    write_json(out / "summary.json", summary)
    return stable, per, summary
