"""Shared test fixtures: tiny datasets, single-threaded torch."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("MATDISCO_CACHE", os.path.join(os.path.dirname(__file__), ".cache"))


@pytest.fixture()
def tiny_df() -> pd.DataFrame:
    """60 rows of experimental formation enthalpies (embedded data)."""
    from matdisco.data import load_experimental_formation_enthalpy

    return load_experimental_formation_enthalpy().iloc[::35].reset_index(drop=True)


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MATDISCO_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
