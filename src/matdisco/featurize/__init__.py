"""Featurizers: element fractions (ElemNet input) and the 145 Magpie attributes."""

from matdisco.featurize.featurizers import (
    FEATURIZERS,
    ElementFractions,
    Featurizer,
    MagpieAttributes,
    get_featurizer,
)
from matdisco.featurize.magpie import feature_names, magpie_features, magpie_from_fractions

__all__ = [
    "FEATURIZERS",
    "ElementFractions",
    "Featurizer",
    "MagpieAttributes",
    "feature_names",
    "get_featurizer",
    "magpie_features",
    "magpie_from_fractions",
]
