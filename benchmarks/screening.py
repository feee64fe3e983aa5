"""Screening benchmarks of issue #2 (results merge into benchmarks/results/screening.json).

Stages (run one or several with ``--stage``; each record stores its own command):

* ``distill``   train the default screening model (small MLP distilled from ElemNet)
* ``mae``       MAE on the OQMD test file: screening model and ElemNet
* ``throughput`` raw inference and end-to-end compositions/s (medians of repeats), and
                the fast-path variants (threads, batch size, TorchScript, sparse input)
* ``memory``    peak RSS of a 1e6 and a 1e7 composition run (separate processes)
* ``dask``      2-worker LocalCluster vs in-process on a 1e7 space; 450M projection
* ``scan``      all binaries + ternaries of 86 elements, hull summary vs OQMD
* ``holdout``   spurious stable predictions in Ti-O and Na-Fe-Mn-O

The CPU is a shared, loaded 2-core machine: every timing is a median of repeats and is
recorded with the load average at the time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import merge_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs"
WORK = RUNS / "screening"
STUDENT = WORK / "screening_model"


def _load() -> float:
    return os.getloadavg()[0]


def teacher_path() -> Path:
    """The lead's ElemNet OQMD run (finished one preferred)."""
    for name in ("elemnet", "elemnet_try1"):
        p = RUNS / "oqmd" / name
        if (p / "metrics.json").exists():
            return p
    raise SystemExit("no finished ElemNet run under runs/oqmd/")


def oqmd(split: str) -> pd.DataFrame:
    from matdisco.data import shared_data_dir

    d = shared_data_dir()
    if d is None:
        raise SystemExit("shared OQMD data not found")
    return pd.read_csv(d / "oqmd_formation_enthalpy" / f"{split}.csv")


