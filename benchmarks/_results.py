"""Helpers for benchmark scripts: machine description and merging records into JSON."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU and torch version."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        tv = torch.__version__
    except ImportError:  # pragma: no cover
        gpu, tv = None, None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": tv}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on ``path.lock`` (POSIX), so that two benchmark processes merging
    into the same results file do not lose each other's records."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no advisory locks (Windows): merge unlocked
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(path.suffix + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def merge_records(name: str, benchmark: str, records: list[dict[str, Any]]) -> Path:
    """Merge ``records`` into ``results/<name>.json`` (same task/model/metric replaced).

    The read-modify-write runs under a file lock: benchmarks running side by side may
    merge into the same file.
    """
    from matdisco._io import write_json

    path = RESULTS / f"{name}.json"
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    for r in records:
        r.setdefault("command", command)
        r.setdefault("date", now)

    def key(r: dict[str, Any]) -> tuple:
        return (r.get("task"), r.get("model", r.get("method")), r.get("metric"))

    new_keys = {key(r) for r in records}
    with _locked(path):
        old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        kept = [r for r in old.get("records", []) if key(r) not in new_keys]
        out = {"benchmark": benchmark, "command": command, "date": now, "machine": machine(),
               "records": kept + records}
        return write_json(path, out)
