"""Replacing, interrupting and tampering with property runs; predict keeps user columns."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from matdisco import MatdiscoError
from matdisco.cli import app
from matdisco.models import NeuralRegressor
from matdisco.property import load_run, train_property

FAST = dict(epochs=2, batch_size=16, patience=None, device="cpu")


def _interrupt_on_call(monkeypatch: pytest.MonkeyPatch, n: int) -> list[int]:
    """Make the n-th ``NeuralRegressor.fit`` call (1-based) raise Ctrl-C; returns a call log."""
    real = NeuralRegressor.fit
    calls: list[int] = []

    def fit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(NeuralRegressor, "fit", fit)
    return calls


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def test_overwrite_keeps_the_old_run_until_the_new_one_is_complete(
        tiny_df: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    train_property(tiny_df, model="mlp", out=out, cv=3, seed=0, **FAST)
    old = _files(out)
    pending = tmp_path / ".run.pending"

    calls = _interrupt_on_call(monkeypatch, 2)  # Ctrl-C while the second fold trains
    with pytest.raises(KeyboardInterrupt, match="--overwrite --resume"):
        train_property(tiny_df, model="mlp", out=out, cv=3, seed=1, overwrite=True, **FAST)
    assert _files(out) == old  # the old run is untouched, byte for byte
    assert (pending / "fold_0.safetensors").exists()
    assert not (pending / "fold_1.safetensors").exists()

    # a plain --resume does not silently continue the finished old run instead
    with pytest.raises(MatdiscoError, match="pending.*--overwrite --resume"):
        train_property(tiny_df, model="mlp", out=out, cv=3, seed=1, resume=True, **FAST)
    # resuming the replacement with other settings is refused, naming the way out
    with pytest.raises(MatdiscoError, match="drop --resume"):
        train_property(tiny_df, model="mlp", out=out, cv=3, seed=2, overwrite=True,
                       resume=True, **FAST)
    assert _files(out) == old

    monkeypatch.undo()
    calls.clear()
    calls = _interrupt_on_call(monkeypatch, 0)  # count calls, never interrupt
    run = train_property(tiny_df, model="mlp", out=out, cv=3, seed=1, overwrite=True,
                         resume=True, **FAST)
    assert run == out and not pending.exists()
    assert len(calls) == 2  # fold 0 came from the pending run, folds 1-2 were trained
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert "matdisco property run: run<" in (out / "report.html").read_text()
    # the same as an uninterrupted run with these settings
    monkeypatch.undo()
    ref = train_property(tiny_df, model="mlp", out=tmp_path / "ref", cv=3, seed=1, **FAST)
    pd.testing.assert_frame_equal(pd.read_csv(out / "predictions.csv"),
                                  pd.read_csv(ref / "predictions.csv"))


def test_overwrite_alone_starts_an_interrupted_replacement_over(
        tiny_df: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    train_property(tiny_df, model="mlp", out=out, seed=0, **FAST)
    _interrupt_on_call(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train_property(tiny_df, model="mlp", out=out, seed=1, overwrite=True, **FAST)
    assert (tmp_path / ".run.pending").exists()
    monkeypatch.undo()
    train_property(tiny_df, model="mlp", out=out, seed=1, overwrite=True, **FAST)
    assert not (tmp_path / ".run.pending").exists()
    assert json.loads((out / "config.json").read_text())["seed"] == 1


def test_cli_ctrl_c_exits_130_with_a_hint_not_a_traceback(
        tiny_df: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "d.csv"
    tiny_df.to_csv(data, index=False)
    _interrupt_on_call(monkeypatch, 1)
    res = CliRunner().invoke(app, ["train", "--data", str(data), "--model", "mlp", "--out",
                                   str(tmp_path / "r"), "--epochs", "2", "--device", "cpu"])
    assert res.exit_code == 130, res.output
    assert "interrupted: train stopped" in res.output and "--resume" in res.output
    assert "Traceback" not in res.output

    # any other command: the generic message
    import matdisco.data as data_mod

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(data_mod, "load_dataset", boom)
    res = CliRunner().invoke(app, ["data", "show", str(data)])
    assert res.exit_code == 130 and "interrupted: show stopped" in res.output, res.output


def test_a_reordered_element_list_in_config_is_refused(tiny_df: pd.DataFrame,
                                                      tmp_path: Path) -> None:
    from matdisco.screening.models import load_model
    from matdisco.training import load_weights, save_weights

    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", **FAST)
    cfg_path = run / "config.json"
    cfg = json.loads(cfg_path.read_text())
    good = cfg_path.read_text()
    els = cfg["features"]["elements"]
    els[0], els[1] = els[1], els[0]  # H <-> Li: same elements, wrong input columns
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(MatdiscoError, match="another order.*position 1: Li, the weights "
                                            "expect H"):
        load_run(run)
    with pytest.raises(MatdiscoError, match="config.json: field 'features'"):
        load_model(run)
    cfg["features"]["elements"] = [e for e in els if e != "Pu"]
    cfg["n_features"] = len(cfg["features"]["elements"])
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(MatdiscoError, match=r"removed \['Pu'\]"):
        load_run(run)
    res = CliRunner().invoke(app, ["predict", str(run), str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "field 'features'" in res.output

    # weights saved before the featurizer was recorded (no header metadata) still load
    cfg_path.write_text(good)
    w = run / "model.safetensors"
    save_weights(w, load_weights(w))
    assert load_run(run).predict(["Fe2O3"])[0].shape == (1,)


def test_predict_keeps_the_input_columns(tiny_df: pd.DataFrame, tmp_path: Path) -> None:
    run = train_property(tiny_df, model="mlp", out=tmp_path / "r", **FAST)
    src = tmp_path / "in.csv"
    pd.DataFrame({"sample_id": ["a7", "b9"], "comp": ["Fe2O3", "NaCl"],
                  "batch": [3, 4]}).to_csv(src, index=False)
    res = CliRunner().invoke(app, ["predict", str(run), str(src), "--formula", "comp",
                                   "--out", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "p.csv")
    assert out.columns.tolist() == ["comp", "sample_id", "batch", "prediction", "std"]
    assert out["sample_id"].tolist() == ["a7", "b9"] and out["batch"].tolist() == [3, 4]
    ref = load_run(run).predict(["Fe2O3", "NaCl"])[0]
    assert out["prediction"].to_numpy() == pytest.approx(ref, abs=1e-5)

    src.write_text("formula,prediction\nFe2O3,1.0\n")
    res = CliRunner().invoke(app, ["predict", str(run), str(src), "--out",
                                   str(tmp_path / "q.csv")])
    assert res.exit_code == 2 and "already has column(s) ['prediction']" in res.output
    assert not (tmp_path / "q.csv").exists()


def test_a_replaced_ensemble_stays_whole_until_the_new_one_is_written(
        tiny_df: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matdisco.property.workflow as wf
    from matdisco.property import combine_runs

    runs = [train_property(tiny_df, model="mlp", out=tmp_path / f"s{s}", seed=s, **FAST)
            for s in (0, 1, 2)]
    ens = combine_runs(runs[:2], tmp_path / "e")
    old = _files(ens)

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(wf, "write_plots", boom)
    with pytest.raises(KeyboardInterrupt):
        combine_runs(runs, tmp_path / "e")  # three runs now, killed before it finished
    assert _files(ens) == old
    monkeypatch.undo()
    combine_runs(runs, tmp_path / "e")
    cfg = json.loads((ens / "config.json").read_text())
    assert len(cfg["members"]) == 3 and "matdisco property run: e<" in (
        ens / "report.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_ctrl_c_before_anything_is_written_leaves_no_folder(
        tiny_df: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matdisco.training import RunDir

    out = tmp_path / "run"
    train_property(tiny_df, model="mlp", out=out, seed=0, **FAST)
    old = _files(out)

    def boom(self, config):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "write_config", boom)
    with pytest.raises(KeyboardInterrupt, match="nothing was written; the old run is "
                                                "untouched"):
        train_property(tiny_df, model="mlp", out=out, seed=1, overwrite=True, **FAST)
    with pytest.raises(KeyboardInterrupt, match="nothing was written"):
        train_property(tiny_df, model="mlp", out=tmp_path / "new", **FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and _files(out) == old
