"""Composition parsing, encoding, loaders, cleaning and splits."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize(("bad", "why"), [
    ("Fe-1O2", "negative"),
    ("FE2O3", "contains 'E', which is not a chemical element"),  # read as a dummy
    ("X2O", "contains 'X', which is not a chemical element"),
    ("Fe₂O₃", "cannot parse formula 'Fe₂O₃'"),  # unicode subscripts
    ("Fe1e400O", "non-finite amount of Fe"),
    (b"Fe2O3", "has type bytes, not a text"),  # said "empty or missing formula"
    ("2.5", "is a number"),
])
def test_bad_amounts_and_symbols_are_refused(bad: object, why: str) -> None:
    with pytest.raises(MatdiscoError, match=f"row 2: .*{why}"):
        parse_formula(bad, row=1)


@pytest.mark.parametrize("bad", ["Fe0O3", "Fe0.0Ni", "(FeO)0NaCl", "Na1Cl1O0"])
def test_loaders_refuse_zero_amounts(tmp_path, bad: str) -> None:
    # pymatgen drops a zero amount silently: Fe0O3 was loaded as O3 (an element!)
    p = tmp_path / "d.csv"
    p.write_text(f"formula,target\nNaCl,1\n{bad},2\n")
    pattern = rf"d.csv: row 2: formula '{re.escape(bad)}'.* zero amount"
    with pytest.raises(MatdiscoError, match=pattern):
        load_table(p)


def test_whitespace_around_formulas_is_ignored() -> None:
    assert parse_formula(" Fe2O3\t") == parse_formula("Fe2O3") == {"Fe": 2.0, "O": 3.0}
    assert fractions("(Li2O)0.5(FeO)0.5") == pytest.approx({"Li": 0.4, "O": 0.4, "Fe": 0.2})


def test_csv_duplicate_column_names_are_refused(tmp_path) -> None:
    # pandas renames the second one to 'target.1' and the first was used silently
    p = tmp_path / "d.csv"
    p.write_text("formula,target,target\nFe2O3,1,2\n")
    with pytest.raises(MatdiscoError, match=r"duplicate column name 'target' \(columns 2 and 3"):
        load_table(p)
    from matdisco.data.datasets import _validate  # the check of every loader

    frame = pd.DataFrame([["Fe2O3", "NaCl", 1.0]], columns=["formula", "formula", "target"])
    with pytest.raises(MatdiscoError, match="x: duplicate column name 'formula'"):
        _validate(frame, "formula", "target", "x", ELEMNET_ELEMENTS)


def test_csv_row_with_more_fields_than_the_header_is_refused(tmp_path) -> None:
    # pandas took the first column as the index and shifted the others: the formula
    # column held the targets
    p = tmp_path / "d.csv"
    p.write_text("formula,target\nNaCl,-2\nFe2O3,-1.5,x\n")
    with pytest.raises(MatdiscoError, match=r"d.csv: row 2 has 3 fields but the header has 2"):
        load_table(p)
    p.write_text("formula,target\nFe2O3,-1.5,x\nNaCl,-2\n")  # on row 1 pandas shifted
    with pytest.raises(MatdiscoError, match=r"d.csv: row 1 has 3 fields but the header has 2"):
        load_table(p)
    p.write_text("formula,target\nNaCl,-2\nFe2O3,-1.5\n")
    assert load_table(p)["formula"].tolist() == ["NaCl", "Fe2O3"]


def test_csv_formula_nan_is_sodium_nitride_and_blank_is_empty(tmp_path) -> None:
    # pandas reads 'NaN', 'NA', 'None' as missing values: the formula NaN (Na + N) was
    # refused as "empty or missing formula nan"
    p = tmp_path / "d.csv"
    p.write_text("formula,target\nFe2O3,1\nNaN,2\n")
    assert load_table(p)["formula"].tolist() == ["Fe2O3", "NaN"]
    p.write_text("formula,target\nFe2O3,1\nNone,2\n")
    with pytest.raises(MatdiscoError, match="row 2: cannot parse formula 'None'"):
        load_table(p)
    p.write_text("formula,target\nFe2O3,1\n,2\n")
    with pytest.raises(MatdiscoError, match="row 2: empty or missing formula"):
        load_table(p)


def test_csv_bom_header_and_boolean_target(tmp_path) -> None:
    p = tmp_path / "d.csv"
    p.write_bytes("\ufeffformula,target\nFe2O3,1\n".encode())
    assert load_table(p)["target"].tolist() == [1.0]
    p.write_text("formula,target\nFe2O3,True\nNaCl,False\n")  # read as 1.0 and 0.0 before
    with pytest.raises(MatdiscoError, match="target column 'target' holds True/False"):
        load_table(p)


def test_parquet_non_string_formula_column(tmp_path) -> None:
    p = tmp_path / "d.parquet"
    pd.DataFrame({"formula": [1, 2], "target": [1.0, 2.0]}).to_parquet(p)
    with pytest.raises(MatdiscoError, match="row 1: formula 1 is a number"):
        load_table(p)
    pd.DataFrame({"formula": [b"Fe2O3"], "target": [1.0]}).to_parquet(p)
    with pytest.raises(MatdiscoError, match="row 1: formula b'Fe2O3' has type bytes"):
        load_table(p)
    pd.DataFrame({"formula": ["Fe2O3", None], "target": [1.0, 2.0]}).to_parquet(p)
    with pytest.raises(MatdiscoError, match="row 2: empty or missing formula None"):
        load_table(p)
    pd.DataFrame({"formula": ["Fe2O3", "NaCl"],
                  "target": pd.Series([1.0, None], dtype="Float64")}).to_parquet(p)
    with pytest.raises(MatdiscoError, match="row 2: target 'target' is '<NA>'"):
        load_table(p)


def test_header_only_csv_has_no_data_rows(tmp_path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("formula,target\n")
    with pytest.raises(MatdiscoError, match="no data rows"):
        load_table(p)


def test_experimental_per_atom_conversion_by_hand() -> None:
    import gzip
    import json

    from matdisco.data.datasets import _exp_compounds_path

    with gzip.open(_exp_compounds_path(), "rt") as fh:
        raw = {r["formula"]: r for r in json.load(fh)}
    df = load_experimental_formation_enthalpy().set_index("formula")
    for formula, n_atoms in [("Fe2O3", 5), ("NaCl", 2), ("Al2(SO4)3", 17), ("Ca(HO)2", 5),
                             ("CaCO3", 5)]:
        assert df.loc[formula, "target"] == pytest.approx(raw[formula]["exp energy"] / n_atoms)
    assert df.loc["NaCl", "uncertainty"] == pytest.approx(raw["NaCl"]["uncertainty"] / 2)
    # an uncertainty of 0 in pymatgen's file stayed 0, it used to become NaN
    assert raw["TiMnO3"]["uncertainty"] == 0.0 and df.loc["TiMnO3", "uncertainty"] == 0.0


def test_clean_counts_add_up_and_keep_order_with_repeated_index() -> None:
    a = pd.DataFrame({"formula": ["NaCl", "Fe2O3", "Fe"], "target": [-2.0, -1.0, 0.0]})
    b = pd.DataFrame({"formula": ["Fe4O6", "KCl", "MgO"], "target": [-1.5, -2.1, -3.0]})
    out, rep = clean_dataset(pd.concat([a, b]))  # index 0, 1, 2, 0, 1, 2
    assert out["formula"].tolist() == ["NaCl", "Fe4O6", "KCl", "MgO"]
    assert rep == {"input": 6, "single_element": 1, "duplicates": 1, "outliers": 0,
                   "output": 4}
    rng = np.random.default_rng(1)
    forms = [f"Li{i}O{i + 1}" for i in range(1, 120)] + ["Fe", "Ni", "Li1O2", "Li2O4"]
    y = np.concatenate([rng.normal(size=119), [0.0, 0.0, -0.5, -0.4]])
    y[5] = 50.0
    out, rep = clean_dataset(pd.DataFrame({"formula": forms, "target": y}))
    assert (rep["single_element"], rep["duplicates"], rep["outliers"]) == (2, 2, 1)
    assert rep["input"] - rep["single_element"] - rep["duplicates"] - rep["outliers"] \
        == rep["output"] == len(out)


def test_holdout_subset_semantics() -> None:
    forms = ["TiO2", "Ti", "O2", "FeTiO3", "Ti2O3", "TiN", "NaFeMnO4", "NaMnO2", "Na",
             "NaFeCoO4", "LiMnO2"]
    assert in_system_mask(forms, "Ti-O").tolist() == [True, True, True, False, True] \
        + [False] * 6
    assert in_system_mask(forms, ["O", "Ti"]).tolist() == in_system_mask(forms, "O,Ti").tolist()
    tr, te = holdout_split(forms, ["Ti-O", "Na-Fe-Mn-O"])
    assert [forms[i] for i in te] == ["TiO2", "Ti", "O2", "Ti2O3", "NaFeMnO4", "NaMnO2", "Na"]
    assert sorted(tr.tolist() + te.tolist()) == list(range(len(forms)))
    with pytest.raises(MatdiscoError, match="no compound"):
        holdout_split(["NaCl"], ["Ti-O"])
