"""Benchmark of 2D background removal and PADNet phase-region classification (issue #5).

Tasks
-----
background_removal
    Seconds to remove the MF and CS background of one 2048×2048 image (window f = 200),
    best of 3, one CPU thread.
slac_like, nist_like
    A simulated Sn–Ti–Zn–O library (177 samples, 8 regions) with the irregular (SLAC-like,
    one frame) or smooth (NIST-like, two frames) background. PADNet is trained on I, I−MF
    and I−CS and tested on I, I−MF and I−CS (the 3×3 matrix), with frozen and/or
    trainable slope filters, image only (no composition branch); 1D baselines: pyFAI
    integration → envelope subtraction → AdaBoost (and LR, RF), with and without the
    composition, on the same folds. Also the prediction time per image.

Writes ``benchmarks/results/xrd_padnet.json`` (records merged by task/model/metric).

Usage (the full study setting is ``--size 512 --folds 10``; the defaults are reduced for a
shared 2-core CPU)::

    python benchmarks/xrd_padnet.py --tasks background_removal slac_like \\
        --size 64 --folds 5 --max-folds 1 --epochs 30
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import merge_records  # noqa: E402

from matdisco.xrd.background import default_window, time_background  # noqa: E402
from matdisco.xrd.baselines import cross_validate_baseline, integrate_images  # noqa: E402
from matdisco.xrd.library import make_library  # noqa: E402
from matdisco.xrd.padnet import PADNetClassifier, cross_validate_matrix  # noqa: E402


def bench_background(repeats: int, cpu_note: str = "shared loaded 2-core CPU") -> list[dict]:
    recs = []
    for m in ("mf", "cs"):
        s = time_background(m, 2048, 200, repeats=repeats)
        # the cost must not grow with the window (the study's f×f filter did: ~f²)
        scan = {f: round(time_background(m, 2048, f, repeats=repeats), 4)
                for f in (25, 100, 400)}
        print(f"background {m}: {s:.3f} s per 2048² image (f = 200); by f: {scan}",
              flush=True)
        recs.append({"task": "background_removal", "method": m,
                     "metric": "seconds_per_2048_image", "value": s, "unit": "s",
                     "window": 200, "seconds_by_window": scan,
                     "threads": torch.get_num_threads(),
                     "note": "separable running-window filters (scipy.ndimage), median of "
                             f"{repeats}, {cpu_note}"})
    return recs


def bench_library(task: str, args: argparse.Namespace) -> list[dict]:
    bg, frames = ("irregular", 1) if task == "slac_like" else ("smooth", 2)
    t0 = time.perf_counter()
    lib = make_library(n_samples=args.n_samples, background=bg, n_frames=frames,
                       shape=args.size, seed=args.seed, spottiness=args.spottiness,
                       counts=args.counts, background_level=args.background_level)
    task = task + args.task_suffix
    print(f"{task}: library {lib.images.shape} in {time.perf_counter() - t0:.0f} s, "
          f"region counts {np.bincount(lib.labels).tolist()}", flush=True)
    common = {"n_samples": len(lib), "image_size": args.size, "n_frames": frames,
              "folds": args.folds, "folds_run": args.max_folds or args.folds - args.first_fold,
              "first_fold": args.first_fold,
              "background": bg, "seed": args.seed, "spottiness": args.spottiness,
              "counts": args.counts, "background_level": args.background_level}
    recs: list[dict] = []
    # 1D baselines
    P = integrate_images(lib.images, lib.geometries, npt=args.npt)
    for method in args.baselines:
        for comp in (False, True):
            r = cross_validate_baseline(P, lib.labels, lib.compositions if comp else None,
                                        n_splits=args.folds, max_folds=args.max_folds,
                                        first_fold=args.first_fold,
                                        seed=args.seed, method=method, use_composition=comp)
            name = f"{method}_1d" + ("_comp" if comp else "")
            print(f"{task} {name}: {r['mean']:.3f} ± {r['std']:.3f}", flush=True)
            recs.append({"task": task, "model": name, "metric": "accuracy",
                         "value": r["mean"], "std": r["std"], "fold_values": r["folds"],
                         **common})
    f_bg = default_window(args.size)
    for filters in args.filters:
        t0 = time.perf_counter()
        res = cross_validate_matrix(lib.images, lib.labels, None, n_splits=args.folds,
                                    max_folds=args.max_folds, seed=args.seed,
                                    first_fold=args.first_fold,
                                    f_background=f_bg, f=args.f,
                                    trainable_filters=(filters == "trainable"),
                                    epochs=args.epochs, patience=args.patience,
                                    attention=args.attention, device="cpu",
                                    train_on=tuple(args.train_on),
                                    test_on=tuple(args.test_on))
        dt = time.perf_counter() - t0
        suffix = ("" if filters == "frozen" else "_trainable") + \
            ("" if args.attention == "softmax" else f"_attn-{args.attention}")
        for key, v in res.items():
            if not key.startswith("train-"):
                continue
            print(f"{task} padnet_{key}{suffix} ({filters}): {v['mean']:.3f} ± {v['std']:.3f}",
                  flush=True)
            recs.append({"task": task, "model": f"padnet_{key}{suffix}", "metric": "accuracy",
                         "value": v["mean"], "std": v["std"], "fold_values": v["folds"],
                         "slope_filters": filters, "use_composition": False, "f": args.f,
                         "pool_grid": PADNetClassifier().pool_grid,
                         "transform": PADNetClassifier().transform,
                         "attention": args.attention,
                         "epochs_max": args.epochs, "background_window": f_bg, **common})
        recs.append({"task": task, "model": f"padnet{suffix}", "metric": "seconds_per_image",
                     "value": res["seconds_per_image"], "unit": "s",
                     "note": f"one image at a time, CPU, {torch.get_num_threads()} thread(s), "
                             f"{args.cpu_note}",
                     **common})
        print(f"{task} padnet ({filters}) cv time {dt:.0f} s, "
              f"{res['seconds_per_image'] * 1e3:.1f} ms per image", flush=True)
    return recs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["background_removal", "slac_like"],
                    choices=["background_removal", "slac_like", "nist_like"])
    ap.add_argument("--size", type=int, default=64, help="image size (study: 2048)")
    ap.add_argument("--n-samples", type=int, default=177)
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--max-folds", type=int, default=None, help="run only the first folds")
    ap.add_argument("--first-fold", type=int, default=0,
                    help="start at this fold (0-based) of the split, with --max-folds: run a "
                         "long cross-validation in parts (record it under its own "
                         "--task-suffix)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--f", type=int, default=3, help="slope-filter size")
    ap.add_argument("--npt", type=int, default=500, help="1D integration points")
    ap.add_argument("--filters", nargs="+", default=["frozen"],
                    choices=["frozen", "trainable"])
    ap.add_argument("--baselines", nargs="+", default=["adaboost", "logreg", "rf"])
    ap.add_argument("--train-on", nargs="+", default=["none", "mf", "cs"],
                    choices=["none", "mf", "cs"],
                    help="PADNet training images (none = raw I); fewer = a cheaper grid")
    ap.add_argument("--test-on", nargs="+", default=["none", "mf", "cs"],
                    choices=["none", "mf", "cs"], help="PADNet test images")
    ap.add_argument("--attention", default="softmax", choices=["softmax", "none"],
                    help="PAD layer: the study's spatial softmax or none (records of 'none' "
                         "are named padnet_..._attn-none)")
    lib_defaults = inspect.signature(make_library).parameters
    ap.add_argument("--spottiness", type=float, default=lib_defaults["spottiness"].default,
                    help="ring texture of the library (0 smooth rings, 1 coarse grains)")
    ap.add_argument("--counts", type=float, default=lib_defaults["counts"].default,
                    help="photon counts scale")
    ap.add_argument("--background-level", type=float, default=None,
                    help="background strength (default: the family's)")
    ap.add_argument("--task-suffix", default="",
                    help="appended to the task names (e.g. _textured for a library variant)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu-note", default="shared loaded 2-core CPU",
                    help="machine state, recorded with the timings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    records: list[dict] = []
    for task in args.tasks:
        recs = bench_background(args.repeats, args.cpu_note) if task == "background_removal" else \
            bench_library(task, args)
        records += recs
        path = merge_records("xrd_padnet", "xrd_padnet", recs)
    print(f"wrote {len(records)} records -> {path}")


if __name__ == "__main__":
    main()
