"""Composition-space enumeration: exact counts vs brute force, determinism, filters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from matdisco import MatdiscoError
from matdisco.screening import (
    CompositionSpace,
    brute_force_compositions,
    count_ratios,
    expand_elements,
    ratio_patterns,
)


def _as_set(space: CompositionSpace) -> list[tuple[tuple[str, int], ...]]:
    elems, amts = space.indices(0, len(space))
    out = []
    for e, a in zip(elems, amts, strict=True):
        out.append(tuple(sorted((space.allowed[i], int(n)) for i, n in zip(e, a, strict=True)
                                if i >= 0)))
    return out


@pytest.mark.parametrize(("els", "arities", "max_atoms", "must"), [
    (["Fe", "O", "Ni", "Ti", "Na"], 4, 7, ()),
    (["Fe", "O", "Ni", "Ti", "Na", "Cu"], [2, 3], 9, ()),
    (["Fe", "O", "Ni", "Ti", "Na", "Cu"], 4, 6, ("O",)),
    (["Li", "O", "Co"], 3, 12, ("O", "Li")),
])
def test_count_and_enumeration_match_brute_force(els, arities, max_atoms, must):
    space = CompositionSpace(elements=els, arities=arities, max_atoms=max_atoms,
                             must_contain=list(must), chunk_size=17)
    ar = list(range(1, arities + 1)) if isinstance(arities, int) else arities
    brute = brute_force_compositions(space.allowed, ar, max_atoms, must)
    listed = _as_set(space)
    assert len(space) == len(brute)  # exact count without enumeration
    assert len(set(listed)) == len(listed)  # each reduced ratio once
    assert set(listed) == brute
    for comp in listed:
        assert math.gcd(*[n for _, n in comp]) == 1


def test_ratio_counts_and_full_space_size():
    for k in range(1, 5):
        for n in range(k, 13):
            assert count_ratios(k, n) == len(ratio_patterns(k, n))
    # the ElemNet study's space: ~450 million compositions of 86 elements
    assert len(CompositionSpace()) == 446_597_226
    assert count_ratios(4, 10) == 205


def test_chunks_cover_space_and_are_deterministic():
    space = CompositionSpace(elements="3d O", must_contain="O", arities=3, max_atoms=8,
                             chunk_size=100)
    assert set(space.allowed) == set(expand_elements("3d")) | {"O"}
    ids = []
    for ch in space.chunks():
        f = space.formulas(ch.start, ch.stop).to_pylist()
        ids.extend(f)
    assert len(ids) == len(space) == len(set(ids))
    again = CompositionSpace(elements="3d O", must_contain="O", arities=3, max_atoms=8,
                             chunk_size=100)
    assert again.formulas(250, 260).to_pylist() == ids[250:260]
    assert all("O" in f for f in ids)
    # arbitrary rows equal contiguous rows
    rows = np.array([5, 3, 270, 0])
    e1, a1 = space.indices_at(rows)
    for r, e, a in zip(rows, e1, a1, strict=True):
        e2, a2 = space.indices(int(r), int(r) + 1)
        assert (e2[0] == e).all() and (a2[0] == a).all()


def test_fractions_and_formulas_agree():
    from matdisco.data import ELEMNET_ELEMENTS, encode_fractions

    space = CompositionSpace(elements=["Fe", "O", "Al", "Na"], arities=4, max_atoms=6)
    fr = space.fractions(0, len(space), ELEMNET_ELEMENTS)
    ref = encode_fractions(space.formulas(0, len(space)).to_pylist())
    np.testing.assert_allclose(fr, ref, atol=1e-6)
    np.testing.assert_allclose(fr.sum(1), 1, atol=1e-6)


@pytest.mark.parametrize("kwargs", [
    {"elements": ["Fe", "Xx"]},
    {"exclude": ["Qq"]},
    {"arities": 0},
    {"arities": 9},
    {"max_atoms": 0},
    {"max_atoms": 500},
    {"arities": 4, "max_atoms": 3},
    {"elements": ["Fe", "O"], "must_contain": ["Ni"]},
    {"elements": ["He"]},  # not in the 86-element universe
    {"chunk_size": 0},
])
def test_bad_input(kwargs):
    with pytest.raises(MatdiscoError):
        CompositionSpace(**kwargs)


def test_model_element_mismatch():
    space = CompositionSpace(elements=["Fe", "O"], arities=2, max_atoms=4)
    with pytest.raises(MatdiscoError, match="lacks"):
        space.fractions(0, 3, columns=["Fe", "Ni"])
