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


def test_overwrite_never_deletes_what_is_not_part_of_the_run(tiny_df: pd.DataFrame,
                                                            tmp_path: Path) -> None:
    from matdisco.training import prepare_run_dir

    out = tmp_path / "parent"
    train_property(tiny_df, model="mlp", out=out, **FAST)
    train_property(tiny_df, model="mlp", out=out / "child", **FAST)  # a run inside a run
    (out / "mynotes.txt").write_text("keep me")
    with pytest.raises(MatdiscoError, match=r"not part of the run \(child/, mynotes.txt\)"):
        train_property(tiny_df, model="mlp", out=out, seed=1, overwrite=True, **FAST)
    demo = ["demo", "--out", str(out), "--folds", "2", "--epochs", "1"]
    res = CliRunner().invoke(app, demo)  # demo replaces only a demo run
    assert res.exit_code == 2 and "is not a demo run" in res.output, res.output
    res = CliRunner().invoke(app, [*demo, "--overwrite"])
    assert res.exit_code == 2 and "not part of the run" in res.output, res.output
    assert (out / "mynotes.txt").read_text() == "keep me" and (out / "child" /
                                                               "config.json").exists()
    # the generic rule of every other command: a nested run is never deleted
    with pytest.raises(MatdiscoError, match=r"another run inside it \(child/\)"):
        prepare_run_dir(out, overwrite=True)
    assert prepare_run_dir(out, overwrite=True, staged=True, own_subruns=("child",))
    (out / "mynotes.txt").unlink()
    import shutil

    shutil.rmtree(out / "child")
    train_property(tiny_df, model="mlp", out=out, seed=1, overwrite=True, **FAST)
    assert json.loads((out / "config.json").read_text())["seed"] == 1


def test_cli_details_a_new_user_meets(tiny_df: pd.DataFrame, tmp_path: Path) -> None:
    """--version, -o everywhere, evaluate's default columns, strict metrics JSON,
    screen distill --train by name, and the defaults stated in `train --help`."""
    import re

    from matdisco import __version__
    from matdisco.property.workflow import NN_DEFAULTS

    r = CliRunner()
    res = r.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == __version__, res.output

    help_text = re.sub(r"[\s│]+", " ", r.invoke(app, ["train", "--help"]).output)
    for key, opt in (("epochs", "epochs"), ("batch_size", "batch size"), ("patience",
                                                                          "validation loss")):
        assert f"{opt} (default {NN_DEFAULTS[key]})" in help_text.lower(), key
    assert f"default {NN_DEFAULTS['lr']:g}" in help_text

    data = tmp_path / "d.csv"
    tiny_df.rename(columns={"formula": "comp", "target": "Ef"}).to_csv(data, index=False)
    run = tmp_path / "run"
    res = r.invoke(app, ["train", "--data", str(data), "--formula", "comp", "--target", "Ef",
                         "--model", "mlp", "--out", str(run), "--epochs", "1",
                         "--holdout-system", "Ni-S", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["evaluate", str(run), str(data)])  # the run's own column names
    assert res.exit_code == 0 and json.loads(res.output)["n"] == len(tiny_df), res.output
    assert json.loads((run / "metrics.json").read_text())["holdout"]["Ni-S"]["r2"] is None
    assert "<td>None</td>" not in (run / "report.html").read_text()
    assert "<td>n/a</td>" in (run / "report.html").read_text()
    # metrics.json is strict JSON (no bare NaN), whatever the metrics hold
    text = (run / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))

    forms = tmp_path / "f.csv"
    forms.write_text("comp\nFe2O3\n")
    res = r.invoke(app, ["predict", str(run), str(forms), "--formula", "comp", "-o",
                         str(tmp_path / "p.csv")])
    assert res.exit_code == 0 and (tmp_path / "p.csv").exists(), res.output
    from matdisco.cli.screen import app as screen_app

    for cmd in (["plot", "--help"], ["holdout", "--help"]):
        assert " -o " in r.invoke(screen_app, cmd).output
    res = r.invoke(screen_app, ["distill", "--teacher", str(run), "--out",
                                str(tmp_path / "s"), "--train", "no_such_dataset"])
    assert res.exit_code == 2 and "unknown dataset 'no_such_dataset'" in res.output, \
        res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
