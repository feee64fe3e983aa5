"""Tests of pattern simulation (kikuchipy), dictionary indexing, the indexer and the CLI.

kikuchipy's numba kernels are compiled once per process, so everything that needs
them lives in one module with a module-scoped fixture of a few small patterns.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from matdisco import MatdiscoError
from matdisco.ebsd import (
    DetectorConfig,
    OMNetIndexer,
    check_patterns,
    degrade_patterns,
    load_dataset,
    sample_orientations,
    save_dataset,
    simulate_dataset,
)
from matdisco.ebsd.evaluation import disorientation_deg, orientation_metrics

DET = DetectorConfig(shape=(20, 20))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import os

    os.environ["MATDISCO_CACHE"] = str(tmp_path_factory.mktemp("ebsdcache"))
    return simulate_dataset(16, seed=3, config=DET, levels=("noise0", "noise1"),
                            chunk_size=8)


def test_simulation_cache_and_degradation(sim: dict) -> None:
    x, q = sim["noise0"]
    assert x.shape == (16, 20, 20) and x.dtype == np.float32 and np.isfinite(x).all()
    assert not np.allclose(x[0], x[1])  # different orientations -> different patterns
    xd, qd = sim["noise1"]
    assert np.array_equal(q, qd) and not np.allclose(xd, x)
    again = simulate_dataset(16, seed=3, config=DET, levels=("noise0",))  # cache hit
    assert np.array_equal(again["noise0"][0], x)
    # noise grows with the level (correlation with the clean pattern drops)
    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    x3 = degrade_patterns(x, "noise3", quaternions=q, config=DET, seed=0)
    assert corr(xd, x) > corr(x3, x)
    # orientations lie in the m-3m fundamental zone
    from orix.quaternion import Orientation
    from orix.quaternion.symmetry import Oh

    o = Orientation(q, symmetry=Oh)
    assert np.allclose(np.abs(o.reduce().data), np.abs(q), atol=1e-8) or \
        np.allclose(disorientation_deg(o.reduce().data, q), 0.0, atol=1e-6)


def test_dictionary_indexing_recovers_known_orientations(sim: dict) -> None:
    from matdisco.ebsd.dictionary import DictionaryIndexer

    x, q = sim["noise0"]
    extra = sample_orientations(24, seed=11)
    from matdisco.ebsd import simulate_patterns

    dx = np.concatenate([x[:8], simulate_patterns(extra, config=DET)])
    dq = np.concatenate([q[:8], extra])
    di = DictionaryIndexer(dx, dq, detector=DET)
    qi, scores = di.index(x[:8])
    assert np.allclose(disorientation_deg(qi, q[:8]), 0.0, atol=1e-4)
    assert scores.min() > 0.99
    with pytest.raises(MatdiscoError, match="expects"):
        di.index(np.zeros((2, 30, 30), np.float32))


def test_refinement_recovers_perturbed_orientations(sim: dict) -> None:
    from orix.quaternion import Rotation

    from matdisco.ebsd.dictionary import refine_orientations

    x, q = sim["noise0"]
    # start 2-3 degrees away from the truth (a typical OMNet error)
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(4, 3))
    kick = Rotation.from_axes_angles(axes, np.deg2rad(rng.uniform(2, 3, 4)))
    q0 = (kick * Rotation(q[:4])).data
    start = disorientation_deg(q0, q[:4])
    assert start.min() > 1.5
    qr, scores = refine_orientations(x[:4], q0, DET, trust_region=5.0)
    end = disorientation_deg(qr, q[:4])
    assert end.max() < 0.5 * start.min() and scores.shape == (4,)
    with pytest.raises(MatdiscoError, match="initial orientations"):
        refine_orientations(x[:4], q0[:3], DET)
    with pytest.raises(MatdiscoError, match="trust_region"):
        refine_orientations(x[:4], q0, DET, trust_region=0.0)


def test_omnet_refinement_retries_low_scores(sim: dict, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    import matdisco.ebsd.dictionary as dictionary

    x, _ = sim["noise0"]
    est = OMNetIndexer(loss="6d", preset="tiny", detector=DET)
    est.model_ = est._build().eval()
    calls = []

    def fake(patterns, q0, detector, trust):  # type: ignore[no-untyped-def]
        calls.append((len(patterns), trust))
        n = len(patterns)
        if trust == 5.0:  # pattern 0 fails the first pass
            return np.tile([1.0, 0, 0, 0], (n, 1)), np.r_[0.1, np.full(n - 1, 0.95)]
        return np.tile([0.0, 1, 0, 0], (n, 1)), np.full(n, 0.99)

    monkeypatch.setattr(dictionary, "refine_orientations", fake)
    q = est.predict(x[:4], refine=True)
    assert calls == [(4, 5.0), (1, 15.0)]  # only the low-score pattern is retried
    assert np.allclose(q[0], [0, 1, 0, 0]) and np.allclose(q[1:], [1, 0, 0, 0])
    calls.clear()
    est.predict(x[:4], refine=True, retry_trust_region=None)
    assert calls == [(4, 5.0)]


def test_indexer_trains_and_guards_inputs(sim: dict, tmp_path: Path) -> None:
    x, q = sim["noise0"]
    torch.manual_seed(0)
    est = OMNetIndexer(loss="mde", preset="tiny", detector=DET, epochs=20, batch_size=8,
                       lr=3e-3, device="cpu", run_dir=tmp_path / "run")
    est.fit(x, q)
    h = est.history_
    assert h[-1]["train_mde_deg"] < 0.7 * h[0]["train_mde_deg"]  # it learns
    assert (tmp_path / "run" / "checkpoint.safetensors").exists()
    est.save(tmp_path / "model")
    back = OMNetIndexer.load(tmp_path / "model")
    assert np.allclose(back.predict(x), est.predict(x), atol=1e-5)
    with pytest.raises(MatdiscoError, match="trained for detector"):
        OMNetIndexer.load(tmp_path / "model", detector=DetectorConfig())
    with pytest.raises(MatdiscoError, match="expects"):
        back.predict(np.zeros((2, 60, 60), np.float32))
    bad = x.copy()
    bad[3, 2, 2] = np.nan
    with pytest.raises(MatdiscoError, match="pattern 4 contains NaN"):
        back.predict(bad)
    with pytest.raises(MatdiscoError, match=r"shape \(n, rows, cols\)"):
        check_patterns(np.zeros(5))
    m = orientation_metrics(est.predict(x), q, seconds=1.0)
    assert 0 <= m["frac_within_1deg"] <= m["frac_within_2deg"] <= 1 and m["n"] == 16


def test_non_cubic_phase_is_refused() -> None:
    from orix.crystal_map import Phase

    from matdisco.ebsd.io import _check_cubic

    hexa = Phase(name="ti", point_group="6/mmm")
    fake = SimpleNamespace(xmap=SimpleNamespace(phases=[(0, hexa)]))
    with pytest.raises(MatdiscoError, match="only cubic m-3m"):
        _check_cubic(fake, "scan.h5")


def test_workflow_api_train_index_evaluate(tmp_path: Path) -> None:
    """`ebsd train`, `index` and `evaluate` from Python (matdisco.ebsd.workflow)."""
    import json

    import pandas as pd

    from matdisco.ebsd import DetectorConfig, save_dataset, simulate_dataset
    from matdisco.ebsd.workflow import evaluate_runs, index_patterns, train_omnet

    det = DetectorConfig(shape=(20, 20))
    x, q = simulate_dataset(12, seed=3, config=det, levels=("noise0",))["noise0"]
    save_dataset(tmp_path / "d.h5", x, q, {"detector": det.to_dict(), "level": "noise0"})
    run = tmp_path / "run"
    with pytest.raises(MatdiscoError, match="val_fraction"):
        train_omnet(tmp_path / "d.h5", run, val_fraction=1.0)
    assert not run.exists()
    est, met = train_omnet(tmp_path / "d.h5", run, preset="tiny", epochs=2, batch_size=4)
    assert met["epochs_run"] == 2 == len(est.history_) and est.run_dir == run
    assert json.loads((run / "metrics.json").read_text())["n_train"] == met["n_train"]
    with pytest.raises(MatdiscoError, match="overwrite"):
        train_omnet(tmp_path / "d.h5", run, preset="tiny", epochs=2, batch_size=4)
    est, met = train_omnet(tmp_path / "d.h5", run, preset="tiny", epochs=1, batch_size=4,
                           overwrite=True)
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1
    res = index_patterns(tmp_path / "d.h5", run, tmp_path / "m.ang", map_shape=(3, 4),
                         table=tmp_path / "m.csv", step=2.0)
    assert res["n_patterns"] == 12 and res["shape"] == [3, 4] and res["step"] == 2.0
    assert Path(res["ipf_png"]).exists() and len(pd.read_csv(tmp_path / "m.csv")) == 12
    with pytest.raises(MatdiscoError, match="holds 6 points"):
        index_patterns(tmp_path / "d.h5", run, tmp_path / "n.ang", map_shape=(2, 3))
    with pytest.raises(MatdiscoError, match="map_shape"):
        index_patterns(tmp_path / "d.h5", run, tmp_path / "n.ang", map_shape=(0, 12))
    assert not (tmp_path / "n.ang").exists()
    results = evaluate_runs(tmp_path / "d.h5", [run], tmp_path / "ev")
    assert set(results) == {f"omnet_{est.loss}"}
    assert 0 <= results[f"omnet_{est.loss}"]["mean_disorientation_deg"] <= 62.8
    assert (tmp_path / "ev" / "disorientation_hist.png").exists()
    with pytest.raises(MatdiscoError, match="holds a training run"):
        evaluate_runs(tmp_path / "d.h5", [run], run)


def test_cli_simulate_train_index_evaluate(sim: dict, tmp_path: Path) -> None:
    from orix import io as oio

    from matdisco.cli.ebsd import app

    r = CliRunner()
    data = tmp_path / "train.h5"
    res = r.invoke(app, ["simulate", "--output", str(data), "--n", "12", "--shape", "20"])
    assert res.exit_code == 0, res.output
    x, q, meta = load_dataset(data)
    assert x.shape == (12, 20, 20) and meta["detector"]["shape"] == [20, 20]
    run = tmp_path / "run"
    res = r.invoke(app, ["train", str(data), "--run-dir", str(run), "--preset", "tiny",
                         "--epochs", "2", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    assert (run / "model.safetensors").exists() and (run / "config.json").exists()
    import json

    met = json.loads((run / "metrics.json").read_text())
    assert met["epochs_run"] == 2 and met["n_train"] + met["n_val"] == 12
    assert (run / "training_curve.png").stat().st_size > 1000
    for suffix in (".ang", ".h5"):
        out = tmp_path / f"map{suffix}"
        res = r.invoke(app, ["index", str(data), "--run-dir", str(run), "--output", str(out),
                             "--map-shape", "3,4"])
        assert res.exit_code == 0, res.output
        xmap = oio.load(out)
        assert xmap.size == 12 and xmap.shape == (3, 4)
        assert (tmp_path / "map_ipf_z.png").stat().st_size > 500
    res = r.invoke(app, ["index", str(data), "--run-dir", str(run), "--output",
                         str(tmp_path / "refined.ang"), "--refine"])
    assert res.exit_code == 0, res.output
    assert oio.load(tmp_path / "refined.ang").size == 12
    ev = tmp_path / "eval"
    res = r.invoke(app, ["evaluate", str(data), "--run-dir", str(run), "--output", str(ev),
                         "--refine"])
    assert res.exit_code == 0, res.output
    assert (ev / "metrics.json").exists() and (ev / "disorientation_hist.png").exists()
    assert "omnet_mae_mde_refined" in json.loads((ev / "metrics.json").read_text())["results"]
    res = r.invoke(app, ["simulate", "--output", str(tmp_path / "b.h5"), "--level", "bad"])
    assert res.exit_code == 2 and "unknown degradation level" in res.output
    res = r.invoke(app, ["index", str(tmp_path / "missing.h5"), "--run-dir", str(run),
                         "--output", str(tmp_path / "m.ang")])
    assert res.exit_code == 2
    # a PC-jittered training set and an augmented training run
    jit = tmp_path / "jit.h5"
    res = r.invoke(app, ["simulate", "--output", str(jit), "--n", "12", "--shape", "20",
                         "--pc-jitter", "0.003"])
    assert res.exit_code == 0, res.output
    assert load_dataset(jit)[0].shape == (12, 20, 20)
    res = r.invoke(app, ["train", "--data", str(jit), "--run-dir", str(tmp_path / "aug"),
                         "--preset",
                         "tiny", "--epochs", "1", "--batch-size", "4", "--augment", "noise2"])
    assert res.exit_code == 0, res.output
    assert OMNetIndexer.load(tmp_path / "aug").augment == "noise2"
    # two runs with the same loss are both reported
    ev2 = tmp_path / "eval2"
    res = r.invoke(app, ["evaluate", str(data), "--run-dir", str(run), "--run-dir",
                         str(tmp_path / "aug"), "--output", str(ev2)])
    assert res.exit_code == 0, res.output
    assert len(json.loads((ev2 / "metrics.json").read_text())["results"]) == 2
    res = r.invoke(app, ["train", str(jit), "--run-dir", str(tmp_path / "aug2"),
                         "--augment", "noise7"])
    assert res.exit_code == 2 and "augmentation level" in res.output
    res = r.invoke(app, ["simulate", "--output", str(tmp_path / "c.h5"), "--pc-jitter",
                         "0.003", "--level", "noise1"])
    assert res.exit_code == 2 and "clean training set" in res.output


def test_training_set_with_pc_errors(sim: dict, tmp_path: Path) -> None:
    from matdisco.ebsd import simulate_patterns
    from matdisco.ebsd.augment import jittered_pcs, simulate_training_set

    # 600 > 500 patterns: per-pattern PCs need one Dask block per kikuchipy call
    x, q = simulate_training_set(600, seed=4, config=DET, pc_error=0.003)
    assert x.shape == (600, 20, 20) and np.isfinite(x).all()
    x2, q2 = simulate_training_set(600, seed=4, config=DET, pc_error=0.003)  # cache hit
    assert np.array_equal(x, x2) and np.array_equal(q, q2)
    pcs = jittered_pcs(600, DET.pc, 0.003, 0.25, 4 + 7)
    exact = np.all(pcs == np.asarray(DET.pc), axis=1)
    i, j = int(np.flatnonzero(exact)[0]), int(np.flatnonzero(~exact)[0])
    ref = simulate_patterns(q[[i, j]], config=DET)
    assert np.allclose(x[i], ref[0], atol=1e-5) and not np.allclose(x[j], ref[1], atol=1e-3)
    # an augmented indexer trains, and keeps its settings through save/load
    est = OMNetIndexer(loss="6d", preset="tiny", detector=DET, epochs=1, batch_size=32,
                       device="cpu", augment="noise1", clean_fraction=0.5)
    est.fit(x[:64], q[:64])
    est.save(tmp_path / "aug")
    back = OMNetIndexer.load(tmp_path / "aug")
    assert back.augment == "noise1" and back.clean_fraction == 0.5
    assert np.allclose(back.predict(x[:4]), est.predict(x[:4]), atol=1e-5)
    # fine-tuning starts from the given run's weights (a vanishing lr keeps them)
    ft = OMNetIndexer(loss="6d", preset="tiny", detector=DET, epochs=1, batch_size=32,
                      lr=1e-12, device="cpu", augment="noise1", pixel_noise=1.0,
                      init=tmp_path / "aug")
    ft.fit(x[:64], q[:64])
    w_src, w_ft = est.model_.state_dict(), ft.model_.state_dict()
    fresh = OMNetIndexer(loss="6d", preset="tiny", detector=DET, seed=5)._build().state_dict()
    k = next(k for k in w_src if k.endswith("weight") and w_src[k].ndim == 4)
    assert torch.allclose(w_ft[k], w_src[k], atol=1e-6)
    assert not torch.allclose(fresh[k], w_src[k], atol=1e-3)
    with pytest.raises(MatdiscoError, match="cannot start from"):
        OMNetIndexer(loss="mde", preset="tiny", detector=DET, epochs=1, device="cpu",
                     init=tmp_path / "aug").fit(x[:8], q[:8])


def test_cli_train_resume_overwrite_and_bad_inputs(sim: dict, tmp_path: Path) -> None:
    """A failed --overwrite keeps the old run; --resume with another configuration is
    refused before the run's config.json is touched; bad settings, files, configs and
    outputs give one-line errors (exit 2) and leave nothing behind."""
    import json
    import shutil

    from matdisco.cli.ebsd import app

    r = CliRunner()

    def fails(args: list[str], text: str) -> None:
        res = r.invoke(app, args)
        assert res.exit_code == 2 and text in res.output, res.output
        assert res.exception is None or isinstance(res.exception, SystemExit)

    data = tmp_path / "train.h5"
    x, q = sim["noise0"][0][:12], sim["noise0"][1][:12]
    save_dataset(data, x, q, {"detector": DetectorConfig(shape=x.shape[1:]).to_dict()})
    run = tmp_path / "run"
    train = ["train", str(data), "--run-dir", str(run), "--preset", "tiny", "--epochs", "1",
             "--batch-size", "4"]
    assert r.invoke(app, train).exit_code == 0
    cfg0, w0 = (run / "config.json").read_text(), (run / "model.safetensors").read_bytes()
    fails([*train, "--overwrite", "--lr", "-1"], "lr")
    fails([*train[:5], "compact", *train[6:], "--resume"], "cannot resume")
    fails([*train, "--loss", "mae", "--resume"], "differs in loss")
    # more epochs on a finished run would silently train nothing: refused
    fails([*train[:7], "3", *train[8:], "--resume"], "differs in trainer.epochs")
    assert (run / "config.json").read_text() == cfg0
    assert (run / "model.safetensors").read_bytes() == w0
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    # bad settings leave no run directory
    new = str(tmp_path / "new")
    fails([*train[:3], new, *train[4:], "--val-fraction", "1.5"], "--val-fraction")
    fails([*train[:3], new, *train[4:], "--pixel-noise", "-1"], "--pixel-noise")
    fails([*train[:3], new, "--epochs", "-1"], "epochs")
    fails([*train[:3], new, "--init", str(tmp_path / "nosuch")], "not found")
    assert not (tmp_path / "new").exists() and not (tmp_path / "nosuch").exists()
    bad = tmp_path / "zero.h5"
    save_dataset(bad, x, np.zeros_like(q), {})
    fails(["train", str(bad), "--run-dir", new], "row 1 ")
    fails(["train", "--run-dir", new], "missing the training set")
    fails(["train", str(data), "--data", str(bad), "--run-dir", new], "not both")
    import h5py

    with h5py.File(tmp_path / "meta.h5", "w") as f:
        f["patterns"], f["quaternions"] = x, q
        f.attrs["meta"] = "{bad"
    fails(["train", str(tmp_path / "meta.h5"), "--run-dir", new], "meta.h5")
    assert not (tmp_path / "new").exists()
    # outputs and options
    fails(["simulate", "-o", str(tmp_path), "--n", "2"], "is a directory")
    fails(["simulate", "-o", str(tmp_path / "s.txt"), "--n", "2"], "'.txt'")
    fails(["simulate", "-o", str(tmp_path / "s.h5"), "--n", "2", "--pc", "nan,0.2,0.5"],
          "--pc")
    fails(["simulate", "-o", str(tmp_path / "s.h5"), "--n", "2", "--pc-jitter", "-1"],
          "--pc-jitter")
    assert not (tmp_path / "s.h5").exists()
    idx = ["index", str(data), "--run-dir", str(run), "-o", str(tmp_path / "m.ang")]
    fails([*idx, "--map-shape", "3,x"], "--map-shape")
    fails([*idx, "--map-shape", "1,2,3"], "--map-shape")
    fails([*idx[:3], str(tmp_path / "norun"), *idx[4:]], "not found")
    assert not (tmp_path / "norun").exists() and not (tmp_path / "m.ang").exists()
    for i, edit in enumerate(["del c['detector']", "c['detector']['shape'] = 'ab'",
                              "c['pixel_noise'] = 'x'", "del c['loss']"]):
        ed = tmp_path / f"ed{i}"
        shutil.copytree(run, ed)
        c = json.loads((ed / "config.json").read_text())
        exec(edit)
        (ed / "config.json").write_text(json.dumps(c))
        fails([*idx[:3], str(ed), *idx[4:]], f"ed{i}/config.json")
    # evaluate never writes its metrics into a training run
    fails(["evaluate", str(data), "--run-dir", str(run), "-o", str(run)], "training run")
    assert (run / "config.json").read_text() == cfg0
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1


def test_refinement_scores_follow_the_kept_solution(sim: dict,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """predict_with_scores returns the NCC score of the solution kept after the retry
    (the scores were computed, then dropped)."""
    import matdisco.ebsd.dictionary as dictionary

    x, _ = sim["noise0"]
    est = OMNetIndexer(loss="6d", preset="tiny", detector=DET)
    est.model_ = est._build().eval()

    def fake(patterns, q0, detector, trust):  # type: ignore[no-untyped-def]
        n = len(patterns)
        if trust == 5.0:  # patterns 0 and 1 fail the first pass; only 0 does better later
            return np.tile([1.0, 0, 0, 0], (n, 1)), np.r_[0.1, 0.2, np.full(n - 2, 0.95)]
        return np.tile([0.0, 1, 0, 0], (n, 1)), np.r_[0.99, 0.15]

    monkeypatch.setattr(dictionary, "refine_orientations", fake)
    q, score = est.predict_with_scores(x[:4], refine=True)
    assert np.allclose(score, [0.99, 0.2, 0.95, 0.95])
    assert np.allclose(q[0], [0, 1, 0, 0]) and np.allclose(q[1], [1, 0, 0, 0])
    q2, none = est.predict_with_scores(x[:4])
    assert none is None and q2.shape == (4, 4)


def test_cli_index_writes_a_per_pattern_table(sim: dict, tmp_path: Path) -> None:
    """`index --table` writes one row per pattern in input order (index, row, col, x, y,
    quaternion, Euler angles, score) matching the CrystalMap; with --refine the scores
    are in the table and the .h5 map (they used to be dropped). A --map-shape that
    cannot hold the patterns is refused before indexing."""
    import pandas as pd
    from orix import io as oio

    from matdisco.cli.ebsd import app

    r = CliRunner()
    data = tmp_path / "train.h5"
    x, q = sim["noise0"][0][:12], sim["noise0"][1][:12]
    save_dataset(data, x, q, {"detector": DetectorConfig(shape=x.shape[1:]).to_dict()})
    run = tmp_path / "run"
    res = r.invoke(app, ["train", str(data), "--run-dir", str(run), "--preset", "tiny",
                         "--epochs", "1", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["index", str(data), "--run-dir", str(run), "-o",
                         str(tmp_path / "m.ang"), "--map-shape", "3,4", "--table",
                         str(tmp_path / "m.csv")])
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp_path / "m.csv")
    assert list(t.columns) == ["index", "row", "col", "x", "y", "qw", "qx", "qy", "qz",
                               "phi1_deg", "Phi_deg", "phi2_deg", "score"]
    assert t["index"].tolist() == list(range(12)) and t["score"].isna().all()
    assert t["row"].tolist() == [i // 4 for i in range(12)]
    assert t["col"].tolist() == [i % 4 for i in range(12)]
    xmap = oio.load(tmp_path / "m.ang")
    assert np.allclose(t[["x", "y"]].to_numpy(), np.c_[xmap.x, xmap.y])
    assert np.allclose(t[["qw", "qx", "qy", "qz"]].to_numpy(),
                       OMNetIndexer.load(run).predict(x), atol=1e-6)
    res = r.invoke(app, ["index", str(data), "--run-dir", str(run), "-o",
                         str(tmp_path / "r.h5"), "--refine", "--table",
                         str(tmp_path / "r.parquet")])
    assert res.exit_code == 0, res.output
    t = pd.read_parquet(tmp_path / "r.parquet")
    assert t["row"].tolist() == [0] * 12 and t["col"].tolist() == list(range(12))
    assert t["score"].notna().all() and (t["score"] > 0).all()
    assert np.allclose(oio.load(tmp_path / "r.h5").prop["scores"], t["score"])
    res = r.invoke(app, ["index", str(data), "--run-dir", str(run), "-o",
                         str(tmp_path / "z.ang"), "--map-shape", "3,5"])
    assert res.exit_code == 2 and "holds 15 points" in res.output, res.output
    res = r.invoke(app, ["index", str(data), "--run-dir", str(run), "-o",
                         str(tmp_path / "z.ang"), "--table", str(tmp_path / "z.txt")])
    assert res.exit_code == 2 and "--table" in res.output, res.output
    assert not (tmp_path / "z.ang").exists()

    # a real scan (kikuchipy's 3x3 Ni h5ebsd file): its 1.5 um step is read for x, y
    import kikuchipy

    from matdisco.ebsd.evaluation import orientation_table
    from matdisco.ebsd.workflow import read_patterns as _read_patterns

    ni = Path(kikuchipy.__file__).parent / "data" / "kikuchipy_h5ebsd" / "patterns.h5"
    xs, _, nav, step = _read_patterns(ni)
    assert xs.shape == (9, 60, 60) and nav == (3, 3) and step == pytest.approx(1.5)
    assert _read_patterns(data)[3] is None  # our simulated sets have no scan
    t = orientation_table(q[:9], (3, 3), step=1.5)
    assert np.allclose(t["x"], t["col"] * 1.5) and np.allclose(t["y"], t["row"] * 1.5)
    t1 = orientation_table(q[:9], step=2.0)  # no map shape: one row, y = 0 (was empty)
    assert t1["y"].tolist() == [0.0] * 9 and np.allclose(t1["x"], np.arange(9) * 2.0)
    res = r.invoke(app, ["index", str(ni), "--run-dir", str(run), "-o",
                         str(tmp_path / "ni.ang"), "--step", "-1"])
    assert res.exit_code == 2 and "--step must be a positive number" in res.output


def test_ang_output_carries_refinement_scores_as_confidence_index(tmp_path: Path) -> None:
    from orix import io as oio
    from orix.quaternion import Rotation

    from matdisco.ebsd.evaluation import write_crystal_map

    q = Rotation.random(6).data
    scores = np.linspace(0.1, 0.6, 6)
    write_crystal_map(tmp_path / "m.ang", q, (2, 3), scores=scores)
    np.testing.assert_allclose(oio.load(str(tmp_path / "m.ang")).prop["ci"], scores,
                               atol=1e-5)
    write_crystal_map(tmp_path / "n.ang", q, (2, 3))  # without scores: CI stays 0
    assert (oio.load(str(tmp_path / "n.ang")).prop["ci"] == 0).all()
