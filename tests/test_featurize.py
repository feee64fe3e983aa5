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
