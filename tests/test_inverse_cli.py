"""The ``matdisco inverse`` CLI (tiny runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from matdisco import MatdiscoError
from matdisco.cli.inverse import app

torch.set_num_threads(1)
runner = CliRunner()


def test_bench_writes_records_and_run_dirs(tmp_path) -> None:
    out = tmp_path / "runs"
    js = tmp_path / "res.json"
    r = runner.invoke(app, ["bench", "--task", "sinewave", "--method", "na,mdn", "--seeds", "1",
                            "--n-train", "300", "--n-targets", "5", "--t-max", "10",
                            "--n-single", "25", "--epochs", "3", "--min-steps", "0",
                            "--out", str(out), "--param", "na.steps=40",
                            "--json", str(js)])
    assert r.exit_code == 0, r.output
    data = json.loads(js.read_text())
    metrics = {(x["method"], x["metric"]) for x in data["records"]}
    for m in ("na", "mdn"):
        for metric in ("resim_mse_multi", "resim_mse_single", "seconds_per_1000",
                       "mode_coverage_25", "resim_mse_multi_best_of_10"):
            assert (m, metric) in metrics
    recs = {(x["method"], x["metric"]): x["value"] for x in data["records"]}
    # best of 10 proposals is never worse than one proposal
    assert recs[("na", "resim_mse_multi_best_of_10")] <= recs[("na", "resim_mse_multi")]
    seed_dir = out / "sinewave" / "na" / "seed0"
    for name in ("config.json", "metrics.json", "proposals_single_target.csv", "solutions.png"):
        assert (seed_dir / name).exists(), name
    assert (out / "sinewave" / "r_T_curves.png").exists()
    assert json.loads((seed_dir / "config.json").read_text())["params"]["steps"] == 40
    # a second process runs only seed 1; a third aggregates both, reading them back
    from matdisco.inverse.bench import run_benchmark
    kw = {"n_train": 300, "n_targets": 5, "ts": (1, 10), "n_single": 25, "epochs": 3,
          "min_steps": 0, "run_dir": out}
    r = runner.invoke(app, ["bench", "--task", "sinewave", "--method", "na", "--seeds", "1",
                            "--only-seeds", "1", "--n-train", "300", "--n-targets", "5",
                            "--t-max", "10", "--n-single", "25", "--epochs", "3",
                            "--min-steps", "0", "--out", str(out), "--json",
                            str(tmp_path / "share.json")])
    assert r.exit_code == 0, r.output
    share = json.loads((tmp_path / "share.json").read_text())["details"]["per_seed"]["na"]
    assert [x["seed"] for x in share] == [1]
    r = runner.invoke(app, ["bench", "--task", "sinewave", "--method", "na", "--only-seeds",
                            "one"])
    assert r.exit_code == 2 and "comma-separated integers" in r.output
    recs2, details = run_benchmark("sinewave", ["na"], seeds=2, first_seed=2, **kw)
    assert [r["seed"] for r in details["per_seed"]["na"]] == [0, 1]
    multi = {x["metric"]: x for x in recs2}["resim_mse_multi"]
    assert multi["seeds"] == 2
    vals = [json.loads((out / "sinewave" / "na" / f"seed{s}" / "metrics.json").read_text())
            ["resim_mse_multi"] for s in (0, 1)]
    assert multi["value"] == pytest.approx(sum(vals) / 2)
    with pytest.raises(MatdiscoError, match="seed 0"):
        run_benchmark("sinewave", ["tandem"], seeds=2, first_seed=1, **kw)  # never run


def test_cli_errors(tmp_path) -> None:
    r = runner.invoke(app, ["bench", "--task", "nope", "--method", "na", "--seeds", "1"])
    assert r.exit_code == 2 and "unknown task" in r.output
    r = runner.invoke(app, ["bench", "--task", "sinewave", "--method", "magic", "--seeds", "1"])
    assert r.exit_code == 2 and "unknown method" in r.output
    r = runner.invoke(app, ["propose", "--task", "robotic_arm", "--target", "1.5", "--n", "3"])
    assert r.exit_code == 2 and "2 output" in r.output
    r = runner.invoke(app, ["propose", "--task", "sinewave", "--target", "nan", "--n", "3"])
    assert r.exit_code == 2 and "NaN" in r.output
    r = runner.invoke(app, ["propose", "--task", "sinewave", "--target", "1", "--n", "0"])
    assert r.exit_code == 2 and "positive" in r.output
    for bad, msg in (("steps", "NAME=VALUE"), ("na.no_such_option=1", "method na")):
        r = runner.invoke(app, ["propose", "--task", "sinewave", "--method", "na", "--target",
                                "1", "--param", bad, "--n-train", "50"])
        assert r.exit_code == 2 and msg in r.output, r.output


def test_propose_command(tmp_path) -> None:
    r = runner.invoke(app, ["propose", "--task", "sinewave", "--method", "mdn", "--target",
                            "1.2", "--n", "4", "--n-train", "200", "--epochs", "2",
                            "--min-steps", "0", "--out", str(tmp_path / "p"),
                            "-p", "n_components=3", "-p", "ipage.prescreen=9"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["resim_mse"] >= 0
    assert (tmp_path / "p" / "proposals.csv").read_text().count("\n") == 5
    assert (tmp_path / "p" / "proposals.png").stat().st_size > 0
    params = json.loads((tmp_path / "p" / "config.json").read_text())["params"]
    assert params["n_components"] == 3  # the ipage.* parameter is not given to the MDN
    # a second run into the same --out is refused before any fit, and the run is untouched
    before = {f.name: f.read_bytes() for f in (tmp_path / "p").iterdir()}
    again = ["propose", "--task", "sinewave", "--method", "mdn", "--target", "0.5", "--n", "2",
             "--n-train", "200", "--epochs", "2", "--min-steps", "0", "--out",
             str(tmp_path / "p")]
    r = runner.invoke(app, again)
    assert r.exit_code == 2 and "already holds a finished run" in r.output
    assert "--overwrite" in r.output and "--resume" not in r.output
    assert {f.name: f.read_bytes() for f in (tmp_path / "p").iterdir()} == before
    r = runner.invoke(app, [*again, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p" / "proposals.csv").read_text().count("\n") == 3


def test_out_of_range_budget_is_refused(tmp_path) -> None:
    base = ["bench", "--task", "sinewave", "--method", "na", "--seeds", "1", "--n-train",
            "30", "--n-targets", "2", "--n-single", "2", "--t-max", "1",
            "--out", str(tmp_path / "b")]
    # --first-seed -1 was a NumPy traceback; --epochs 0 silently trained 100 epochs;
    # --param epochs=... was a TypeError (epochs given twice)
    for extra, msg in ((["--first-seed", "-1"], "first_seed"),
                       (["--epochs", "0"], "epochs must be"),
                       (["--min-steps", "-5"], "min_steps must be"),
                       (["-p", "epochs=0"], "epochs must be"),
                       (["-p", "na.forward_epochs=0"], "forward_epochs must be")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)
        assert not (tmp_path / "b").exists()
    r = runner.invoke(app, ["propose", "--task", "sinewave", "--method", "na", "--target",
                            "1", "--n-train", "30", "--epochs", "0", "--out",
                            str(tmp_path / "p")])
    assert r.exit_code == 2 and "epochs must be" in r.output
    assert not (tmp_path / "p").exists()


def test_propose_failed_overwrite_keeps_the_old_run(tmp_path, monkeypatch) -> None:
    from matdisco.inverse.tasks import Sinewave

    args = ["propose", "--task", "sinewave", "--method", "mdn", "--target", "1.2", "--n",
            "2", "--n-train", "60", "--epochs", "1", "--min-steps", "0", "--out",
            str(tmp_path / "p")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    before = {f.name: f.read_bytes() for f in (tmp_path / "p").iterdir()}

    def killed(*a, **k):
        raise KeyboardInterrupt  # the job is killed before the new run is complete

    monkeypatch.setattr(Sinewave, "dataset", killed)
    runner.invoke(app, [*args, "--overwrite"])
    assert {f.name: f.read_bytes() for f in (tmp_path / "p").iterdir()} == before


# ------------------------------------------------------- parameters checked before a fit
def _no_training(monkeypatch) -> None:
    """Make drawing the training data (the first step of any fit) fail loudly."""
    from matdisco.inverse.tasks import Sinewave

    def trained(*a, **k):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(Sinewave, "dataset", trained)


def test_build_solver_refuses_unknown_and_reserved_parameters() -> None:
    from matdisco.inverse import get_task
    from matdisco.inverse.bench import build_solver

    t = get_task("sinewave")
    with pytest.raises(MatdiscoError, match="method na has no parameter 'stepz'") as exc:
        build_solver("na", t, 0, {}, stepz=3)
    listed = str(exc.value).split("its parameters are ")[1].split(", ")
    assert {"steps", "step_lr", "forward_epochs", "epochs", "lr"} <= set(listed)
    assert not {"seed", "forward_from", "inn_from"} & set(listed)
    with pytest.raises(MatdiscoError, match="its parameters are") as exc:
        build_solver("ipage_mlhs", t, 0, {}, nope=1)
    # a parameter that is refused when set is not offered either
    assert "sampler" not in str(exc.value) and "prescreen" in str(exc.value)
    with pytest.raises(MatdiscoError, match="its parameters are") as exc:
        build_solver("mixture_tandem_k2", t, 0, {}, nope=1)
    assert ", k," not in str(exc.value) and "repulsion" in str(exc.value)
    for method, name in (("ipage_mlhs", "sampler"), ("mixture_tandem_k2", "k"),
                         ("na", "forward_from"), ("ipage_lhs", "inn_from")):
        with pytest.raises(MatdiscoError, match=f"parameter '{name}' cannot be set"):
            build_solver(method, t, 0, {}, **{name: None})
    assert build_solver("na", t, 0, {}, steps=7).steps == 7


def test_check_method_params() -> None:
    from matdisco.inverse.bench import check_method_params

    check_method_params(None)
    check_method_params({"": {"epochs": 2}, "ipage": {"prescreen": 4}, "mixture_tandem":
                         {"sigma": 0.5}, "na": {"steps": 3}})
    with pytest.raises(MatdiscoError, match="prefix 'nax' names no method"):
        check_method_params({"nax": {"steps": 3}})
    for name in ("seed", "sampler", "k", "forward_from"):
        with pytest.raises(MatdiscoError, match=f"parameter '{name}' cannot be set"):
            check_method_params({"": {name: 1}})


def test_run_benchmark_checks_before_training(tmp_path, monkeypatch) -> None:
    from matdisco.inverse.bench import run_benchmark

    _no_training(monkeypatch)
    kw = {"seeds": 1, "n_train": 30, "n_targets": 2, "n_single": 2, "ts": (1,)}
    with pytest.raises(MatdiscoError, match="no method"):
        run_benchmark("sinewave", [], **kw)
    for ts in ((), (0,), (1, -10), (1.5,), (True,)):
        with pytest.raises(MatdiscoError, match="ts must be"):
            run_benchmark("sinewave", ["na"], **{**kw, "ts": ts})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for rd in (blocker, blocker / "runs"):
        with pytest.raises(MatdiscoError, match="is a file"):
            run_benchmark("sinewave", ["na"], run_dir=rd, **kw)
    with pytest.raises(MatdiscoError, match="names no method"):
        run_benchmark("sinewave", ["na"], method_kwargs={"nax": {"steps": 1}}, **kw)
    # the second method's bad parameter fails before the first method is trained
    out = tmp_path / "runs"
    with pytest.raises(MatdiscoError, match="method mdn has no parameter 'steps'"):
        run_benchmark("sinewave", ["na", "mdn"], run_dir=out,
                      method_kwargs={"mdn": {"steps": 3}}, **kw)
    with pytest.raises(MatdiscoError, match="n_components must be"):
        run_benchmark("sinewave", ["na", "mdn"], run_dir=out,
                      method_kwargs={"mdn": {"n_components": 0}}, **kw)
    assert not out.exists()


def test_bench_cli_refuses_bad_options_before_running(tmp_path, monkeypatch) -> None:
    _no_training(monkeypatch)
    out = tmp_path / "b"
    base = ["bench", "--task", "sinewave", "--method", "na,mdn", "--seeds", "1", "--n-train",
            "30", "--n-targets", "2", "--n-single", "2", "--t-max", "1", "--out", str(out)]
    (tmp_path / "file").write_text("x")
    for extra, msg in ((["--t-max", "0"], "--t-max must be >= 1"),
                       (["--n-train", "1"], "--n-train must be > 1"),
                       (["--json", str(tmp_path)], "is a folder"),
                       (["--json", str(tmp_path / "file" / "r.json")], "is a file"),
                       (["-p", "mdn.stepz=3"], "method mdn has no parameter 'stepz'"),
                       (["-p", "nax.steps=3"], "names no method"),
                       (["-p", "seed=3"], "cannot be set")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)
        assert r.output.startswith("error: ")
        assert not out.exists()


def test_propose_cli_refuses_bad_options_before_training(tmp_path, monkeypatch) -> None:
    _no_training(monkeypatch)
    out = tmp_path / "p"
    base = ["propose", "--task", "sinewave", "--method", "na", "--target", "1", "--n", "2",
            "--n-train", "30", "--out", str(out)]
    for extra, msg in ((["--n-train", "1"], "--n-train must be > 1"),
                       (["--seed", "-1"], "--seed must be >= 0"),
                       (["-p", "stepz=3"], "has no parameter 'stepz'"),
                       (["-p", "na.steps=-2"], "steps must be"),
                       (["-p", "step_lr=fast"], "step_lr must be"),
                       (["-p", "forward_arch=xyz"], "forward_arch"),
                       (["-p", "seed=3"], "parameter 'seed' cannot be set"),
                       (["-p", "nax.steps=3"], "names no method")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)
        assert not out.exists()


def test_propose_writes_resim_columns_and_training_record(tmp_path) -> None:
    out = tmp_path / "p"
    r = runner.invoke(app, ["propose", "--task", "robotic_arm", "--method", "mdn", "--target",
                            "1.5,0.2", "--n", "3", "--n-train", "80", "-p", "epochs=2",
                            "--min-steps", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    import pandas as pd

    df = pd.read_csv(out / "proposals.csv")
    assert list(df.columns) == ["x0", "x1", "x2", "x3", "y0_resim", "y1_resim",
                                "resim_error"]
    from matdisco.inverse import get_task

    arm = get_task("robotic_arm")
    y = arm.forward(df[["x0", "x1", "x2", "x3"]].to_numpy())
    np.testing.assert_allclose(df[["y0_resim", "y1_resim"]].to_numpy(), y, atol=1e-9)
    np.testing.assert_allclose(df["resim_error"], np.mean((y - [1.5, 0.2]) ** 2, axis=1),
                               atol=1e-9)
    cfg = json.loads((out / "config.json").read_text())
    # the epochs actually used (here from --param), not the --epochs option (unset)
    assert (cfg["n_train"], cfg["epochs"], cfg["min_steps"]) == (80, 2, 0)
    assert cfg["training"]["mdn"]["epochs"] == 2
    assert cfg["params"]["epochs"] == 2 and cfg["params"]["lr"] > 0
    res = json.loads(r.output.strip().splitlines()[-1])
    assert res["resim_mse"] == pytest.approx(df["resim_error"].mean())


def test_propose_sinewave_csv_and_one_line_warning(tmp_path) -> None:
    out = tmp_path / "p"
    r = runner.invoke(app, ["propose", "--task", "sinewave", "--method", "mdn", "--target",
                            "5", "--n", "2", "--n-train", "60", "--epochs", "1",
                            "--min-steps", "0", "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    warn = [ln for ln in lines if ln.startswith("warning: ")]
    assert len(warn) == 1 and "outside the range" in warn[0], r.output
    assert "warnings.warn" not in r.output and "Warning:" not in r.output
    assert json.loads(lines[-1])["run_dir"] == str(out)
    header = (out / "proposals.csv").read_text().splitlines()[0]
    assert header == "x0,x1,y_resim,resim_error"


def test_propose_run_api(tmp_path, monkeypatch) -> None:
    """`inverse propose` from Python: the same run directory, checks before training."""
    import pandas as pd

    from matdisco.inverse import propose_run

    out = tmp_path / "p"
    df, m = propose_run("sinewave", "mdn", 1.2, out, n=5, n_train=150, epochs=2,
                        min_steps=0, method_kwargs={"mdn": {"n_components": 3}})
    assert len(df) == 5 and list(df.columns) == ["x0", "x1", "y_resim", "resim_error"]
    assert m["resim_mse"] == pytest.approx(df["resim_error"].mean())
    saved = pd.read_csv(out / "proposals.csv")
    np.testing.assert_allclose(saved["resim_error"], df["resim_error"], rtol=1e-6)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["params"]["n_components"] == 3 and cfg["target"] == [1.2]
    assert (out / "proposals.png").exists() and (out / "metrics.json").exists()
    _no_training(monkeypatch)
    for kw, msg in (({"n": 0}, "n must be"), ({"n_train": 1}, "n_train"),
                    ({"seed": -1}, "seed"), ({"target": [1.0, 2.0]}, "1 output"),
                    ({"target": float("nan")}, "NaN"),
                    ({"method_kwargs": {"mdn": {"nope": 1}}}, "no parameter 'nope'")):
        args = {"n": 2, "n_train": 50, "target": 1.0, **kw}
        with pytest.raises(MatdiscoError, match=msg):
            propose_run("sinewave", "mdn", args.pop("target"), tmp_path / "q", **args)
    assert not (tmp_path / "q").exists()
    with pytest.raises(MatdiscoError, match="overwrite"):  # refused before any training
        propose_run("sinewave", "mdn", 1.0, out, n=2, n_train=50)
