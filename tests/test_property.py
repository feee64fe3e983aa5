"""Property workflow: CV, fixed test, holdout, transfer, predict, CLI and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from matdisco import MatdiscoError
from matdisco.cli import app
from matdisco.property import load_run, train_property

FAST = dict(epochs=2, batch_size=16, patience=None, device="cpu")


def test_cv_run_directory(tiny_df: pd.DataFrame, tmp_path) -> None:
    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", cv=3, **FAST)
    for name in ("config.json", "metrics.json", "predictions.csv", "parity.png",
                 "error_cdf.png", "report.html", "fold_0.safetensors", "fold_2.safetensors"):
        assert (run / name).exists(), name
    assert not list(run.glob("checkpoint*"))
    met = json.loads((run / "metrics.json").read_text())
    assert met["cv"]["n"] == len(tiny_df) and len(met["cv"]["per_fold"]) == 3
    preds = pd.read_csv(run / "predictions.csv")
    assert sorted(preds["fold"].unique()) == [0, 1, 2]
    pred = load_run(run)
    mean, std = pred.predict(["Fe2O3", "NaCl"])
    assert mean.shape == (2,) and (std > 0).all()  # spread over 3 fold members
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["features"]["elements"][:3] == ["H", "Li", "Be"]
    # patience=None reaches the estimator (it used to fall back to the default 30)
    assert cfg["estimator"]["patience"] is None
    assert cfg["estimator"]["dropout_anneal_epochs"] == 1  # a tenth of 2 epochs, at least 1
    from matdisco.property import make_estimator

    est = make_estimator("elemnet", "fractions", epochs=50, dropout_anneal_epochs=None)
    assert est.dropout_anneal_epochs == 5  # None means the default, a tenth of the epochs


def test_rf_and_holdout(tiny_df: pd.DataFrame, tmp_path) -> None:
    df = pd.concat([tiny_df, pd.DataFrame({"formula": ["TiO2", "Ti2O3"],
                                           "target": [-3.2, -3.1]})], ignore_index=True)
    run = train_property(df, model="rf", out=tmp_path / "rf", holdout=["Ti-O"],
                         n_estimators=10, n_jobs=1)
    met = json.loads((run / "metrics.json").read_text())
    assert met["holdout"]["Ti-O"]["n"] == 2
    assert met["n_train_rows"] == len(df) - 2
    assert np.isfinite(load_run(run).predict(["TiO"])[0]).all()


def test_transfer_initialises_from_source(tiny_df: pd.DataFrame, tmp_path) -> None:
    src = train_property(tiny_df, model="mlp", out=tmp_path / "src", epochs=5, batch_size=16,
                         device="cpu", patience=None)
    # zero epochs of fine-tuning: the transferred model must equal the source
    tl = train_property(tiny_df.iloc[:30], model="mlp", out=tmp_path / "tl", init=src,
                        epochs=0, device="cpu")
    a = load_run(src).predict(["Fe2O3", "MgO"])[0]
    b = load_run(tl).predict(["Fe2O3", "MgO"])[0]
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(MatdiscoError, match="not 'elemnet'"):
        train_property(tiny_df, model="elemnet", out=tmp_path / "bad", init=src, **FAST)
    assert not (tmp_path / "bad").exists()
    # fine-tuning options without a source run are refused before anything is written
    for key in ("l2sp", "freeze_layers", "probe_head"):
        with pytest.raises(MatdiscoError, match=f"{key}=1 needs"):
            train_property(tiny_df, model="mlp", out=tmp_path / "bad", **{key: 1}, **FAST)
        assert not (tmp_path / "bad").exists()
    tl = train_property(tiny_df.iloc[:30], model="mlp", out=tmp_path / "tl2", init=src,
                        l2sp=1e-3, freeze_layers=1, probe_head=True, **FAST)
    cfg = json.loads((tl / "config.json").read_text())
    assert cfg["estimator"]["l2sp"] == 1e-3 and cfg["estimator"]["freeze_layers"] == 1
    assert cfg["estimator"]["probe_head"] is True
    # an error that only training reveals leaves no half-written run directory behind
    with pytest.raises(MatdiscoError, match="at least one must train"):
        train_property(tiny_df.iloc[:30], model="mlp", out=tmp_path / "bad", init=src,
                       freeze_layers=50, **FAST)
    assert not (tmp_path / "bad").exists()


def test_chained_transfer_records_its_sources(tiny_df: pd.DataFrame, tmp_path) -> None:
    # OQMD -> MP -> experiment, in miniature: each run names its whole lineage
    src = train_property(tiny_df, model="mlp", out=tmp_path / "src", **FAST)
    mid = train_property(tiny_df.iloc[:40], model="mlp", out=tmp_path / "mid", init=src, **FAST)
    end = train_property(tiny_df.iloc[:30], model="mlp", out=tmp_path / "end", init=mid, **FAST)
    chain = [json.loads((r / "config.json").read_text())["init_chain"] for r in (src, mid, end)]
    assert chain == [[], [str(src)], [str(mid), str(src)]]


def test_bad_trainer_settings_are_refused_before_writing(tiny_df: pd.DataFrame,
                                                         tmp_path) -> None:
    for key, value in (("ema", 1.5), ("val_fraction", 1.0), ("val_fraction", -0.1),
                       ("lr", 0.0), ("batch_size", 0), ("dropout_scale", -1.0)):
        with pytest.raises(MatdiscoError, match=f"{key}={value!r} must be"):
            train_property(tiny_df, model="mlp", out=tmp_path / "bad", **{**FAST, key: value})
        assert not (tmp_path / "bad").exists()


def test_prepare_run_dir_knows_interrupted_runs(tmp_path) -> None:
    from matdisco.training import holds_run, prepare_run_dir

    run = tmp_path / "run"
    assert prepare_run_dir(run) is True and not run.exists()  # nothing written
    run.mkdir()
    assert prepare_run_dir(run) is True  # an empty folder is fine
    (run / "history_fold_0.jsonl").write_text("{}\n")  # killed in its first fold
    assert holds_run(run)
    with pytest.raises(MatdiscoError, match="already holds an unfinished run"):
        prepare_run_dir(run)
    assert prepare_run_dir(run, resume=True) is False and run.exists()
    assert prepare_run_dir(run, overwrite=True, staged=True) is True and run.exists()
    assert prepare_run_dir(run, overwrite=True) is True and not run.exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(MatdiscoError, match="is a file"):
        prepare_run_dir(tmp_path / "file", overwrite=True)


def test_staged_run_dir_replaces_a_run_as_a_whole(tmp_path) -> None:
    from matdisco.training import RunDir, publish_run_dir, staged_run_dir

    final = tmp_path / "m" / "seed0"
    old = RunDir(staged_run_dir(final))
    old.write_config({"run": "old"})
    old.write_metrics({"v": 1})
    old.save_table("extra.csv", pd.DataFrame({"a": [1]}))
    assert not final.exists()  # nothing visible before publishing
    assert publish_run_dir(old.path, final) == final and not old.path.exists()
    new = RunDir(staged_run_dir(final))
    new.write_config({"run": "new"})
    # a job killed here leaves the old run whole; the next attempt reuses the stage name
    assert json.loads((final / "config.json").read_text())["run"] == "old"
    again = staged_run_dir(final)
    assert again == new.path and not any(again.iterdir())
    RunDir(again).write_config({"run": "new"})
    RunDir(again).write_metrics({"v": 2})
    publish_run_dir(again, final)
    assert json.loads((final / "config.json").read_text())["run"] == "new"
    assert json.loads((final / "metrics.json").read_text())["v"] == 2
    assert not (final / "extra.csv").exists()  # nothing of the old run is left mixed in
    assert sorted(x.name for x in final.parent.iterdir()) == ["seed0"]


def test_existing_run_is_never_silently_replaced(tiny_df: pd.DataFrame, tmp_path) -> None:
    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", seed=0, **FAST)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    # a second run into the same directory is refused before anything is written
    with pytest.raises(MatdiscoError, match="already holds a finished run.*--overwrite"):
        train_property(tiny_df, model="mlp", out=run, seed=1, **FAST)
    # resuming with another recipe is refused, naming what differs
    with pytest.raises(MatdiscoError, match=r"differs in hyper\.epochs, seed\)"):
        train_property(tiny_df, model="mlp", out=run, seed=1, resume=True,
                       **{**FAST, "epochs": 3})
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    # the same recipe resumes (a finished run: every member is kept)
    train_property(tiny_df, model="mlp", out=run, seed=0, resume=True, **FAST)
    assert (run / "model.safetensors").read_bytes() == before["model.safetensors"]
    # --overwrite replaces it
    train_property(tiny_df, model="mlp", out=run, seed=1, overwrite=True, **FAST)
    assert json.loads((run / "config.json").read_text())["seed"] == 1
    assert (run / "model.safetensors").read_bytes() != before["model.safetensors"]
    # a folder that is not a run is never deleted, even with --overwrite
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    for kw in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(MatdiscoError, match="not a run directory"):
            train_property(tiny_df, model="mlp", out=other, **kw, **FAST)
    assert [p.name for p in other.iterdir()] == ["keep.txt"]
    res = CliRunner().invoke(app, ["train", "--data", "exp_formation_enthalpy", "--model",
                                   "mlp", "--out", str(run), "--epochs", "1"])
    assert res.exit_code == 2 and "already holds" in res.output


def test_fixed_test_file_and_predict_cli(tiny_df: pd.DataFrame, tmp_path) -> None:
    test = tmp_path / "test.csv"
    tiny_df.iloc[:10].to_csv(test, index=False)
    train_csv = tmp_path / "train.csv"
    tiny_df.iloc[10:].to_csv(train_csv, index=False)
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--data", str(train_csv), "--model", "mlp", "--test",
                              str(test), "--out", str(tmp_path / "run"), "--epochs", "2",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "test: MAE" in res.output
    forms = tmp_path / "f.csv"
    forms.write_text("formula\nFe2O3\nLiCoO2\n")
    res = runner.invoke(app, ["predict", str(tmp_path / "run"), str(forms), "--out",
                              str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "p.csv")
    assert out.columns.tolist() == ["formula", "prediction", "std"] and len(out) == 2
    res = runner.invoke(app, ["evaluate", str(tmp_path / "run"), str(test)])
    assert res.exit_code == 0 and '"mae"' in res.output
    res = runner.invoke(app, ["report", str(tmp_path / "run")])
    assert res.exit_code == 0 and (tmp_path / "run" / "report.html").exists()


def test_combine_runs_seed_ensemble(tiny_df: pd.DataFrame, tmp_path) -> None:
    from matdisco.property import combine_runs

    train, test = tiny_df.iloc[:45], tiny_df.iloc[45:]
    runs = [train_property(train, model="mlp", out=tmp_path / f"s{s}", test=test, seed=s,
                           **FAST) for s in (0, 1)]
    res = CliRunner().invoke(app, ["ensemble", *map(str, runs), "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    ens = tmp_path / "e"
    cfg = json.loads((ens / "config.json").read_text())
    assert cfg["members"] == ["r0_model.safetensors", "r1_model.safetensors"]
    assert cfg["seed"] == [0, 1]
    # the ensemble's test predictions are the mean of the two runs'
    p0, p1, pe = (pd.read_csv(r / "predictions.csv") for r in (*runs, ens))
    mean = (p0["prediction"] + p1["prediction"]) / 2
    np.testing.assert_allclose(pe["prediction"], mean, atol=1e-5)
    np.testing.assert_allclose(pe["std"], (p0["prediction"] - p1["prediction"]).abs() / 2,
                               atol=1e-5)
    met = json.loads((ens / "metrics.json").read_text())
    assert met["test"]["mae"] == pytest.approx(float((mean - test["target"].to_numpy())
                                                     .abs().mean()), abs=1e-5)
    assert met["n_members"] == 2 and len(met["runs"]) == 2
    pred = load_run(ens)  # the ensemble run loads and predicts like any run
    np.testing.assert_allclose(pred.predict(test["formula"].tolist())[0], mean, atol=1e-5)
    # cross-validation runs: out-of-fold predictions are averaged over runs
    cvs = [train_property(train, model="mlp", out=tmp_path / f"cv{s}", cv=3, seed=s, **FAST)
           for s in (0, 1)]
    combine_runs(cvs, tmp_path / "ecv")
    c0, c1, ce = (pd.read_csv(r / "predictions.csv") for r in (*cvs, tmp_path / "ecv"))
    np.testing.assert_allclose(ce["prediction"], (c0["prediction"] + c1["prediction"]) / 2,
                               atol=1e-6)
    assert len(json.loads((tmp_path / "ecv" / "config.json").read_text())["members"]) == 6
    # an ensemble is recomputed in place, without stale member files of the old one
    combine_runs(runs, tmp_path / "ecv")
    assert sorted(p.name for p in (tmp_path / "ecv").glob("*.safetensors")) == [
        "r0_model.safetensors", "r1_model.safetensors"]
    # a training run is never replaced by an ensemble without --overwrite
    with pytest.raises(MatdiscoError, match="not an ensemble"):
        combine_runs(runs, cvs[0])
    assert (cvs[0] / "fold_0.safetensors").exists()
    # runs that cannot be combined: a clear error and no run directory
    for bad, msg in (([runs[0], cvs[0]], "rows differ"), ([runs[0]], "at least two"),
                     ([runs[0], runs[1]], "one of the input runs")):
        out = runs[1] if msg == "one of the input runs" else tmp_path / "bad"
        with pytest.raises(MatdiscoError, match=msg):
            combine_runs(bad, out)
        assert not (tmp_path / "bad").exists()
    rf = train_property(train, model="rf", out=tmp_path / "rf", test=test, n_estimators=5,
                        n_jobs=1)
    with pytest.raises(MatdiscoError, match="model 'rf' differs"):
        combine_runs([runs[0], rf], tmp_path / "bad")


def test_cli_bad_input_leaves_nothing(tmp_path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text("formula,target\nFe2O3,-1.0\nFe2Zz3,-1.0\n")
    res = runner.invoke(app, ["train", "--data", str(bad), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "row 2:" in res.output and "Zz" in res.output
    assert not (tmp_path / "run").exists()
    forms = tmp_path / "f.csv"
    forms.write_text("formula\nFe2O3\n-NaCl\n")
    res = runner.invoke(app, ["predict", str(tmp_path / "nope"), str(forms), "--out",
                              str(tmp_path / "p.csv")])
    assert res.exit_code == 2 and not (tmp_path / "p.csv").exists()


def test_load_run_refuses_tampered_weights(tiny_df: pd.DataFrame, tmp_path) -> None:
    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", **FAST)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"] = "elemnet"
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MatdiscoError, match="architecture"):
        load_run(run)
    (run / "model.safetensors").write_bytes(b"\x00" * 32)
    with pytest.raises(MatdiscoError, match="corrupt"):
        load_run(run)


def test_roost_trains_saves_and_reloads(tiny_df: pd.DataFrame, tmp_path) -> None:
    run = train_property(tiny_df, model="roost", out=tmp_path / "roost", test=tiny_df.iloc[:10],
                         arch_kwargs=dict(d=8, n_layers=1, n_heads=1, hidden=8,
                                          head_widths=[16]), **FAST)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["features"]["name"] == "fractions"
    assert cfg["estimator"]["scale_inputs"] is False  # the network needs raw fractions
    met = json.loads((run / "metrics.json").read_text())
    preds = pd.read_csv(run / "predictions.csv")
    again = load_run(run).predict(list(preds["formula"]))[0]
    np.testing.assert_allclose(again, preds["prediction"], rtol=1e-4, atol=1e-5)
    assert met["test"]["n"] == 10
    # fine-tuning takes the source's architecture (arch_kwargs) when none is given
    tl = train_property(tiny_df.iloc[:30], model="roost", out=tmp_path / "tl", init=run,
                        epochs=0, device="cpu")
    np.testing.assert_allclose(load_run(tl).predict(["Fe2O3", "MgO"])[0],
                               load_run(run).predict(["Fe2O3", "MgO"])[0], rtol=1e-5)


def test_interrupted_run_resumes_with_whole_training_time(tiny_df: pd.DataFrame, tmp_path,
                                                          monkeypatch) -> None:
    from matdisco.training import trainer as trainer_mod

    write = trainer_mod.Trainer._write_history

    def interrupt_at_3(self):
        write(self)
        if self.epoch == 3:
            raise KeyboardInterrupt

    cfg = dict(epochs=5, batch_size=16, patience=None, device="cpu")
    monkeypatch.setattr(trainer_mod.Trainer, "_write_history", interrupt_at_3)
    with pytest.raises(KeyboardInterrupt):
        train_property(tiny_df, model="mlp", out=tmp_path / "r", test=tiny_df.iloc[:10], **cfg)
    assert not (tmp_path / "r" / "metrics.json").exists()
    monkeypatch.setattr(trainer_mod.Trainer, "_write_history", write)
    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", test=tiny_df.iloc[:10],
                         resume=True, **cfg)
    met = json.loads((run / "metrics.json").read_text())
    hist = [json.loads(line) for line in (run / "history_model.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]
    # the time covers the three epochs of the interrupted process as well
    assert met["train_seconds"] >= sum(h["seconds"] for h in hist)
    n = met["n_train_rows"]
    assert met["train_samples_per_s"] == pytest.approx(5 * n / met["train_seconds"], rel=0.2)


def test_auxiliary_fidelity_rows_skip_evaluated_compositions(tiny_df: pd.DataFrame, tmp_path,
                                                             monkeypatch) -> None:
    from matdisco.models import NeuralRegressor

    # DFT-like rows: the same compositions shifted, plus compositions of their own
    aux = pd.concat([tiny_df.assign(target=tiny_df["target"] - 0.1),
                     pd.DataFrame({"formula": ["LiF", "KCl", "CaO"],
                                   "target": [-3.0, -2.2, -3.3]})], ignore_index=True)
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    fit = NeuralRegressor.fit

    def spy(self, X, y, *args, X_aux=None, y_aux=None, **kw):
        seen.append((np.asarray(X), np.asarray(X_aux), np.asarray(y_aux)))
        return fit(self, X, y, *args, X_aux=X_aux, y_aux=y_aux, **kw)

    monkeypatch.setattr(NeuralRegressor, "fit", spy)
    run = train_property(tiny_df, model="mlp", out=tmp_path / "mf", cv=3, aux_data=aux,
                         aux_weight=0.5, **FAST)
    preds = pd.read_csv(run / "predictions.csv")
    feat = load_run(run).featurizer
    for k, (X, Xa, ya) in enumerate(seen):
        fold = feat.transform(preds.loc[preds["fold"] == k, "formula"].tolist())
        # no auxiliary row of a composition this member is scored on; all the others
        assert not (np.abs(Xa[:, None, :] - fold[None]).sum(-1) < 1e-6).any(), k
        assert len(Xa) == len(aux) - len(fold)
        # the DFT-like values of the member's own training compositions are kept
        assert (np.abs(Xa[:, None, :] - X[None]).sum(-1) < 1e-6).any(1).sum() == len(X)
        assert len(ya) == len(Xa)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["aux"]["rows"] == len(aux) and cfg["estimator"]["aux_weight"] == 0.5
    # the run is an ordinary one: same members, loadable, predicts
    assert np.isfinite(load_run(run).predict(["LiF"])[0]).all()
    # a per-member sample of the auxiliary rows
    seen.clear()
    train_property(tiny_df, model="mlp", out=tmp_path / "mf2", cv=2, aux_data=aux,
                   aux_rows=5, **FAST)
    assert [len(Xa) for _, Xa, _ in seen] == [5, 5]
    # train-first: the member's own training compositions before any other row
    seen.clear()
    train_property(tiny_df, model="mlp", out=tmp_path / "mf3", cv=2, aux_data=aux,
                   aux_rows=20, aux_select="train-first", **FAST)
    for X, Xa, _ in seen:
        assert (np.abs(Xa[:, None, :] - X[None]).sum(-1) < 1e-6).any(1).all()
    for bad, match in ((dict(model="rf", aux_data=aux), "needs a neural model"),
                       (dict(model="mlp", aux_rows=5), "aux_rows needs auxiliary data"),
                       (dict(model="mlp", aux_weight=2.0), "aux_weight needs auxiliary"),
                       (dict(model="mlp", aux_data=aux, aux_rows=-1), "aux_rows=-1"),
                       (dict(model="mlp", aux_data=aux, aux_select="near"), "aux_select"),
                       (dict(model="mlp", aux_data=aux, aux_weight=-1.0), "aux_weight=-1.0")):
        with pytest.raises(MatdiscoError, match=match):
            train_property(tiny_df, out=tmp_path / "bad", cv=2,
                           **{**FAST, **bad})
        assert not (tmp_path / "bad").exists()


def test_cli_multi_fidelity_flags(tiny_df: pd.DataFrame, tmp_path) -> None:
    data, aux = tmp_path / "exp.csv", tmp_path / "dft.csv"
    tiny_df.to_csv(data, index=False)
    tiny_df.assign(target=tiny_df["target"] - 0.1).to_csv(aux, index=False)
    args = ["train", "--data", str(data), "--model", "mlp", "--cv", "2", "--epochs", "1",
            "--device", "cpu", "--aux-data", str(aux), "--aux-rows", "7",
            "--aux-weight", "0.5", "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["aux"]["source"] == str(aux) and cfg["aux"]["rows_per_member"] == 7
    assert cfg["estimator"]["aux_weight"] == 0.5
    res = CliRunner().invoke(app, args[:-8] + ["--aux-rows", "7", "--out",
                                               str(tmp_path / "bad")])
    assert res.exit_code != 0 and "aux_rows needs auxiliary data" in res.output
    assert not (tmp_path / "bad").exists()


def _edit_config(run, **changes) -> None:
    cfg = json.loads((run / "config.json").read_text())
    for key, value in changes.items():
        node = cfg
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        node[last] = value
    (run / "config.json").write_text(json.dumps(cfg))


def test_gpu_trained_run_predicts_on_a_machine_without_it(tiny_df: pd.DataFrame,
                                                          tmp_path) -> None:
    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", **FAST)
    want = load_run(run).predict(["Fe2O3"])[0]
    # as written by `matdisco train --device cuda` on a GPU machine (here: maybe none)
    _edit_config(run, hyper__device="cuda")
    np.testing.assert_allclose(load_run(run).predict(["Fe2O3"])[0], want, rtol=1e-6)
    forms = tmp_path / "f.csv"
    forms.write_text("formula\nFe2O3\n")
    res = CliRunner().invoke(app, ["predict", str(run), str(forms), "--out",
                                   str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output


def test_load_run_refuses_a_config_of_wrong_types(tiny_df: pd.DataFrame, tmp_path) -> None:
    import shutil

    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", **FAST)
    elements = json.loads((run / "config.json").read_text())["features"]["elements"]
    forms = tmp_path / "f.csv"
    forms.write_text("formula\nFe2O3\n")
    for i, (change, match) in enumerate((
            (dict(model=["mlp"]), "field 'model'"),
            (dict(model=None), "field 'model'"),
            (dict(members="model.safetensors"), "field 'members'"),
            (dict(members=[3]), "field 'members'"),
            (dict(members=None), "field 'members'"),
            (dict(members=["../r/model.safetensors"]), "inside the run directory"),
            (dict(hyper=[1]), "field 'hyper'"),
            (dict(hyper__arch_kwargs=5), "arch_kwargs"),
            (dict(features__elements=5), "element list"),
            (dict(features__elements=elements[:-1] + ["Xq"]), "'Xq' is not an element"),
            # a repeated element would silently swap the columns of the trained model
            (dict(features__elements=elements[:-1] + ["Fe"]), "'Fe' appears twice"))):
        bad = tmp_path / f"bad{i}"
        shutil.copytree(run, bad)
        _edit_config(bad, **change)
        with pytest.raises(MatdiscoError, match=match):
            load_run(bad)
        res = CliRunner().invoke(app, ["predict", str(bad), str(forms), "--out",
                                       str(tmp_path / "p.csv")])
        assert res.exit_code == 2 and "config.json" in res.output, (change, res.output)
        assert not (tmp_path / "p.csv").exists()


def test_report_and_evaluate_refuse_broken_runs(tiny_df: pd.DataFrame, tmp_path) -> None:
    import shutil

    runner = CliRunner()
    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", **FAST)
    for cmd in ("report", "evaluate"):
        res = runner.invoke(app, [cmd, str(tmp_path / "nope")])
        assert res.exit_code == 2 and "run directory not found" in res.output
        assert not (tmp_path / "nope").exists()  # never created
    cases = {"no_preds": lambda r: (r / "predictions.csv").unlink(),
             "empty_preds": lambda r: (r / "predictions.csv").write_text(""),
             "garbage_preds": lambda r: (r / "predictions.csv").write_text("x\n1\n"),
             "nan_pred": lambda r: pd.read_csv(r / "predictions.csv").assign(
                 prediction=lambda d: d["prediction"].where(d.index != 2))
             .to_csv(r / "predictions.csv", index=False),
             "no_metrics": lambda r: (r / "metrics.json").unlink(),
             "list_metrics": lambda r: (r / "metrics.json").write_text("[1]"),
             "no_rmse": lambda r: (r / "metrics.json").write_text('{"train": {"mae": "x"}}')}
    for name, breaks in cases.items():
        bad = tmp_path / name
        shutil.copytree(run, bad)
        breaks(bad)
        before = (bad / "parity.png").read_bytes()
        res = runner.invoke(app, ["report", str(bad)])
        assert res.exit_code == 2 and "error:" in res.output, (name, res.output)
        assert (bad / "parity.png").read_bytes() == before  # nothing rewritten
        if name == "nan_pred":
            assert "row 3: prediction is 'nan'" in res.output
        if "metrics" in name or name == "no_rmse":
            res = runner.invoke(app, ["evaluate", str(bad)])
            assert res.exit_code == 2 and "metrics.json" in res.output, (name, res.output)


def test_predict_refuses_a_bad_output_path(tiny_df: pd.DataFrame, tmp_path) -> None:
    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", **FAST)
    forms = tmp_path / "f.csv"
    forms.write_text("formula\nFe2O3\n")
    (tmp_path / "outdir").mkdir()
    for out, match in ((tmp_path / "outdir", "is a directory"),
                       (tmp_path / "p.xlsx", "unsupported output file type")):
        res = CliRunner().invoke(app, ["predict", str(run), str(forms), "--out", str(out)])
        assert res.exit_code == 2 and match in res.output, res.output
    assert not (tmp_path / "p.xlsx").exists() and not list((tmp_path / "outdir").iterdir())


def test_bad_device_and_forest_settings_are_refused_before_writing(tiny_df: pd.DataFrame,
                                                                  tmp_path) -> None:
    for kwargs, match in ((dict(model="mlp", **{**FAST, "device": "tpu"}), "device='tpu'"),
                          (dict(model="rf", n_estimators=0), "n_estimators=0"),
                          (dict(model="rf", n_estimators=5, min_samples_leaf=0),
                           "min_samples_leaf=0")):
        with pytest.raises(MatdiscoError, match=match):
            train_property(tiny_df, out=tmp_path / "bad", **kwargs)
        assert not (tmp_path / "bad").exists()


def test_no_training_rows_left_is_refused_before_writing(tmp_path) -> None:
    single = tmp_path / "single.csv"
    single.write_text("formula,target\nFe,0\nO,0\nNi,0\n")  # cleaning drops every row
    res = CliRunner().invoke(app, ["train", "--data", str(single), "--epochs", "1",
                                   "--device", "cpu", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no training rows left" in res.output, res.output
    assert "'single_element': 3" in res.output and not (tmp_path / "r").exists()
    df = pd.DataFrame({"formula": ["FeO", "Fe2O3"], "target": [-1.0, -1.1]})
    with pytest.raises(MatdiscoError, match=r"holdout systems \['Fe-O'\] take all 2 rows"):
        train_property(df, model="rf", out=tmp_path / "r", holdout=["Fe-O"], n_estimators=2)
    assert not (tmp_path / "r").exists()
