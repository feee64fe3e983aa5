"""The 145 attributes against matminer's own featurizers."""

from __future__ import annotations

import numpy as np

from matdisco.data import encode_fractions
from matdisco.featurize import MagpieAttributes, feature_names, magpie_features


def test_magpie_matches_matminer() -> None:
    from matminer.featurizers.base import MultipleFeaturizer
    from matminer.featurizers.composition import (
        ElementProperty,
        IonProperty,
        Stoichiometry,
        ValenceOrbital,
    )
    from pymatgen.core import Composition

    formulas = ["Fe2O3", "NaCl", "Li0.5Fe0.5O", "Al2MgO4", "La1Pb1Re2", "CuZnSnS4", "Sr1Ti5"]
    mine = magpie_features(formulas, cache=False)
    mf = MultipleFeaturizer([ElementProperty.from_preset("magpie"), Stoichiometry(),
                             ValenceOrbital(props=["frac"]), IonProperty(fast=True)])
    ref = np.array([mf.featurize(Composition(f)) for f in formulas], dtype=float)
    assert mine.shape == (len(formulas), 145) == ref.shape
    assert len(feature_names()) == 145
    np.testing.assert_allclose(mine, ref, rtol=1e-4, atol=1e-5)


def test_cache_roundtrip() -> None:
    a = magpie_features(["Fe2O3", "NaCl"])
    b = magpie_features(["Fe2O3", "NaCl"])
    np.testing.assert_array_equal(a, b)
    f = MagpieAttributes()
    np.testing.assert_allclose(f.from_fractions(encode_fractions(["Fe2O3", "NaCl"])), a,
                               rtol=1e-6)


def _cache_files() -> list:
    import os
    from pathlib import Path

    return sorted((Path(os.environ["MATDISCO_CACHE"]) / "magpie").glob("*.npy"))


def test_cache_is_keyed_by_elements_and_version(monkeypatch) -> None:
    from matdisco.featurize import magpie

    forms = ["Fe2O3", "NaCl", "MgO"]
    before = set(_cache_files())
    a = magpie_features(forms)
    new = set(_cache_files()) - before
    assert len(new) == 1
    # another element list (its mean fills missing Magpie values): another file
    b = magpie_features(forms, elements=("O", "Na", "Cl", "Fe", "Mg", "Xe"))
    assert len(set(_cache_files()) - before) == 2
    np.testing.assert_allclose(a, b, rtol=1e-6)  # no missing Magpie value here
    # a new featurizer version cannot read the old file
    monkeypatch.setattr(magpie, "CACHE_VERSION", magpie.CACHE_VERSION + 1)
    magpie_features(forms)
    assert len(set(_cache_files()) - before) == 3


def test_corrupt_cache_file_is_recomputed() -> None:
    forms = ["Al2O3", "KBr"]
    before = set(_cache_files())
    ref = magpie_features(forms)
    (path,) = set(_cache_files()) - before
    for content in (b"", b"garbage", path.read_bytes()[:90]):
        path.write_bytes(content)  # empty (EOFError), not .npy, truncated
        np.testing.assert_array_equal(magpie_features(forms), ref)
    for bad in (np.zeros((2, 145)), np.full((2, 145), np.nan, dtype=np.float32),
                np.zeros((3, 145), dtype=np.float32)):
        np.save(path, bad)  # wrong dtype, non-finite, wrong shape
        np.testing.assert_array_equal(magpie_features(forms), ref)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.testing.assert_array_equal(magpie_features(forms), ref)  # never unpickled
    assert np.load(path, allow_pickle=False).dtype == np.float32  # replaced


def test_magpie_refuses_bad_formula_naming_row() -> None:
    import pytest

    from matdisco import MatdiscoError

    with pytest.raises(MatdiscoError, match="row 2: .*'FeQ3'"):
        magpie_features(["NaCl", "FeQ3"], cache=False)
