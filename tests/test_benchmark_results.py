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
