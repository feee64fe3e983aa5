"""CLI of the screening domain (its own Typer app)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from matdisco.cli.screen import app
from matdisco.data import ELEMNET_ELEMENTS
from matdisco.models import NeuralRegressor
from matdisco.screening import CompositionSpace
from matdisco.screening.distill import save_screening_model

runner = CliRunner()


def test_count_matches_api():
    r = runner.invoke(app, ["count", "--elements", "3d,O", "--must-contain", "O",
                            "--arity", "3", "--max-atoms", "8", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    sp = CompositionSpace(elements="3d O", must_contain="O", arities=3, max_atoms=8)
    assert info["total"] == len(sp)
    r = runner.invoke(app, ["count"])
    assert "446,597,226" in r.output


def test_bad_input_exit_code():
    r = runner.invoke(app, ["count", "--elements", "Fe,Zz"])
    assert r.exit_code == 2 and "Zz" in r.output
    r = runner.invoke(app, ["count", "--arity", "7"])
    assert r.exit_code == 2 and "arity" in r.output


def test_run_hull_holdout(tmp_path):
    sp = CompositionSpace(elements=["Ti", "O", "Fe"], arities=3, max_atoms=6, chunk_size=20)
    X = sp.fractions(0, len(sp))
    o = X[:, ELEMNET_ELEMENTS.index("O")]
    y = -4 * o * (1 - o)
    m = NeuralRegressor(arch="mlp", arch_kwargs={"widths": [8]}, epochs=2, device="cpu").fit(
        X, y)
    model = save_screening_model(tmp_path / "m", [m], ELEMNET_ELEMENTS, [8])
    out = tmp_path / "out"
    args = ["run", "--model", str(model), "--out", str(out), "--elements", "Ti,O,Fe",
            "--arity", "3", "--max-atoms", "6", "--chunk-size", "20", "--no-progress"]
    r = runner.invoke(app, args + ["--max-chunks", "2"])
    assert r.exit_code == 0, r.output
    assert "2/" in r.output
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and f"{sp.n_chunks}/{sp.n_chunks}" in r.output
    refs = tmp_path / "refs.csv"
    pd.DataFrame({"formula": ["TiO2", "Fe2O3"], "target": [-3.0, -1.5]}).to_csv(refs,
                                                                                index=False)
    r = runner.invoke(app, ["hull", "--results", str(out), "--references", str(refs),
                            "--out", str(tmp_path / "h"), "--threshold", "0.0"])
    assert r.exit_code == 0, r.output
    summ = json.loads((tmp_path / "h" / "summary.json").read_text())
    cands = pd.read_parquet(tmp_path / "h" / "candidates.parquet")
    assert sum(summ["totals"].values()) == len(cands)
    assert (cands["distance"] <= 0).all()
    r = runner.invoke(app, ["hull", "--results", str(out), "--references", str(refs),
                            "--out", str(tmp_path / "h0"), "--threshold", "1000"])
    assert r.exit_code == 0 and "no composition is predicted 1000 eV/atom" in r.output
    assert "Empty DataFrame" not in r.output
    r = runner.invoke(app, ["holdout", "--system", "Ti-O", "--model", f"m={model}",
                            "--references", str(refs), "--out", str(tmp_path / "ho.json")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "ho.json").read_text())
    assert res[0]["system"] == "O-Ti" and res[0]["known_stable"] == ["TiO2"]
    r = runner.invoke(app, ["plot", "Ti-O", "--model", f"m={model}", "--references",
                            str(refs), "--out", str(tmp_path / "p.png")])
    assert r.exit_code == 0 and (tmp_path / "p.png").stat().st_size > 1000
    bad = tmp_path / "bad.csv"
    bad.write_text("formula,energy\nFeO,1\n")
    r = runner.invoke(app, ["hull", "--results", str(out), "--references", str(bad),
                            "--out", str(tmp_path / "h2")])
    assert r.exit_code == 2 and "missing column" in r.output
    assert not (tmp_path / "h2").exists()
    assert np.isfinite(cands["predicted"]).all()


def test_distill_cli_holds_out_and_refuses_an_existing_run(tmp_path):
    sp = CompositionSpace(elements=["Ti", "O", "Fe"], arities=3, max_atoms=6)
    X = sp.fractions(0, len(sp))
    m = NeuralRegressor(arch="mlp", arch_kwargs={"widths": [8]}, epochs=2, device="cpu").fit(
        X, X[:, ELEMNET_ELEMENTS.index("O")])
    teacher = save_screening_model(tmp_path / "t", [m], ELEMNET_ELEMENTS, [8])
    args = ["distill", "--teacher", str(teacher), "--out", str(tmp_path / "s"),
            "--n-synthetic", "400", "--widths", "16", "--epochs", "2"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    met = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert met["n_heldout"] == 20 and met["n_train"] == 380
    assert met["mae_vs_teacher_heldout"] >= 0
    assert (tmp_path / "s" / "parity.png").stat().st_size > 1000
    before = (tmp_path / "s" / "metrics.json").read_bytes()
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "already holds a finished run" in r.output
    assert (tmp_path / "s" / "metrics.json").read_bytes() == before
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output


def _tiny_teacher(tmp_path):
    sp = CompositionSpace(elements=["Ti", "O", "Fe"], arities=3, max_atoms=6, chunk_size=20)
    X = sp.fractions(0, len(sp))
    m = NeuralRegressor(arch="mlp", arch_kwargs={"widths": [8]}, epochs=1, device="cpu").fit(
        X, X[:, ELEMNET_ELEMENTS.index("O")])
    return save_screening_model(tmp_path / "t", [m], ELEMNET_ELEMENTS, [8])


def test_run_and_hull_refuse_out_of_range_settings(tmp_path):
    teacher = _tiny_teacher(tmp_path)
    out = tmp_path / "out"
    args = ["run", "--model", str(teacher), "--out", str(out), "--elements", "Ti,O,Fe",
            "--arity", "3", "--max-atoms", "6", "--chunk-size", "20", "--no-progress"]
    for extra in (["--max-chunks", "-1"], ["--threads", "-1"], ["--keep-below", "nan"]):
        r = runner.invoke(app, args + extra)
        assert r.exit_code == 2, (extra, r.output)
        assert extra[0][2:].replace("-", "_") in r.output and not out.exists()
    assert runner.invoke(app, args).exit_code == 0
    refs = tmp_path / "refs.csv"
    refs.write_text("formula,target\nTiO2,-3\nFe2O3,-1.5\n")
    for extra, msg in ((["--threshold", "nan"], "threshold"), (["--top", "-1"], "top")):
        r = runner.invoke(app, ["hull", "--results", str(out), "--references", str(refs),
                                "--out", str(tmp_path / "h"), *extra])
        assert r.exit_code == 2 and msg in r.output, r.output
        assert not (tmp_path / "h").exists()


def test_distill_bad_widths_and_failed_overwrite_keep_the_old_run(tmp_path, monkeypatch):
    teacher = _tiny_teacher(tmp_path)
    args = ["distill", "--teacher", str(teacher), "--out", str(tmp_path / "s"),
            "--n-synthetic", "100", "--widths", "8", "--epochs", "1"]
    for w, msg in (("8,x", "--widths must be comma-separated integers"),
                   ("-3", "widths must be positive"), ("0", "widths must be positive")):
        r = runner.invoke(app, [*args[:-4], "--widths", w, "--epochs", "1"])
        assert r.exit_code == 2 and msg in r.output, r.output
        assert not (tmp_path / "s").exists()
    assert runner.invoke(app, args).exit_code == 0
    before = {f.name: f.read_bytes() for f in (tmp_path / "s").iterdir()}

    def boom(*a, **k):
        raise KeyboardInterrupt  # a job killed during training

    monkeypatch.setattr(NeuralRegressor, "fit", boom)
    runner.invoke(app, [*args, "--overwrite"])
    assert {f.name: f.read_bytes() for f in (tmp_path / "s").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".s.")] == []


def _refs(tmp_path):
    refs = tmp_path / "refs.csv"
    refs.write_text("formula,target\nTiO2,-3\nFe2O3,-1.5\n")
    return refs


def test_hull_of_an_unfinished_output_warns_and_says_so_in_the_summary(tmp_path):
    teacher = _tiny_teacher(tmp_path)
    out = tmp_path / "out"
    r = runner.invoke(app, ["run", "--model", str(teacher), "--out", str(out), "--elements",
                            "Ti,O,Fe", "--arity", "3", "--max-atoms", "6", "--chunk-size",
                            "20", "--no-progress", "--max-chunks", "1"])
    assert r.exit_code == 0, r.output
    n_chunks = json.loads((out / "manifest.json").read_text())["n_chunks"]
    assert n_chunks > 1
    r = runner.invoke(app, ["hull", "--results", str(out), "--references",
                            str(_refs(tmp_path)), "--out", str(tmp_path / "h"),
                            "--threshold", "0.0"])
    assert r.exit_code == 0, r.output
    assert f"warning: the screening output is unfinished (1/{n_chunks} chunks)" in r.output
    summ = json.loads((tmp_path / "h" / "summary.json").read_text())
    assert summ["complete"] is False and len(summ["warnings"]) == 1
    assert "unfinished" in summ["warnings"][0]
    assert summ["chunks_completed"] == 1 and summ["n_chunks"] == n_chunks
    assert summ["results"] == str(out.resolve())


def test_output_paths_are_checked_before_any_work(tmp_path):
    teacher = _tiny_teacher(tmp_path)
    refs = _refs(tmp_path)
    taken = tmp_path / "taken"
    taken.write_text("mine")
    r = runner.invoke(app, ["hull", "--results", str(tmp_path / "nope"), "--references",
                            str(refs), "--out", str(taken)])
    assert r.exit_code == 2 and "is a file; give a folder" in r.output, r.output
    assert taken.read_text() == "mine"
    r = runner.invoke(app, ["plot", "Ti-O", "--model", f"m={teacher}", "--references",
                            str(refs), "--out", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and "give a name ending in .png" in r.output, r.output
    assert not (tmp_path / "x.jpg").exists()
    r = runner.invoke(app, ["plot", "Ti-O", "--model", f"m={teacher}", "--references",
                            str(refs), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "is a folder" in r.output, r.output


def test_holdout_refuses_duplicate_model_names_and_nan_tol(tmp_path):
    teacher = _tiny_teacher(tmp_path)
    base = ["holdout", "--system", "Ti-O", "--references", str(_refs(tmp_path)),
            "--out", str(tmp_path / "ho.json")]
    r = runner.invoke(app, [*base, "--model", f"a={teacher}", "--model", f"a={teacher}"])
    assert r.exit_code == 2 and "the name 'a' is given twice" in r.output, r.output
    r = runner.invoke(app, [*base, "--model", f" ={teacher}"])
    assert r.exit_code == 2 and "with both parts" in r.output, r.output
    for tol in ("nan", "-0.1", "inf"):
        r = runner.invoke(app, [*base, "--model", f"a={teacher}", "--tol", tol])
        assert r.exit_code == 2 and "--tol must be a finite fraction" in r.output, r.output
    assert not (tmp_path / "ho.json").exists()


def test_run_interrupted_before_the_manifest_is_written(tmp_path, monkeypatch):
    import matdisco.screening.run as run_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "screen", interrupted)
    r = runner.invoke(app, ["run", "--model", str(tmp_path / "m"), "--out",
                            str(tmp_path / "out"), "--elements", "Ti,O", "--arity", "2",
                            "--max-atoms", "4", "--no-progress"])
    assert r.exit_code == 130
    assert "interrupted before any chunk was recorded" in r.output
    assert "manifest.json" not in r.output
