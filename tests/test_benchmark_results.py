"""The benchmarks' results helper: concurrent merges into one file lose no records."""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _merge_many(results_dir: str, worker: int, n: int) -> None:
    sys.path.insert(0, str(BENCH))
    import _results

    _results.RESULTS = Path(results_dir)
    for j in range(n):
        _results.merge_records("t", "t", [{"task": f"w{worker}", "model": f"m{j}",
                                           "metric": "x", "value": j}])


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_concurrent_merges_keep_every_record(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_merge_many, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    recs = json.loads((tmp_path / "t.json").read_text())["records"]
    assert len(recs) == 60
    assert {(r["task"], r["model"]) for r in recs} == {(f"w{w}", f"m{j}") for w in range(4)
                                                       for j in range(15)}
    # a second merge of the same keys replaces, not duplicates
    _merge_many(str(tmp_path), 0, 15)
    assert len(json.loads((tmp_path / "t.json").read_text())["records"]) == 60


def test_refine_benchmark_quick_runs_every_part(tmp_path: Path) -> None:
    """A smoke run of benchmarks/refine.py (tiny sizes) goes through the purity and the
    crystal-system parts and leaves the committed results file alone."""
    import os
    import subprocess

    results = BENCH / "results" / "refine.json"
    before = results.read_bytes() if results.exists() else None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MATDISCO_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, str(BENCH / "refine.py"), "--task", "xrd_phases",
                        "--quick", "--length", "400", "--ref-seeds", "0",
                        "--run-dir", str(tmp_path / "run")],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = json.loads((tmp_path / "run" / "quick_records.json").read_text())
    keys = {(x["task"], x["method"], x["metric"]) for x in recs}
    for method in ("raw", "nmf", "dwt", "refined", "refined_background"):
        for metric in ("l1", "l2", "kl", "ncc", "pure_fraction"):
            assert ("xrd_phases", method, metric) in keys
    assert ("xrd_phases", "refined", "accuracy") in keys
    assert ("xrd_degraded", "refined_pred+proto+reg", "accuracy") in keys
    assert (results.read_bytes() if results.exists() else None) == before


def test_refine_headline_aliases_the_lstm_task(tmp_path: Path, monkeypatch) -> None:
    """``--task headline`` copies the source task's purity/distance records to the
    BENCHMARKS.md names, keeps the records it displaces (renamed) and can run twice."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("refine_bench", BENCH / "refine.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    path = tmp_path / "refine.json"
    monkeypatch.setattr(mod, "RESULTS", path)
    src = [{"task": "xrd_phases_lstm", "method": m, "metric": k, "value": i + 0.5}
           for i, m in enumerate(mod.HEADLINE_METHODS.values()) for k in mod.HEADLINE_METRICS]
    own = [{"task": "xrd_phases", "method": "refined", "metric": "l1", "value": 9.0},
           {"task": "xrd_phases", "method": "refined", "metric": "accuracy", "value": 0.7}]
    path.write_text(json.dumps({"commands": [{"task": "xrd_phases_lstm", "command": "C"}],
                                "records": src + own}))
    for _ in range(2):
        mod.headline("xrd_phases_lstm")
        recs = json.loads(path.read_text())["records"]
        by = {(r["task"], r["method"], r["metric"]): r for r in recs}
        assert len(by) == len(recs) == len(src) + len(src) + len(own)
        h = by[("xrd_phases", "refined", "l1")]
        assert h["value"] == 3.5 and h["alias_of"] == "xrd_phases_lstm/refined_background"
        assert h["command"] == "C"
        assert by[("xrd_phases", "refined_cnn1d_judge", "l1")]["value"] == 9.0
        assert by[("xrd_phases", "refined", "accuracy")]["value"] == 0.7  # not a purity name
    with pytest.raises(SystemExit, match="run it first"):
        mod.headline("xrd_phases_missing")