def stage_distill(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from matdisco.data import encode_fractions
    from matdisco.screening.distill import distill

    torch.set_num_threads(args.threads)
    teacher = teacher_path()
    val = oqmd("val")
    real = encode_fractions(val["formula"])
    widths = [int(w) for w in args.widths.split(",")]
    t0 = time.perf_counter()
    distill(teacher, STUDENT, real_fractions=real, n_synthetic=args.n_synthetic,
            widths=widths, epochs=args.epochs, seed=0, patience=6, progress=False,
            overwrite=True)
    return [{"task": "distillation", "model": "screening_model", "metric": "train_seconds",
             "value": time.perf_counter() - t0, "unit": "s", "teacher": str(teacher),
             "widths": widths, "n_real": len(real), "n_synthetic": args.n_synthetic,
             "epochs": args.epochs, "load_avg": _load()}]


def stage_mae(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from matdisco.data import encode_fractions
    from matdisco.screening.models import load_model

    torch.set_num_threads(args.threads)
    test = oqmd("test")
    fr = encode_fractions(test["formula"])
    y = test["target"].to_numpy()
    recs = []
    maes = {}
    for name, path in (("screening_model", STUDENT), ("elemnet", teacher_path())):
        m = load_model(path)
        pred = np.concatenate([m.predict_fractions(fr[i:i + 8192])[0]
                               for i in range(0, len(fr), 8192)])
        maes[name] = float(np.mean(np.abs(pred - y)))
        recs.append({"task": "oqmd_formation_enthalpy", "model": name, "metric": "mae",
                     "value": maes[name], "unit": "eV/atom", "n_test": len(y),
                     "run": str(Path(path).relative_to(ROOT))})
    recs.append({"task": "oqmd_formation_enthalpy", "model": "screening_model",
                 "metric": "mae_ratio_vs_elemnet",
                 "value": maes["screening_model"] / maes["elemnet"], "target": 1.10})
    return recs


def _median_rate(fn: Any, n: int, repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return float(np.median(rates)), rates


def stage_throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from matdisco.screening import CompositionSpace
    from matdisco.screening.models import load_model
    from matdisco.screening.run import screen

    recs: list[dict[str, Any]] = []
    n = args.n_throughput
    space = CompositionSpace(chunk_size=n // 4)  # the full 86-element, 4-ary space
    model = load_model(STUDENT)
    torch.set_num_threads(args.threads)
    # raw inference: the model alone on pre-built inputs of the same rows, in batches
    # (the (column, fraction) pairs the runner feeds it; dense fractions as a variant)
    start = 200_000_000
    elems, amts = space.indices(start, start + n)
    cols, vals = space.sparse_inputs(elems, amts, model.elements)
    fr = space.fractions_from_indices(elems, amts, model.elements)
    bs = args.batch_size

    def raw(m: Any = model, b: int = bs, dense: bool = False) -> None:
        for i in range(0, n, b):
            if dense or not getattr(m, "supports_sparse", False):
                m.predict_fractions(fr[i:i + b])
            else:
                m.predict_sparse(cols[i:i + b], vals[i:i + b])

    raw()
    raw_rate, raw_all = _median_rate(raw, n, args.repeats)
    recs.append({"task": "throughput", "model": "raw_inference",
                 "metric": "compositions_per_s", "value": raw_rate, "runs": raw_all,
                 "n": n, "threads": args.threads, "batch_size": bs, "load_avg": _load(),
                 "model_run": "runs/screening/screening_model"})

    # end to end: enumerate + encode + predict + write Parquet, fresh output each repeat
    sub = CompositionSpace(chunk_size=n // 4)
    out = WORK / "tmp_e2e"

    def e2e() -> None:
        shutil.rmtree(out, ignore_errors=True)
        screen(sub, STUDENT, out, batch_size=bs, threads=args.threads, max_chunks=4)

    e2e()
    e2e_rate, e2e_all = _median_rate(e2e, n, args.repeats)
    shutil.rmtree(out, ignore_errors=True)
    recs.append({"task": "throughput", "model": "end_to_end", "metric": "compositions_per_s",
                 "value": e2e_rate, "runs": e2e_all, "n": n, "threads": args.threads,
                 "batch_size": bs, "load_avg": _load(), "target": 20000})
    recs.append({"task": "throughput", "model": "end_to_end", "metric": "ratio_to_raw",
                 "value": e2e_rate / raw_rate, "target": 0.8})

    # what helps: threads, batch size, TorchScript, and the ElemNet teacher itself
    variants: list[tuple[str, Any, int, int, bool]] = []
    for th in (1, 2):
        for b in (4096, 65536):
            variants.append((f"screening_model_sparse_t{th}_b{b}", model, th, b, False))
    variants.append(("screening_model_dense_t1_b65536", model, 1, 65536, True))
    variants.append(("screening_model_dense_jit_t1_b65536", load_model(STUDENT, jit=True), 1,
                     65536, True))
    for name, m, th, b, dense in variants:
        torch.set_num_threads(th)
        raw(m, b, dense)
        r, rs = _median_rate(lambda m=m, b=b, d=dense: raw(m, b, d), n, args.repeats)
        recs.append({"task": "throughput_variants", "model": name,
                     "metric": "compositions_per_s", "value": r, "runs": rs, "n": n,
                     "load_avg": _load()})
    teacher = load_model(teacher_path())
    nt = min(n, args.n_elemnet)
    for th in (1, 2):
        torch.set_num_threads(th)
        r, rs = _median_rate(lambda th=th: [teacher.predict_fractions(fr[i:i + 4096])
                                            for i in range(0, nt, 4096)], nt, args.repeats)
        recs.append({"task": "throughput_variants", "model": f"elemnet_t{th}_b4096",
                     "metric": "compositions_per_s", "value": r, "runs": rs, "n": nt,
                     "load_avg": _load()})
    torch.set_num_threads(args.threads)
    return recs


def _mem_child(n: int, threads: int, batch_size: int, chunk: int) -> None:
    """Screen the first n compositions of the full space; print peak RSS (MB)."""
    from matdisco.screening import CompositionSpace
    from matdisco.screening.run import screen

    out = WORK / f"tmp_mem_{n}"
    shutil.rmtree(out, ignore_errors=True)
    space = CompositionSpace(chunk_size=chunk) if chunk else CompositionSpace()
    chunk = space.chunk_size
    t = time.perf_counter()
    screen(space, STUDENT, out, batch_size=batch_size, threads=threads,
           max_chunks=-(-n // chunk))
    dt = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"n": n, "peak_rss_mb": _peak_rss_mb(), "seconds": dt}))


def _peak_rss_mb() -> float:
    """This process's peak RSS. ``VmHWM`` starts afresh at ``exec``; ``ru_maxrss`` does not
    (a child started by a large parent would report the parent's size)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    from matdisco.screening import CompositionSpace

    recs = []
    res = {}
    sizes = [int(float(x)) for x in args.mem_sizes.split(",")]
    names = [f"{n:.0e}".replace("+0", "").replace("+", "") for n in sizes]
    for n, name in zip(sizes, names, strict=True):
        cmd = [sys.executable, __file__, "--mem-child", str(n), "--threads", str(args.threads),
               "--batch-size", str(args.batch_size)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        res[name] = r
        recs.append({"task": "memory", "model": name, "metric": "peak_rss_mb",
                     "value": r["peak_rss_mb"], "seconds": r["seconds"],
                     "compositions_per_s": n / r["seconds"],
                     "chunk_size": CompositionSpace().chunk_size,
                     "load_avg": _load()})
    recs.append({"task": "memory", "model": f"{names[1]}_vs_{names[0]}", "metric": "ratio",
                 "value": res[names[1]]["peak_rss_mb"] / res[names[0]]["peak_rss_mb"],
                 "target": 1.10})
    return recs


def stage_dask(args: argparse.Namespace) -> list[dict[str, Any]]:
    from matdisco.screening import CompositionSpace
    from matdisco.screening.run import screen

    n = args.n_dask
    space = CompositionSpace()  # default chunks (250k): 40 tasks for 10M
    chunk = space.chunk_size
    k = -(-n // chunk)
    times = {}
    for name, kw in (("inprocess_t1", {"threads": 1}), ("inprocess_t2", {"threads": 2}),
                     ("localcluster_2", {"workers": 2, "threads": 1}),
                     ("localcluster_2_warm", {"threads": 1})):
        out = WORK / f"tmp_dask_{name}"
        shutil.rmtree(out, ignore_errors=True)
        cluster = None
        if name.endswith("_warm"):  # workers already started (a standing cluster)
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                   protocol="tcp", dashboard_address=None)
            kw = {**kw, "scheduler": cluster.scheduler_address}
        t = time.perf_counter()
        res = screen(space, STUDENT, out, batch_size=args.batch_size, max_chunks=k, **kw)
        times[name] = time.perf_counter() - t
        if cluster is not None:
            cluster.close()
        assert res.completed == k
        shutil.rmtree(out, ignore_errors=True)
    best_in = min(times["inprocess_t1"], times["inprocess_t2"])
    speedup = best_in / times["localcluster_2"]
    speedup_warm = best_in / times["localcluster_2_warm"]
    rate2 = k * chunk / times["localcluster_2_warm"]
    full = len(CompositionSpace())
    proj = {f"{m}_machines_hours": full / (rate2 * m) / 3600 for m in (1, 8, 64)}
    return [{"task": "dask_localcluster_2", "model": "speedup_vs_inprocess", "metric": "ratio",
             "value": speedup, "n": k * chunk, "seconds": times, "load_avg": _load(),
             "note": "in-process baseline = faster of 1 and 2 torch threads; cluster "
                     "wall time includes starting the 2 worker processes"},
            {"task": "dask_localcluster_2", "model": "speedup_vs_inprocess_warm",
             "metric": "ratio", "value": speedup_warm, "n": k * chunk, "load_avg": _load(),
             "note": "workers started before timing (a standing cluster)"},
            {"task": "dask_localcluster_2", "model": "projection_450M", "metric": "hours",
             "value": proj["1_machines_hours"], "projection": proj, "space_size": full,
             "rate_per_machine": rate2,
             "note": "rate of the warm 2-worker cluster on this 2-core machine; linear "
                     "scaling over machines assumed (independent chunks)"}]


def stage_scan(args: argparse.Namespace) -> list[dict[str, Any]]:
    from matdisco._io import write_json, write_table
    from matdisco.screening import CompositionSpace
    from matdisco.screening.hull import analyse_screen, load_references
    from matdisco.screening.run import screen

    space = CompositionSpace(arities=[int(a) for a in args.scan_arities.split(",")],
                             max_atoms=args.scan_max_atoms, chunk_size=1_000_000)
    out = WORK / f"scan_{args.scan_arities.replace(',', '')}_{args.scan_max_atoms}"
    t = time.perf_counter()
    res = screen(space, STUDENT, out, batch_size=args.batch_size, threads=args.threads,
                 keep_below=-0.2)
    t_pred = time.perf_counter() - t
    refs = load_references(pd.concat([oqmd("val"), oqmd("test")], ignore_index=True))
    t = time.perf_counter()
    stable, per, totals = analyse_screen(out, refs, threshold=0.2)
    t_hull = time.perf_counter() - t
    write_table(WORK / "scan_candidates.parquet", stable)
    write_table(WORK / "scan_summary.csv", per)
    top = {a: per[per["arity"] == a].head(5)[["system", "n_candidates", "examples"]]
           .to_dict("records") for a in (2, 3)}
    write_json(WORK / "scan_summary.json", {"totals": totals, "top_systems": top})
    return [{"task": f"scan_arity{args.scan_arities}_atoms{args.scan_max_atoms}_86",
             "model": "screening_model",
             "metric": "n_candidates_0.2_below_hull", "value": len(stable),
             "by_arity": totals, "n_compositions": len(space),
             "rows_kept_predicted_below_-0.2": res.rows_written,
             "n_new": int((~stable["known"]).sum()) if len(stable) else 0,
             "predict_seconds": t_pred, "hull_seconds": t_hull,
             "top_systems": top, "load_avg": _load()}]


def stage_holdout(args: argparse.Namespace) -> list[dict[str, Any]]:
    from matdisco._io import save_figure
    from matdisco.screening.hull import (
        ReferenceHulls,
        load_references,
        plot_phase_diagram,
        spurious_stable,
    )

    refs = load_references(pd.concat([oqmd("val"), oqmd("test")], ignore_index=True))
    hulls = ReferenceHulls(refs)
    models = {"elemnet": teacher_path(), "rf_comp": RUNS / "oqmd" / "rf_comp",
              "rf_phys": RUNS / "oqmd" / "rf_phys"}
    recs = []
    for system in ("Ti-O", "Na-Fe-Mn-O"):
        for name, path in models.items():
            if not (path / "metrics.json").exists():
                continue
            r = spurious_stable(path, hulls, system, margin=args.margin)
            metric = "spurious_stable" if args.margin == 0 else \
                f"spurious_stable_margin{args.margin}"
            recs.append({"task": f"holdout_{system}", "model": name,
                         "metric": metric, "value": r["n_spurious"], "margin": args.margin,
                         "n_predicted_stable": r["n_predicted_stable"],
                         "n_known_stable": r["n_known_stable"], "spurious": r["spurious"],
                         "grid_size": r["grid_size"], "max_atoms": r["max_atoms"],
                         "tol": r["tol"], "run": str(path.relative_to(ROOT))})
    fig = plot_phase_diagram("Ti-O", hulls, {k: v for k, v in models.items()
                                             if (v / "metrics.json").exists()})
    save_figure(WORK / "phase_diagram_Ti-O.png", fig)
    fig = plot_phase_diagram("Fe-Mn-O", hulls, {"elemnet": teacher_path()})
    save_figure(WORK / "phase_diagram_Fe-Mn-O.png", fig)
    return recs


STAGES = {"distill": stage_distill, "mae": stage_mae, "throughput": stage_throughput,
          "memory": stage_memory, "dask": stage_dask, "scan": stage_scan,
          "holdout": stage_holdout}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", action="append", choices=list(STAGES) + ["all"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-throughput", type=int, default=1_000_000)
    ap.add_argument("--n-dask", type=int, default=10_000_000)
    ap.add_argument("--n-elemnet", type=int, default=20_000,
                    help="rows for the ElemNet throughput variants")
    ap.add_argument("--mem-sizes", default="1e6,1e7", help="two run sizes for peak RSS")
    ap.add_argument("--scan-arities", default="2,3")
    ap.add_argument("--scan-max-atoms", type=int, default=10)
    ap.add_argument("--margin", type=float, default=0.0,
                    help="holdout: min depth below the other predicted points (eV/atom)")
    ap.add_argument("--n-synthetic", type=int, default=100_000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--widths", default="256,128,64")
    ap.add_argument("--mem-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mem-chunk", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child is not None:
        _mem_child(args.mem_child, args.threads, args.batch_size, args.mem_chunk)
        return
    import torch

    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    stages = list(STAGES) if not args.stage or "all" in args.stage else args.stage
    for s in stages:
        t = time.perf_counter()
        recs = STAGES[s](args)
        for r in recs:
            r.setdefault("stage_seconds", time.perf_counter() - t)
        path = merge_records("screening", "screening", recs)
        print(f"[{s}] {time.perf_counter() - t:.0f}s -> {path}")
        for r in recs:
            print("  ", {k: v for k, v in r.items() if k in ("task", "model", "metric",
                                                              "value")})


if __name__ == "__main__":
    main()
