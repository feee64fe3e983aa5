"""EBSD benchmark: torch disorientation vs orix; OMNet vs dictionary indexing on Ni.

Writes ``benchmarks/results/ebsd.json`` (see ../shared/BENCHMARKS.md). Every stage
merges its records as soon as it finishes, so a partial run still leaves real figures.

Reduced default (CPU): 60x60 patterns, a training set of ``--n-train`` random
orientations in the m-3m fundamental zone, OMNet ``compact`` trained for ``--epochs``
epochs per loss; the dictionary holds the same number of simulated patterns as the
training set (the issue's fairness condition); refinement runs on ``--n-refine``
patterns per level because kikuchipy's refinement is slow on this CPU. OMNet's solutions
are also refined (``<model>_refined``: dictionary-free indexing, trust region
``--omnet-trust``). ``--load DIR:NAME,...`` evaluates trained runs instead of training.

    python benchmarks/ebsd.py                       # reduced default
    python benchmarks/ebsd.py --n-train 300000 --epochs 100 --preset full   # the study
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import merge_records  # noqa: E402

T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def rec(task: str, model: str, metric: str, value: float, unit: str, **kw: object) -> dict:
    return {"task": task, "model": model, "metric": metric, "value": float(value),
            "unit": unit, **kw}


def bench_disorientation(n: int) -> list[dict]:
    from orix.quaternion import Orientation
    from orix.quaternion.symmetry import Oh

    from matdisco.ebsd.rotations import disorientation_angle, random_quaternions

    a, b = random_quaternions(n, 101), random_quaternions(n, 202)
    b[: n // 5] = a[: n // 5] + 1e-3 * np.random.default_rng(0).normal(size=(n // 5, 4))
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    ref = np.rad2deg(Orientation(a, symmetry=Oh).angle_with(Orientation(b, symmetry=Oh)))
    out = []
    for dtype, name in ((torch.float64, "torch"), (torch.float32, "torch_float32")):
        t = time.perf_counter()
        d = disorientation_angle(torch.tensor(a, dtype=dtype), torch.tensor(b, dtype=dtype),
                                 degrees=True).double().numpy()
        dt = time.perf_counter() - t
        out.append(rec("disorientation_vs_orix", name, "max_abs_error_deg",
                       np.abs(d - ref).max(), "deg", n_pairs=n, pairs_per_s=n / dt))
    return out


def clean_set(n: int, det: object) -> tuple:
    """``n`` clean patterns at the exact PC (seed 1: the training orientations)."""
    from matdisco.ebsd import simulate_dataset

    return simulate_dataset(n, seed=1, config=det, levels=("noise0",))["noise0"]


def bench_real(dictionary: object, models: dict, run: object, trust: float = 5.0,
               retry: float | None = 15.0) -> None:
    """kikuchipy's real 3x3 Ni map: dictionary indexing + refinement vs the shipped
    orientations, and every OMNet against both (disorientation per pattern)."""
    from matdisco.ebsd.evaluation import disorientation_deg, plot_ipf_map
    from matdisco.ebsd.io import load_bundled_nickel

    xr, shape, s = load_bundled_nickel()
    q_ref = s.xmap.rotations.data.reshape(-1, 4)
    ref = "orientations shipped with kikuchipy's nickel_ebsd_small"
    qd, _ = dictionary.index(xr)
    qr, _ = dictionary.refine(xr, qd)
    recs = []
    for name, q in (("dictionary", qd), ("dictionary_refined", qr)):
        d = disorientation_deg(q, q_ref)
        recs.append(rec("real_ni_3x3", name, "mean_disorientation_deg", d.mean(), "deg",
                        per_pattern=d.round(3).tolist(), reference=ref, n_test=len(d),
                        dictionary_size=len(dictionary.dictionary_quaternions)))
    for name, est in models.items():
        qp = est.predict(xr)
        d = disorientation_deg(qp, q_ref)
        d_ref = disorientation_deg(qp, qr)
        recs.append(rec("real_ni_3x3", name, "mean_disorientation_deg", d.mean(), "deg",
                        per_pattern=d.round(3).tolist(), reference=ref, n_test=len(d),
                        vs_refined_dictionary_mean_deg=float(d_ref.mean()),
                        vs_refined_dictionary_per_pattern=d_ref.round(3).tolist()))
        qo = est.predict(xr, refine=True, trust_region=trust, retry_trust_region=retry)
        d = disorientation_deg(qo, q_ref)
        recs.append(rec("real_ni_3x3", f"{name}_refined", "mean_disorientation_deg", d.mean(),
                        "deg", per_pattern=d.round(3).tolist(), reference=ref,
                        n_test=len(d), trust_region_deg=trust, retry_trust_region_deg=retry))
        run.save_plot(f"ipf_real_{name}", plot_ipf_map(qp, shape))
    merge_records("ebsd", "ebsd", recs)
    log("real 3x3 Ni: " + ", ".join(f"{r['model']}={r['value']:.3g}" for r in recs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--n-refine", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--preset", default="compact")
    ap.add_argument("--losses", default="mae_mde,mde,mae")
    ap.add_argument("--levels", default="noise0,noise1,noise2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--run-dir", default="runs/ebsd_bench")
    ap.add_argument("--augment", default=None,
                    help="degradation level up to which training batches are randomly "
                         "degraded (e.g. noise2); the training set then also carries "
                         "random projection-centre errors up to that level's")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--name-suffix", default="",
                    help="appended to the OMNet model names in the records")
    ap.add_argument("--cpu-note", default="shared, heavily loaded 2-core CPU")
    ap.add_argument("--load", default=None,
                    help="evaluate trained runs 'DIR:NAME,DIR:NAME' instead of training "
                         "(simulated levels and the real map, with the dictionary)")
    ap.add_argument("--omnet-trust", type=float, default=5.0,
                    help="trust region (deg per Euler angle) when refining OMNet's solutions")
    ap.add_argument("--omnet-retry-trust", type=float, default=15.0,
                    help="wider trust region for OMNet solutions whose refinement scores low")
    ap.add_argument("--repeats", type=int, default=3,
                    help="OMNet timing: median over this many predictions of the test set")
    ap.add_argument("--real-only", default=None,
                    help="only the real-map stage for trained runs 'DIR:NAME,DIR:NAME' "
                         "(dictionary: --n-train clean patterns, seed 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.real_only:
        from matdisco.ebsd import DetectorConfig, OMNetIndexer
        from matdisco.ebsd.dictionary import DictionaryIndexer
        from matdisco.training import RunDir

        det = DetectorConfig()
        dset = clean_set(args.n_train, det)
        models = {name: OMNetIndexer.load(d) for d, name in
                  (item.rsplit(":", 1) for item in args.real_only.split(","))}
        bench_real(DictionaryIndexer(*dset, detector=det), models, RunDir(args.run_dir),
                   args.omnet_trust, args.omnet_retry_trust)
        return

    recs = bench_disorientation(10_000)
    merge_records("ebsd", "ebsd", recs)
    log(f"disorientation vs orix: {[r['value'] for r in recs]}")

    from matdisco.ebsd import DetectorConfig, OMNetIndexer, simulate_dataset
    from matdisco.ebsd.dictionary import DictionaryIndexer
    from matdisco.ebsd.evaluation import (
        disorientation_deg,
        orientation_metrics,
        plot_histograms,
        plot_ipf_map,
    )
    from matdisco.training import RunDir

    det = DetectorConfig()
    levels = tuple(args.levels.split(","))
    run = RunDir(args.run_dir)
    run.write_config(vars(args))
    if args.load:
        train = None  # trained runs are loaded; only the dictionary is simulated
    elif args.augment:
        from matdisco.ebsd import DEGRADATION_LEVELS
        from matdisco.ebsd.augment import simulate_training_set

        train = simulate_training_set(args.n_train, seed=1, config=det,
                                      pc_error=DEGRADATION_LEVELS[args.augment].pc_error)
    else:
        train = clean_set(args.n_train, det)
    if train is not None:
        log(f"simulated {args.n_train} training patterns")
    test = simulate_dataset(args.n_test, seed=2, config=det, levels=levels)
    log(f"simulated {args.n_test} test patterns at {levels}")
    common = {"n_train": args.n_train, "n_test": args.n_test, "seeds": 1,
              "detector": "60x60", "cpu_note": args.cpu_note,
              "threads": args.threads, "augment": args.augment}

    models: dict[str, OMNetIndexer] = {}
    epochs: dict[str, int] = {}
    source: dict[str, str] = {}
    if args.load:
        for d, name in (item.rsplit(":", 1) for item in args.load.split(",")):
            est = OMNetIndexer.load(d)
            rd = RunDir(d)
            est.train_seconds_ = float(sum(h["seconds"] for h in rd.read_history()))
            models[name], epochs[name] = est, int(rd.read_config()["trainer"]["epochs"])
            source[name] = d
            log(f"loaded {name} from {d}")
    else:
        for loss in args.losses.split(","):
            est = OMNetIndexer(loss=loss, preset=args.preset, detector=det,
                               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                               device="auto", run_dir=run / f"omnet_{loss}",
                               augment=args.augment)
            est.fit(*train)
            name = f"omnet_{loss}{args.name_suffix}"
            models[name], epochs[name] = est, args.epochs
            log(f"trained {name} ({est.n_parameters} params) in {est.train_seconds_:.0f}s")

    # the dictionary: the training orientations simulated at the exact projection centre
    dict_set = clean_set(args.n_train, det) if train is None or args.augment else train
    assert train is None or np.array_equal(dict_set[1], train[1])
    dictionary = DictionaryIndexer(*dict_set, detector=det)
    # warm-up (numba JIT compilation, oneDNN initialisation) so patterns/s are steady-state
    warm = test[levels[0]][0][:2]
    dictionary.index(warm)
    dictionary.refine(warm, dictionary.index(warm)[0])
    for est in models.values():
        est.predict(warm)
    dis_all: dict[str, np.ndarray] = {}
    # oracle: nearest dictionary orientation (best any dictionary method can do); the test
    # orientations are the same at every level
    qdict = dict_set[1]
    nn = np.array([disorientation_deg(qdict, np.repeat(qi[None], len(qdict), 0)).min()
                   for qi in test[levels[0]][1]])
    for lev in levels:
        x, q = test[lev]
        recs = []
        for name, est in models.items():
            times = []
            for _ in range(max(1, args.repeats)):
                t = time.perf_counter()
                qp = est.predict(x)
                times.append(time.perf_counter() - t)
            m = orientation_metrics(qp, q, float(np.median(times)))
            dis_all[f"{name}_{lev}"] = disorientation_deg(qp, q)
            extra = dict(common, epochs=epochs[name], preset=est.preset, augment=est.augment,
                         **({"trained_run": source[name]} if name in source else {}),
                         train_seconds=round(est.train_seconds_, 1),
                         n_parameters=est.n_parameters,
                         median_disorientation_deg=m["median_disorientation_deg"],
                         frac_within_1deg=m["frac_within_1deg"],
                         frac_within_2deg=m["frac_within_2deg"])
            recs += [rec(f"sim_{lev}", name, "mean_disorientation_deg",
                         m["mean_disorientation_deg"], "deg", **extra),
                     rec(f"sim_{lev}", name, "patterns_per_s", m["patterns_per_s"],
                         "patterns/s", **dict(common, augment=est.augment,
                                              timing=f"median of {args.repeats} "
                                              "predictions of the test set"))]
            if args.n_refine > 0:  # OMNet as the start of refinement: no dictionary
                nr = min(args.n_refine, len(x))
                t = time.perf_counter()
                qr = est.predict(x[:nr], refine=True, trust_region=args.omnet_trust,
                                 retry_trust_region=args.omnet_retry_trust)
                seconds = time.perf_counter() - t
                mr = orientation_metrics(qr, q[:nr], seconds)
                m0 = orientation_metrics(qp[:nr], q[:nr])
                extra = dict(common, n_test=nr, trust_region_deg=args.omnet_trust,
                             retry_trust_region_deg=args.omnet_retry_trust,
                             unrefined_mean_on_same_patterns=m0["mean_disorientation_deg"],
                             median_disorientation_deg=mr["median_disorientation_deg"],
                             frac_within_1deg=mr["frac_within_1deg"],
                             frac_within_2deg=mr["frac_within_2deg"])
                recs += [rec(f"sim_{lev}", f"{name}_refined", "mean_disorientation_deg",
                             mr["mean_disorientation_deg"], "deg", **extra),
                         rec(f"sim_{lev}", f"{name}_refined", "patterns_per_s",
                             mr["patterns_per_s"], "patterns/s", **dict(common, n_test=nr))]
        t = time.perf_counter()
        qd, _ = dictionary.index(x)
        t_index = time.perf_counter() - t
        m = orientation_metrics(qd, q, t_index)
        dis_all[f"dictionary_{lev}"] = disorientation_deg(qd, q)
        extra = dict(common, dictionary_size=args.n_train,
                     dictionary_grid="uniform random SO(3) in the m-3m fundamental zone "
                     f"({args.n_train} patterns = the OMNet training set)",
                     median_disorientation_deg=m["median_disorientation_deg"],
                     frac_within_1deg=m["frac_within_1deg"],
                     frac_within_2deg=m["frac_within_2deg"])
        recs += [rec(f"sim_{lev}", "dictionary", "mean_disorientation_deg",
                     m["mean_disorientation_deg"], "deg", **extra),
                 rec(f"sim_{lev}", "dictionary", "patterns_per_s", m["patterns_per_s"],
                     "patterns/s", **common)]
        recs.append(rec(f"sim_{lev}", "dictionary_nearest_oracle", "mean_disorientation_deg",
                        nn.mean(), "deg", **common))
        if args.n_refine > 0:
            nr = min(args.n_refine, len(x))
            t = time.perf_counter()
            qr, _ = dictionary.refine(x[:nr], qd[:nr])
            t_ref = time.perf_counter() - t
            seconds = t_index * nr / len(x) + t_ref
            mr = orientation_metrics(qr, q[:nr], seconds)
            m0 = orientation_metrics(qd[:nr], q[:nr])
            extra = dict(common, n_test=nr, dictionary_size=args.n_train,
                         unrefined_mean_on_same_patterns=m0["mean_disorientation_deg"],
                         median_disorientation_deg=mr["median_disorientation_deg"],
                         frac_within_1deg=mr["frac_within_1deg"],
                         frac_within_2deg=mr["frac_within_2deg"])
            recs += [rec(f"sim_{lev}", "dictionary_refined", "mean_disorientation_deg",
                         mr["mean_disorientation_deg"], "deg", **extra),
                     rec(f"sim_{lev}", "dictionary_refined", "patterns_per_s",
                         mr["patterns_per_s"], "patterns/s", **dict(common, n_test=nr))]
        merge_records("ebsd", "ebsd", recs)
        log(f"{lev}: " + ", ".join(f"{r['model']}={r['value']:.3g}" for r in recs
                                   if r["metric"] == "mean_disorientation_deg"))
    run.save_plot("disorientation_hist", plot_histograms(
        {k: v for k, v in dis_all.items() if k.endswith(levels[0])}))
    side = min(10, int(np.sqrt(args.n_test)))
    run.save_plot("ipf_test_noise0", plot_ipf_map(test[levels[0]][1][:side * side],
                                                  (side, side)))

    if not args.skip_real:
        bench_real(dictionary, models, run, args.omnet_trust, args.omnet_retry_trust)
    run.write_metrics({"finished_seconds": time.perf_counter() - T0})
    log("done")


if __name__ == "__main__":
    main()
