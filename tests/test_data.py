"""Composition parsing, encoding, loaders, cleaning and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matdisco import MatdiscoError
from matdisco.data import (
    ELEMNET_ELEMENTS,
    clean_dataset,
    encode_fractions,
    fractions,
    holdout_split,
    in_system_mask,
    kfold_indices,
    load_experimental_formation_enthalpy,
    load_optimade,
    load_table,
    parse_formula,
    parse_optimade_response,
    reduced_key,
)


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("Fe2O3", {"Fe": 0.4, "O": 0.6}),
        ("Fe0.4Ni0.6", {"Fe": 0.4, "Ni": 0.6}),
        ("(Li2O)0.5(FeO)0.5", {"Li": 0.4, "O": 0.4, "Fe": 0.2}),
        ("Ca(OH)2", {"Ca": 0.2, "O": 0.4, "H": 0.4}),
    ],
)
def test_fractions(formula: str, expected: dict[str, float]) -> None:
    got = fractions(formula)
    assert set(got) == set(expected)
    for el, v in expected.items():
        assert got[el] == pytest.approx(v)


def test_encode_fixed_element_list() -> None:
    x = encode_fractions(["Fe2O3", "NaCl"])
    assert x.shape == (2, 86) and len(ELEMNET_ELEMENTS) == 86
    assert x.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert x[0, ELEMNET_ELEMENTS.index("Fe")] == pytest.approx(0.4)


@pytest.mark.parametrize("bad", ["", "Fe2O3)", "fe2o3", "Xx2O", "Fe-1O2", "He2O", None])
def test_bad_formulas_name_row(bad: object) -> None:
    # ``row`` is the 0-based index; messages count data rows from 1
    with pytest.raises(MatdiscoError, match="row 4: "):
        parse_formula(bad, row=3)


def test_reduced_key_and_duplicates() -> None:
    assert reduced_key("Fe4O6") == reduced_key("Fe2O3")
    df = pd.DataFrame({"formula": ["Fe2O3", "Fe4O6", "Fe", "NaCl", "KCl", "LiF", "MgO"],
                       "target": [-1.0, -1.5, 0.0, -2.0, -2.1, -3.0, -3.0]})
    out, rep = clean_dataset(df)
    assert rep["single_element"] == 1
    assert rep["duplicates"] == 1
    assert out.loc[out["formula"].isin(["Fe2O3", "Fe4O6"]), "target"].tolist() == [-1.5]
    assert rep["output"] == len(out) == 5


def test_clean_outliers() -> None:
    rng = np.random.default_rng(0)
    forms = [f"Li{i}O{i + 1}" for i in range(1, 200)]
    y = rng.normal(size=len(forms))
    y[10] = 100.0
    out, rep = clean_dataset(pd.DataFrame({"formula": forms, "target": y}))
    assert rep["outliers"] == 1 and 100.0 not in out["target"].tolist()


def test_embedded_experimental() -> None:
    df = load_experimental_formation_enthalpy()
    assert len(df) == 2135
    row = df[df["formula"] == "Ag2O"].iloc[0]
    # -0.32 eV per formula unit / 3 atoms
    assert row["target"] == pytest.approx(-0.1074, abs=1e-3)


def test_load_table_errors(tmp_path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("")
    with pytest.raises(MatdiscoError, match="empty"):
        load_table(p)
    p.write_text("formula,y\nFe2O3,1\n")
    with pytest.raises(MatdiscoError, match="missing column"):
        load_table(p)
    p.write_text("formula,target\nFe2O3,1\nNaCl,nan\n")
    with pytest.raises(MatdiscoError, match="row 2: target 'target' is 'nan', not a finite"):
        load_table(p)
    p.write_text("formula,target\nFe2O3,1\nNaCl,inf\n")
    with pytest.raises(MatdiscoError, match="not a finite"):
        load_table(p)
    p.write_text("formula,target\nFe2O3,1\nQq2,1\n")
    with pytest.raises(MatdiscoError, match="row 2: .*Qq2"):
        load_table(p)
    with pytest.raises(MatdiscoError, match="not found"):
        load_table(tmp_path / "missing.csv")
    pq = tmp_path / "d.parquet"
    pd.DataFrame({"formula": ["Fe2O3"], "target": [1.0]}).to_parquet(pq)
    assert len(load_table(pq)) == 1


def test_kfold_partition() -> None:
    folds = kfold_indices(23, 5, seed=1)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(23))
    for tr, te in folds:
        assert not set(tr) & set(te)


def test_holdout_system() -> None:
    forms = ["TiO2", "Ti2O3", "Ti", "FeO", "NaFeO2", "NaMnO2", "NaFeMnO4", "LiFeO2"]
    assert in_system_mask(forms, "Ti-O").tolist() == [True, True, True] + [False] * 5
    tr, te = holdout_split(forms, ["Na-Fe-Mn-O"])
    assert [forms[i] for i in te] == ["FeO", "NaFeO2", "NaMnO2", "NaFeMnO4"]
    with pytest.raises(MatdiscoError, match="not an element"):
        in_system_mask(forms, "Ti-Qq")


def test_optimade_recorded_response() -> None:
    page1 = {"data": [
        {"id": "a", "attributes": {"chemical_formula_reduced": "Fe2O3", "_x_ef": -1.7}},
        {"id": "b", "attributes": {"chemical_formula_reduced": "NaCl", "_x_ef": -2.1}},
        {"id": "c", "attributes": {"chemical_formula_reduced": "KBr"}},
    ], "links": {"next": "http://example.invalid/page2"}}
    page2 = {"data": [{"id": "d", "attributes": {"chemical_formula_reduced": "MgO",
                                                  "_x_ef": -3.0}}], "links": {"next": None}}
    calls = []

    def fetch(url: str) -> dict:
        calls.append(url)
        return page1 if len(calls) == 1 else page2

    df = load_optimade("http://example.invalid/v1", "_x_ef", fetch=fetch)
    assert df["formula"].tolist() == ["Fe2O3", "NaCl", "MgO"]
    assert "page_limit" in calls[0] and calls[1].endswith("page2")
    with pytest.raises(MatdiscoError):
        parse_optimade_response({"data": []}, "_x_ef")


def test_load_table_refuses_other_file_types(tmp_path) -> None:
    df = pd.DataFrame({"formula": ["Fe2O3", "NaCl"], "target": [1.0, 2.0]})
    js = tmp_path / "d.json"
    df.to_json(js)  # read as CSV this used to say "the file has no data rows"
    with pytest.raises(MatdiscoError, match=r"d.json: unsupported file type '.json'"):
        load_table(js)
    with pytest.raises(MatdiscoError, match="is a directory"):
        load_table(tmp_path)
    gz = tmp_path / "d.csv.gz"
    df.to_csv(gz, index=False)
    assert load_table(gz)["formula"].tolist() == ["Fe2O3", "NaCl"]
    up = tmp_path / "D.PARQUET"  # upper-case suffix: still Parquet, not read as CSV
    df.to_parquet(up)
    assert len(load_table(up)) == 2


def test_numeric_formula_column_is_named_as_such(tmp_path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("formula,target\n1.5,1\n2.5,2\n")
    with pytest.raises(MatdiscoError, match="row 1: formula 1.5 is a number, not a chemical"):
        load_table(p)


def test_error_rows_name_the_data_row_of_a_bad_formula(tmp_path) -> None:
    """Row N in a message is the N-th data row: row 1 is the line after the header."""
    p = tmp_path / "d.csv"
    # the bad formula is on the 3rd data row (the 4th line of the file)
    p.write_text("formula,target\nFe2O3,1\nNaCl,2\nFe2Qq3,3\nMgO,4\n")
    with pytest.raises(MatdiscoError) as exc:
        load_table(p)
    assert f"{p}: row 3: " in str(exc.value) and "Fe2Qq3" in str(exc.value)
    # encode_fractions counts the same way (0-based index 1 -> row 2)
    with pytest.raises(MatdiscoError, match="x.csv: row 2: "):
        encode_fractions(["Fe2O3", "Qq2"], source="x.csv")


def test_error_rows_name_the_data_row_of_a_bad_target(tmp_path) -> None:
    p = tmp_path / "d.csv"
    # the non-finite target is on the 2nd data row (the 3rd line of the file)
    p.write_text("formula,target\nFe2O3,1\nNaCl,inf\nMgO,4\n")
    with pytest.raises(MatdiscoError) as exc:
        load_table(p)
    assert f"{p}: row 2: target 'target' is 'inf'" in str(exc.value)


def test_clean_keeps_rows_when_there_is_no_spread() -> None:
    # one composition left after the duplicates step: its std is NaN, which used to
    # mark the only row an outlier and empty the data set
    df = pd.DataFrame({"formula": ["Fe2O3", "Fe4O6", "Fe2O3"], "target": [-1.0, -1.1, -0.9]})
    out, report = clean_dataset(df)
    assert out["target"].tolist() == [-1.1] and report["outliers"] == 0
