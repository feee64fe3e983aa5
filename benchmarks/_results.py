"""Helpers for benchmark scripts: machine description and merging records into JSON."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
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


def merge_records(name: str, benchmark: str, records: list[dict[str, Any]]) -> Path:
    """Merge ``records`` into ``results/<name>.json`` (same task/model/metric replaced)."""
    from matdisco._io import write_json

    path = RESULTS / f"{name}.json"
    old: dict[str, Any] = {}
    if path.exists():
        old = json.loads(path.read_text())
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    for r in records:
        r.setdefault("command", command)
        r.setdefault("date", now)

    def key(r: dict[str, Any]) -> tuple:
        return (r.get("task"), r.get("model", r.get("method")), r.get("metric"))

    new_keys = {key(r) for r in records}
    kept = [r for r in old.get("records", []) if key(r) not in new_keys]
    out = {"benchmark": benchmark, "command": command, "date": now, "machine": machine(),
           "records": kept + records}
    return write_json(path, out)
