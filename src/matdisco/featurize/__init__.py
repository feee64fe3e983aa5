"""Featurizers: element fractions (ElemNet input) and the 145 Magpie attributes."""

from matdisco.featurize.featurizers import (
    FEATURES_KEY,
    FEATURIZERS,
    ElementFractions,
    Featurizer,
    MagpieAttributes,
    check_weights_features,
    features_metadata,
    get_featurizer,
)
from matdisco.featurize.magpie import feature_names, magpie_features, magpie_from_fractions

__all__ = [
    "FEATURES_KEY",
    "FEATURIZERS",
    "ElementFractions",
    "Featurizer",
    "MagpieAttributes",
    "check_weights_features",
    "feature_names",
    "features_metadata",
    "get_featurizer",
    "magpie_features",
    "magpie_from_fractions",
]
