"""Train/test splits: k-fold, fixed files, and leave-chemical-system-out holdouts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from matdisco import MatdiscoError
from matdisco.data.composition import parse_formula


def kfold_indices(n: int, k: int = 10, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random k-fold splits as ``[(train_idx, test_idx), ...]``."""
    if k < 2 or k > n:
        raise MatdiscoError(f"k-fold needs 2 <= k <= n rows, got k={k}, n={n}")
    perm = np.random.default_rng(seed).permutation(n)
    folds = np.array_split(perm, k)
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1:])), np.sort(folds[i]))
            for i in range(k)]


def parse_system(system: str | Sequence[str]) -> frozenset[str]:
    """``"Ti-O"`` or ``["Ti", "O"]`` -> ``{"Ti", "O"}``, validating the symbols."""
    from pymatgen.core.periodic_table import Element

    items = system.replace(",", "-").split("-") if isinstance(system, str) else list(system)
    out = set()
    for s in items:
        s = s.strip()
        if not s:
            continue
        if not Element.is_valid_symbol(s):
            raise MatdiscoError(f"holdout system {system!r}: {s!r} is not an element symbol")
        out.add(s)
    if not out:
        raise MatdiscoError(f"holdout system {system!r} names no element")
    return frozenset(out)


def in_system_mask(formulas: Iterable[str], system: str | Sequence[str]) -> np.ndarray:
    """True for every compound whose elements are a subset of ``system``.

    ``in_system_mask(f, "Ti-O")`` selects Ti, O, TiO2, Ti2O3, ... (the leave-chemical-
    system-out holdout of the ElemNet study).
    """
    els = parse_system(system)
    return np.array([set(parse_formula(f, elements=None)) <= els for f in formulas], dtype=bool)


def holdout_split(formulas: Sequence[str], systems: Iterable[str]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with every compound of any of ``systems`` in test."""
    mask = np.zeros(len(formulas), dtype=bool)
    for s in systems:
        mask |= in_system_mask(formulas, s)
    if not mask.any():
        raise MatdiscoError(f"no compound of {list(systems)} in the data")
    return np.flatnonzero(~mask), np.flatnonzero(mask)
