"""Audit of the property layer: transfer-learning checks, input validation, estimators."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestRegressor

from matdisco import MatdiscoError
from matdisco.data.composition import ELEMNET_ELEMENTS
from matdisco.models import ForestRegressor, NeuralRegressor, build_network
from matdisco.property import load_run, predict_file, train_property

FAST = dict(epochs=1, batch_size=16, patience=None, device="cpu", report=False)
TINY = {"widths": [8]}


def test_forest_matches_sklearn_when_the_threshold_rounds_up_in_float32() -> None:
    # two float32 neighbours: their float64 midpoint rounds up to the larger one in
    # float32, which a plain cast of the threshold would send to the left child
    a = np.nextafter(np.float32(2.0), np.float32(3.0))
    b = np.nextafter(a, np.float32(3.0))
    X = np.array([[a], [b]] * 20, dtype=np.float32)
    y = np.array([0.0, 1.0] * 20)
    ours = ForestRegressor(n_estimators=3, n_jobs=1, seed=0).fit(X, y)
    ref = RandomForestRegressor(n_estimators=3, n_jobs=1, random_state=0).fit(X, y)
    np.testing.assert_allclose(ours.predict(X[:2]), ref.predict(X[:2]))
    np.testing.assert_allclose(ours.predict(X[:2]), [0.0, 1.0])


def test_batchnorm_network_with_one_training_row_is_a_clear_error() -> None:
    est = NeuralRegressor(arch="mlp", arch_kwargs={"widths": [4], "batchnorm": True},
                          epochs=1, device="cpu", patience=None)
    with pytest.raises(MatdiscoError, match="batch normalization.*got 1"):
        est.fit(np.ones((1, 3)), [1.0])
    # without batch norm one row trains
    NeuralRegressor(arch="mlp", arch_kwargs=TINY, epochs=1, device="cpu",
                    patience=None).fit(np.ones((1, 3)), [1.0])


def test_misspelt_mlp_parameter_is_refused() -> None:
    with pytest.raises(MatdiscoError, match=r"unknown mlp parameters \['width'\]"):
        build_network("mlp", 4, width=[8])
    assert build_network("mlp", 4, widths=[8], dropout=0.1, residual="layer",
                         batchnorm=True) is not None


def test_init_checks_the_source_before_anything_is_written(tiny_df: pd.DataFrame,
                                                           tmp_path) -> None:
    src = train_property(tiny_df, model="mlp", out=tmp_path / "src", arch_kwargs=TINY,
                         **FAST)
    # another width: refused naming the source, before the run directory exists
    with pytest.raises(MatdiscoError, match=r"--init run .*\(8, 86\).*expects \(16, 86\)"):
        train_property(tiny_df, model="mlp", out=tmp_path / "bad", init=src,
                       arch_kwargs={"widths": [16]}, **FAST)
    assert not (tmp_path / "bad").exists()
    # another featurizer
    mag = train_property(tiny_df, model="mlp", out=tmp_path / "mag", features="magpie",
                         arch_kwargs=TINY, **FAST)
    with pytest.raises(MatdiscoError, match="features 'magpie', not 'fractions'"):
        train_property(tiny_df, model="mlp", out=tmp_path / "bad", init=mag, **FAST)
    # another element list (Pu dropped: no compound of the data holds it)
    els = [e for e in ELEMNET_ELEMENTS if e != "Pu"]
    other = train_property(tiny_df, model="mlp", out=tmp_path / "el", arch_kwargs=TINY,
                           features={"name": "fractions", "elements": els}, **FAST)
    # fractions over a custom element list are still raw fractions (not standardized)
    assert json.loads((other / "config.json").read_text())["estimator"]["scale_inputs"] is False
    with pytest.raises(MatdiscoError, match=r"another element list \(85 elements, this run 86"):
        train_property(tiny_df, model="mlp", out=tmp_path / "bad", init=other,
                       arch_kwargs=TINY, **FAST)
    # another model type, and rf either way
    rf = train_property(tiny_df, model="rf", out=tmp_path / "rf", n_estimators=2, n_jobs=1,
                        report=False)
    for model, source, match in (("irnet17", src, "is a 'mlp' model, not 'irnet17'"),
                                 ("mlp", rf, "is a 'rf' model, not 'mlp'"),
                                 ("rf", rf, "needs a neural model")):
        with pytest.raises(MatdiscoError, match=match):
            train_property(tiny_df, model=model, out=tmp_path / "bad", init=source, **FAST)
    assert not (tmp_path / "bad").exists()


def test_init_accepts_a_source_config_that_names_its_featurizer(tiny_df: pd.DataFrame,
                                                                tmp_path) -> None:
    # config.json may record the features by name ("fractions"), which load_run accepts
    src = train_property(tiny_df, model="mlp", out=tmp_path / "src", arch_kwargs=TINY, **FAST)
    cfg = json.loads((src / "config.json").read_text())
    cfg["features"] = "fractions"
    (src / "config.json").write_text(json.dumps(cfg))
    run = train_property(tiny_df.iloc[:30], model="mlp", out=tmp_path / "tl", init=src,
                         **{**FAST, "epochs": 0})
    np.testing.assert_allclose(load_run(run).predict(["MgO"])[0],
                               load_run(src).predict(["MgO"])[0], rtol=1e-6)


@pytest.mark.parametrize(("key", "value", "match"), [
    ("train_fraction", 0.0, "train_fraction=0.0 must be in"),
    ("train_fraction", -0.5, "train_fraction=-0.5 must be in"),
    ("train_fraction", 1.5, "train_fraction=1.5 must be in"),
    ("cv", 2.5, "cv=2.5 must be an integer"),
])
def test_bad_split_settings_are_refused_before_writing(tiny_df: pd.DataFrame, tmp_path,
                                                       key: str, value: float,
                                                       match: str) -> None:
    with pytest.raises(MatdiscoError, match=match):
        train_property(tiny_df, model="rf", out=tmp_path / "bad", n_estimators=2, n_jobs=1,
                       **{key: value})
    assert not (tmp_path / "bad").exists()


def test_predict_file_keeps_columns_and_names_bad_rows(tiny_df: pd.DataFrame,
                                                       tmp_path) -> None:
    run = train_property(tiny_df, model="rf", out=tmp_path / "rf", n_estimators=2, n_jobs=1,
                         report=False)
    inp = tmp_path / "in.csv"
    pd.DataFrame({"id": [7, 8], "comp": ["NaCl", "Fe2O3"], "note": ["a", "b"]}).to_csv(
        inp, index=False)
    out = pd.read_csv(predict_file(run, inp, tmp_path / "o.csv", formula_col="comp"))
    assert out.columns.tolist() == ["comp", "id", "note", "prediction", "std"]
    assert out["id"].tolist() == [7, 8] and (out["std"] == 0).all()  # one member
    # a column called "formula" beside --formula would be dropped: refused instead
    pd.DataFrame({"comp": ["NaCl"], "formula": ["mine"]}).to_csv(inp, index=False)
    with pytest.raises(MatdiscoError, match="column 'formula' besides"):
        predict_file(run, inp, tmp_path / "o2.csv", formula_col="comp")
    assert not (tmp_path / "o2.csv").exists()
    # an element outside the model's element list (He): the row is named
    inp.write_text("formula\nNaCl\nHeO\n")
    with pytest.raises(MatdiscoError, match="row 2.*'He'"):
        predict_file(run, inp, tmp_path / "o3.csv")
