"""Knowledge distillation: teach a fast network what a slower, more accurate one predicts.

An accurate model (e.g. the element-attention network ``roost``) may be too slow to screen
hundreds of millions of compositions, while a plain network on element fractions (ElemNet)
is fast but overfits its training set. Distillation trains the fast *student* on its real
training rows plus many *synthetic* compositions labelled by the *teacher*, which fills the
composition space between the training rows with a smooth target (Bucilua, Caruana &
Niculescu-Mizil 2006, "Model compression").

The synthetic compositions are analogues of the training compositions: one or two of their
elements replaced by a neighbour in the periodic table (same group, adjacent period), the
stoichiometry kept, as in prototype decoration. Compositions already in the training data,
and any in the leave-out chemical systems, are never generated.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from matdisco import MatdiscoError


@lru_cache(maxsize=8)
def _neighbours(elements: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """For each element, the indices of its group neighbours in adjacent periods."""
    from pymatgen.core import Element

    info = [(Element(s).group, Element(s).row) for s in elements]
    return tuple(
        tuple(j for j, (g2, r2) in enumerate(info) if j != i and g2 == g and abs(r2 - r) <= 1)
        for i, (g, r) in enumerate(info)
    )


def _keys(fr: np.ndarray) -> np.ndarray:
    """Hashable row keys of fraction vectors (rounded, so equal compositions match)."""
    q = np.round(np.asarray(fr, dtype=np.float64) * 1e6).astype(np.int64)
    return np.array([r.tobytes() for r in q], dtype=object)


def substitute_compositions(fractions: np.ndarray, elements: Sequence[str], n: int,
                            seed: int = 0, max_substitutions: int = 2,
                            exclude_systems: Sequence[str] = ()) -> np.ndarray:
    """Composition analogues of ``fractions`` by neighbour-element substitution.

    Parameters
    ----------
    fractions : array of shape (m, len(elements))
        Element fractions of the training compositions (rows sum to 1).
    elements : sequence of str
        The element of each column.
    n : int
        Number of new compositions wanted (fewer are returned only if the neighbourhood
        of the training set is exhausted).
    seed : int
        Random seed.
    max_substitutions : int
        Each analogue replaces between 1 and this many elements of its parent.
    exclude_systems : sequence of str
        Chemical systems (``"Ti-O"``) whose compounds must not be generated (holdouts).

    Returns
    -------
    array of shape (<= n, len(elements))
        Distinct fraction vectors, none equal to a training composition.
    """
    fr = np.asarray(fractions, dtype=np.float32)
    if fr.ndim != 2 or fr.shape[1] != len(elements) or len(fr) == 0:
        raise MatdiscoError(f"fractions must have shape (m > 0, {len(elements)}), got "
                            f"{fr.shape}")
    if n < 1:
        raise MatdiscoError(f"the number of synthetic compositions must be >= 1, got {n}")
    nb = _neighbours(tuple(elements))
    col = {e: i for i, e in enumerate(elements)}
    excluded = []
    for system in exclude_systems:
        try:
            excluded.append([col[e] for e in system.split("-")])
        except KeyError as exc:
            raise MatdiscoError(f"unknown element {exc} in system {system!r}") from None
    rng = np.random.default_rng(seed)
    seen = set(_keys(fr))
    out: list[np.ndarray] = []
    for _ in range(50):                      # rounds; each draws a batch of parents
        need = n - len(out)
        if need <= 0:
            break
        parents = fr[rng.integers(0, len(fr), size=2 * need)]
        cand = parents.copy()
        for row in cand:
            present = np.flatnonzero(row > 0)
            n_sub = min(len(present), int(rng.integers(1, max_substitutions + 1)))
            for i in rng.choice(present, size=n_sub, replace=False):  # distinct elements
                free = [j for j in nb[int(i)] if row[j] == 0]
                if free:
                    j = int(rng.choice(free))
                    row[j], row[i] = row[i], 0.0
        ok = np.ones(len(cand), dtype=bool)
        for cols in excluded:
            outside = np.ones(cand.shape[1], dtype=bool)
            outside[cols] = False
            ok &= cand[:, outside].sum(axis=1) > 0   # not a subset of the system
        for row, key, good in zip(cand, _keys(cand), ok, strict=True):
            if good and key not in seen:
                seen.add(key)
                out.append(row)
                if len(out) == n:
                    break
    return np.asarray(out, dtype=np.float32).reshape(-1, fr.shape[1])


def fraction_formulas(fractions: np.ndarray, elements: Sequence[str]) -> list[str]:
    """Formulas such as ``Fe0.4O0.6`` for fraction vectors (parseable by pymatgen)."""
    out = []
    for row in np.asarray(fractions):
        nz = np.flatnonzero(row > 0)
        out.append("".join(f"{elements[int(j)]}{row[j]:.6g}" for j in nz))
    return out
