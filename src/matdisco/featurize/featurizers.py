"""Featurizer objects recorded by name in every run's config."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matdisco import MatdiscoError
from matdisco.data.composition import ELEMNET_ELEMENTS, encode_fractions
from matdisco.featurize.magpie import feature_names, magpie_features, magpie_from_fractions


class Featurizer:
    """Base class: formulas -> float32 matrix."""

    name = "base"

    def __init__(self, elements: Sequence[str] = ELEMNET_ELEMENTS) -> None:
        self.elements = tuple(elements)

    @property
    def n_features(self) -> int:
        """Number of output columns."""
        raise NotImplementedError

    def transform(self, formulas: Sequence[str]) -> np.ndarray:
        """Featurize formulas."""
        raise NotImplementedError

    def from_fractions(self, fr: np.ndarray) -> np.ndarray:
        """Featurize an element-fraction matrix directly (screening hot path)."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        """JSON-able description."""
        return {"name": self.name, "elements": list(self.elements)}


class ElementFractions(Featurizer):
    """Raw element fractions over a fixed element list (the ElemNet input)."""

    name = "fractions"

    @property
    def n_features(self) -> int:
        return len(self.elements)

    def transform(self, formulas: Sequence[str]) -> np.ndarray:
        return encode_fractions(formulas, self.elements)

    def from_fractions(self, fr: np.ndarray) -> np.ndarray:
        return np.asarray(fr, dtype=np.float32)


class MagpieAttributes(Featurizer):
    """The 145 physical attributes of Ward et al. (matminer element data)."""

    name = "magpie"

    @property
    def n_features(self) -> int:
        return 145

    @property
    def names(self) -> list[str]:
        """Column names."""
        return feature_names()

    def transform(self, formulas: Sequence[str]) -> np.ndarray:
        return magpie_features(formulas, self.elements)

    def from_fractions(self, fr: np.ndarray) -> np.ndarray:
        return magpie_from_fractions(fr, self.elements)


FEATURIZERS: dict[str, type[Featurizer]] = {"fractions": ElementFractions,
                                            "magpie": MagpieAttributes}


def get_featurizer(spec: str | dict) -> Featurizer:
    """Build a featurizer from its name or its ``to_dict()`` description."""
    if isinstance(spec, dict):
        name, elements = spec.get("name"), spec.get("elements", ELEMNET_ELEMENTS)
    else:
        name, elements = spec, ELEMNET_ELEMENTS
    if not isinstance(name, str) or name not in FEATURIZERS:
        raise MatdiscoError(f"unknown featurizer {name!r}; choose from {sorted(FEATURIZERS)}")
    _check_elements(elements)
    return FEATURIZERS[name](elements)


def _check_elements(elements: object) -> None:
    """Refuse an element list that is not a list of distinct element symbols (a run's
    columns would otherwise be silently misassigned)."""
    from pymatgen.core.periodic_table import Element

    if not isinstance(elements, list | tuple) or not elements:
        raise MatdiscoError(f"element list must be a non-empty list of element symbols, "
                            f"got {elements!r}")
    seen: set[str] = set()
    for el in elements:
        if not isinstance(el, str) or not Element.is_valid_symbol(el):
            raise MatdiscoError(f"element list: {el!r} is not an element symbol")
        if el in seen:
            raise MatdiscoError(f"element list: {el!r} appears twice")
        seen.add(el)


#: Key of the featurizer description stored in every member's ``.safetensors`` header.
FEATURES_KEY = "matdisco_features"


def features_metadata(featurizer: Featurizer) -> dict[str, str]:
    """Header metadata recording the featurizer (name and element order) of saved weights.

    A network's input columns follow the featurizer's element list; storing it beside
    the weights lets a loader refuse a run whose ``config.json`` was edited afterwards
    (e.g. the element list reordered), which would otherwise silently feed every
    composition to the wrong input columns.
    """
    import json

    return {FEATURES_KEY: json.dumps(featurizer.to_dict(), sort_keys=True)}


def check_weights_features(weights: str | os.PathLike[str], featurizer: Featurizer,
                           config_path: str | os.PathLike[str]) -> None:
    """Refuse weights trained on other features than the run's config describes.

    Weights written before the featurizer was recorded (no metadata) are accepted.

    Raises
    ------
    MatdiscoError
        Naming the config, the weights file and the difference (featurizer name,
        elements added or removed, or the same elements in another order).
    """
    import json

    from matdisco.training import load_weights_metadata

    rec = load_weights_metadata(weights).get(FEATURES_KEY)
    if rec is None:
        return
    try:
        saved = json.loads(rec)
        saved_fz = get_featurizer(saved)
    except (ValueError, MatdiscoError) as exc:
        raise MatdiscoError(f"{weights}: corrupt featurizer metadata ({exc})") from None
    if saved_fz.to_dict() == featurizer.to_dict():
        return
    if saved_fz.name != featurizer.name:
        why = f"featurizer {featurizer.name!r}, the weights were trained on {saved_fz.name!r}"
    else:
        old, new = tuple(saved_fz.elements), tuple(featurizer.elements)
        added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
        if not added and not removed:
            i = next(k for k, (a, b) in enumerate(zip(old, new, strict=True)) if a != b)
            why = (f"the same {len(old)} elements in another order (position {i + 1}: "
                   f"{new[i]}, the weights expect {old[i]})")
        else:
            why = ("an element list that differs from the weights' "
                   + ", ".join(x for x in (f"added {added}" if added else "",
                                           f"removed {removed}" if removed else "") if x))
    raise MatdiscoError(f"{config_path}: field 'features' has {why} "
                        f"({Path(weights).name}); the config was edited after training or "
                        "the weights come from another run; restore the original config.json")
