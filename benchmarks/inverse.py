"""Inverse-design benchmark: methods x tasks, measured by re-simulation.

Writes ``benchmarks/results/inverse.json`` (format of BENCHMARKS.md). Records of a task
and method are replaced when re-run, so tasks can be run one after another::

    python benchmarks/inverse.py --tasks sinewave --methods na,ipage_mlhs --seeds 5

The full protocol of the issue is ``--seeds 5 --n-targets 1000 --t-max 100
--n-single 1000`` with the default epochs; the defaults below are reduced for a shared
2-core CPU and every record states the settings it was produced with.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from matdisco._io import write_json
from matdisco.inverse.bench import run_benchmark
from matdisco.training import environment

RESULTS = Path(__file__).resolve().parent / "results" / "inverse.json"


def merge(path: Path) -> None:
    """Rebuild ``path`` from the per-task files ``<stem>_<task>.json`` (re-read now, so
    tasks run in parallel processes do not overwrite each other's records)."""
    records, commands, dates, machine = [], [], [], None
    current = json.loads(path.read_text()) if path.exists() else {"records": []}
    parts = sorted(path.parent.glob(f"{path.stem}_*.json"))
    covered = set()
    for part in parts:
        d = json.loads(part.read_text())
        records += d["records"]
        covered |= {r["task"] for r in d["records"]}
        commands.append(d["command"])
        dates.append(d["date"])
        machine = d["machine"]
    records += [r for r in current.get("records", []) if r["task"] not in covered]
    write_json(path, {"benchmark": "inverse", "command": " ; ".join(commands),
                      "date": max(dates) if dates else current.get("date"),
                      "machine": machine or current.get("machine"), "records": records})


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="sinewave,robotic_arm,ballistics")
    p.add_argument("--methods", default="na,ipage_srs,ipage_lhs,ipage_mlhs,inn,tandem")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-targets", type=int, default=200)
    p.add_argument("--t-max", type=int, default=10)
    p.add_argument("--n-single", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=40,
                   help="epochs of the INN, tandem, cINN, cVAE, MDN (raised by --min-steps)")
    p.add_argument("--forward-epochs", type=int, default=100,
                   help="epochs of the forward surrogate (NA, tandem, iPage)")
    p.add_argument("--min-steps", type=int, default=3000,
                   help="least optimizer steps of every network")
    p.add_argument("--loc-steps", type=int, default=100, help="iPage localization steps")
    p.add_argument("--loc-lr", type=float, default=0.02, help="iPage localization step size")
    p.add_argument("--na-steps", type=int, default=300, help="neural adjoint: Adam steps")
    p.add_argument("--na-starts", type=int, default=4,
                   help="neural adjoint: starting points per solution")
    p.add_argument("--candidates", type=int, default=1,
                   help="iPage: posterior samples localized per solution (best one kept)")
    p.add_argument("--selection", choices=["best", "diverse"], default="best",
                   help="iPage: how solutions are chosen among the candidates")
    p.add_argument("--prescreen", type=int, default=1,
                   help="iPage: posterior samples drawn per localized one (the lowest "
                        "surrogate errors are localized)")
    p.add_argument("--retries", type=int, default=2,
                   help="iPage: re-draws of posterior samples that did not localize")
    p.add_argument("--retry-tol", type=float, default=1e-4,
                   help="iPage: surrogate error (standardized) above which a sample is "
                        "re-drawn")
    p.add_argument("--ipage-z-dim", type=int, default=0,
                   help="latent dimension of the INN that iPage trains itself (0: dx - dy); "
                        "only used when the methods do not include 'inn', whose network "
                        "iPage otherwise reuses")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds below this are read back from the run directories under "
                        "--out instead of being run again (aggregate over all --seeds)")
    p.add_argument("--only-seeds", default=None,
                   help="comma-separated seeds to run into --out without writing results (a "
                        "share of the seeds for one process; aggregate afterwards with "
                        "--first-seed equal to --seeds)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--forward-hidden", type=int, default=256,
                   help="width of the forward surrogate (NA, tandem, iPage)")
    p.add_argument("--forward-depth", type=int, default=4)
    p.add_argument("--forward-arch", choices=["mlp", "cnn"], default=None,
                   help="forward surrogate: MLP, or periodic CNN; default: the task's own "
                        "(CNN for the architecture task, MLP otherwise)")
    p.add_argument("--out", default="runs/inverse_bench")
    p.add_argument("--note", default="shared 2-core CPU, other jobs running; 1 torch thread "
                   "under nice 19; timings are indicative only")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--merge-only", action="store_true",
                   help="only rebuild the results file from the per-task files")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ts = tuple(t for t in (1, 10, 100, 1000) if t <= a.t_max)
    methods = [m for m in a.methods.split(",") if m]
    path = Path(a.results)
    command = "python " + " ".join(shlex.quote(s) for s in [sys.argv[0], *(argv or
                                                                             sys.argv[1:])])
    if a.merge_only:
        merge(path)
        return
    ipage_kw: dict = {"loc_steps": a.loc_steps, "loc_lr": a.loc_lr, "retries": a.retries,
                      "retry_tol": a.retry_tol, "candidates": a.candidates,
                      "selection": a.selection, "prescreen": a.prescreen}
    if a.ipage_z_dim > 0:
        ipage_kw["inn_params"] = {"epochs": a.epochs, "z_dim": a.ipage_z_dim}
    for task in [t for t in a.tasks.split(",") if t]:
        t0 = time.perf_counter()
        records, _ = run_benchmark(task, methods, seeds=a.seeds, n_train=a.n_train,
                                   n_targets=a.n_targets, ts=ts, n_single=a.n_single,
                                   epochs=a.epochs, run_dir=a.out,
                                   forward_kwargs={"forward_hidden": a.forward_hidden,
                                                   "forward_depth": a.forward_depth,
                                                   "forward_epochs": a.forward_epochs,
                                                   **({"forward_arch": a.forward_arch}
                                                      if a.forward_arch else {})},
                                   min_steps=a.min_steps,
                                   method_kwargs={"ipage": ipage_kw,
                                                  "na": {"steps": a.na_steps,
                                                         "starts_per_solution": a.na_starts}},
                                   first_seed=a.first_seed,
                                   only_seeds=([int(k) for k in a.only_seeds.split(",")]
                                               if a.only_seeds else None),
                                   log=lambda s: print(s, flush=True))
        wall = time.perf_counter() - t0
        if a.only_seeds:
            print(f"{task}: seeds {a.only_seeds} written to {a.out} ({wall:.0f} s); "
                  "results not written", flush=True)
            continue
        settings = {"epochs": a.epochs, "forward_epochs": a.forward_epochs,
                    "min_steps": a.min_steps, "loc_steps": a.loc_steps, "loc_lr": a.loc_lr,
                    "retries": a.retries, "retry_tol": a.retry_tol,
                    "candidates": a.candidates, "selection": a.selection,
                    "prescreen": a.prescreen,
                    "na_steps": a.na_steps, "na_starts": a.na_starts,
                    "ipage_z_dim": a.ipage_z_dim or None,
                    "forward_hidden": a.forward_hidden,
                    "forward_depth": a.forward_depth,
                    "t_max": a.t_max, "n_single": a.n_single,
                    "command": command, "wall_seconds_task": round(wall, 1),
                    "note": a.note}
        for r in records:
            r.update(settings)
        part = path.with_name(f"{path.stem}_{task}.json")
        prev = json.loads(part.read_text())["records"] if part.exists() else []
        done = {(r["task"], r["method"]) for r in records}
        kept = [r for r in prev if (r["task"], r["method"]) not in done]
        write_json(part, {
            "benchmark": "inverse",
            "command": command,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "machine": {**environment(), "torch_threads": a.threads,
                        "note": "shared 2-core CPU, loaded by other jobs"},
            "records": kept + records,
        })
        merge(path)
        print(f"{task}: {len(records)} records, {wall:.0f} s -> {path}", flush=True)


if __name__ == "__main__":
    main()
