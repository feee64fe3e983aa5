"""Data layer: composition parsing, encoding, loaders, cleaning and splits."""

from matdisco.data.composition import (
    ELEMNET_ELEMENTS,
    chemical_system,
    encode_fractions,
    fractions,
    parse_formula,
    reduced_key,
)
from matdisco.data.datasets import (
    DATASETS,
    clean_dataset,
    dataset_available,
    load_dataset,
    load_experimental_formation_enthalpy,
    load_matminer,
    load_optimade,
    load_table,
    parse_optimade_response,
    shared_data_dir,
)
from matdisco.data.splits import holdout_split, in_system_mask, kfold_indices, parse_system

__all__ = [
    "DATASETS",
    "ELEMNET_ELEMENTS",
    "chemical_system",
    "clean_dataset",
    "dataset_available",
    "encode_fractions",
    "fractions",
    "holdout_split",
    "in_system_mask",
    "kfold_indices",
    "load_dataset",
    "load_experimental_formation_enthalpy",
    "load_matminer",
    "load_optimade",
    "load_table",
    "parse_formula",
    "parse_optimade_response",
    "parse_system",
    "reduced_key",
    "shared_data_dir",
]
