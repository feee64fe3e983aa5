"""Benchmark runner: fit a method on a task and measure it by re-simulation.

Per seed: training pairs from the task, then ``resim_mse_multi`` (one proposal for each
of many targets) and the ``r_T`` curve (best of T), ``resim_mse_single`` with the time to
produce the proposals (``seconds_per_1000``) for the task's single target, and for the
sinewave ``mode_coverage_25``. Every seed writes a run directory (config, metrics,
proposals, plots); the aggregate (mean +- std over seeds) is returned as benchmark
records in the format of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco._checks import check_int
from matdisco.inverse import METHODS, get_solver, get_task
from matdisco.inverse.base import InverseSolver
from matdisco.inverse.evaluation import (
    mode_coverage,
    plot_proposals,
    plot_r_t,
    proposals_table,
    r_t_curve,
    single_target,
)
from matdisco.inverse.tasks import InverseTask
from matdisco.training import RunDir, publish_run_dir, staged_run_dir

_FORWARD_METHODS = ("na", "tandem", "mixture_tandem", "ipage")


def build_solver(method: str, task: InverseTask, seed: int, shared: dict[str, Any],
                 epochs: int | None = None, min_steps: int | None = None,
                 **overrides: Any) -> InverseSolver:
    """Build a solver for ``task``; reuses a forward surrogate / INN already in ``shared``.

    Methods that need a forward surrogate share one per seed (it is trained once, by the
    first such method), and the iPage variants share the INN of ``inn``.
    """
    if method not in METHODS:
        raise MatdiscoError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    for name, why in _RESERVED.items():
        if name in overrides:
            raise MatdiscoError(f"method {method}: parameter {name!r} cannot be set here; {why}")
    kw: dict[str, Any] = {"bounds": (task.lower, task.upper), "seed": seed}
    if task.binary_inputs:
        kw["binary_inputs"] = True
    if any(method.startswith(p) for p in _FORWARD_METHODS):
        kw["forward_arch"] = task.surrogate
    if min_steps is not None:
        kw["min_steps"] = min_steps
    if epochs is not None:
        kw["epochs"] = epochs
        if any(method.startswith(p) for p in _FORWARD_METHODS):
            kw["forward_epochs"] = epochs
    if any(method.startswith(p) for p in _FORWARD_METHODS) and "forward" in shared:
        kw["forward_from"] = shared["forward"]
    if method.startswith("ipage") and "inn" in shared:
        kw["inn_from"] = shared["inn"]
    if method.startswith("ipage") and epochs is not None:
        kw["inn_params"] = {"epochs": epochs}
    kw.update(overrides)
    try:
        return get_solver(method, **kw)
    except TypeError as exc:  # a parameter this method does not have
        names = type(get_solver(method)).param_names()
        unknown = [k for k in overrides if k not in names]
        if unknown:
            raise MatdiscoError(
                f"method {method} has no parameter {', '.join(map(repr, unknown))}; its "
                f"parameters are {', '.join(n for n in names if n not in _HIDDEN)}"
            ) from None
        raise MatdiscoError(f"method {method}: {exc}") from exc


# parameters that a benchmark or ``propose`` sets itself
_RESERVED = {
    "seed": "the seed is the benchmark's seed (propose: --seed)",
    "sampler": "the latent sampler is part of the method name (ipage_srs, ipage_lhs, "
               "ipage_mlhs)",
    "k": "the number of heads is part of the method name (mixture_tandem_k1 ... k4)",
    "forward_from": "a solver object cannot be given as a parameter",
    "inn_from": "a solver object cannot be given as a parameter",
}
# not offered in the list of a method's parameters (the reserved ones are refused)
_HIDDEN = tuple(_RESERVED)


def check_method_params(method_kwargs: dict[str, dict[str, Any]] | None) -> None:
    """Refuse a ``method_kwargs`` key (method name or prefix) that names no method (a
    misspelt prefix would otherwise leave its parameters silently unused) and parameters
    that the benchmark sets itself (``seed``, ``sampler``, ``k``, solver objects)."""
    for key, extra in (method_kwargs or {}).items():
        if key and not any(m.startswith(key) for m in METHODS):
            raise MatdiscoError(f"parameter prefix {key!r} names no method; use a method name "
                                f"or prefix of one of {', '.join(METHODS)}")
        for name, why in _RESERVED.items():
            if name in extra:
                raise MatdiscoError(f"parameter {name!r} cannot be set here; {why}")


def method_params(method: str, method_kwargs: dict[str, dict[str, Any]] | None
                  ) -> dict[str, Any]:
    """The parameters of ``method_kwargs`` (keyed by method name or prefix; ``""`` for
    every method) that apply to ``method``."""
    return {k: v for key, extra in (method_kwargs or {}).items()
            if method.startswith(key) for k, v in extra.items()}


def _build(method: str, task: InverseTask, seed: int, shared: dict[str, Any],
           epochs: int | None, min_steps: int | None,
           forward_kwargs: dict[str, Any] | None,
           method_kwargs: dict[str, dict[str, Any]] | None) -> InverseSolver:
    """The solver of one benchmark cell (shared settings, then the method's own)."""
    fkw = dict(forward_kwargs or {}) if any(method.startswith(p)
                                            for p in _FORWARD_METHODS) else {}
    fkw.update(method_params(method, method_kwargs))
    # ``--param [METHOD.]epochs=`` / ``min_steps=`` override the budget for that method
    return build_solver(method, task, seed, shared, epochs=fkw.pop("epochs", epochs),
                        min_steps=fkw.pop("min_steps", min_steps), **fkw)


def _remember(method: str, solver: InverseSolver, shared: dict[str, Any]) -> None:
    if getattr(solver, "forward_", None) is not None and "forward" not in shared:
        shared["forward"] = solver
    if method == "inn":
        shared.setdefault("inn", solver)
    if method.startswith("ipage"):
        shared.setdefault("inn", solver.inn_)  # type: ignore[attr-defined]


# the tasks with their own picture of the proposals, and its file name in a seed folder
_PICTURES = {"sinewave": "solutions", "robotic_arm": "arm_configurations",
             "architecture": "cells"}


def run_seed(task: InverseTask, method: str, seed: int, shared: dict[str, Any],
             n_train: int = 10_000, n_targets: int = 1000, ts: tuple[int, ...] = (1, 10, 100),
             n_single: int = 1000, n_coverage: int = 25, epochs: int | None = None,
             run_dir: str | Path | None = None,
             forward_kwargs: dict[str, Any] | None = None, min_steps: int | None = None,
             method_kwargs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Fit and evaluate one method on one task for one seed; returns its metrics.

    ``method_kwargs`` maps a method name (or a prefix such as ``"ipage"``) to extra
    solver parameters.
    """
    x, y = task.dataset(n_train, seed=seed)
    solver = _build(method, task, seed, shared, epochs, min_steps, forward_kwargs,
                    method_kwargs)
    t0 = time.perf_counter()
    solver.fit(x, y)
    fit_s = time.perf_counter() - t0
    _remember(method, solver, shared)
    targets = task.forward(task.sample_prior(n_targets, seed=100_000 + seed))
    curve = r_t_curve(solver, task, targets, ts)
    single = single_target(solver, task, n_single)
    metrics: dict[str, Any] = {
        "task": task.name, "method": method, "seed": seed, "n_train": len(x),
        "n_targets": len(targets), "fit_seconds": fit_s,
        "resim_mse_multi": curve["r_T"][0],
        "r_T": dict(zip([str(t) for t in curve["T"]], curve["r_T"], strict=True)),
        "multi_seconds": curve["seconds"],
        "resim_mse_single": single["resim_mse_single"],
        "resim_mse_single_median": single["resim_mse_single_median"],
        "seconds_per_1000": single["seconds_per_1000"],
        "cpu_seconds_per_1000": single["cpu_seconds_per_1000"],
        "single_target": np.asarray(task.single_target).tolist(),
        "training": dict(solver.training_),
        "forward_arch": getattr(solver, "forward_arch", None),
    }
    fval = getattr(solver, "forward_val_mse_", None)
    if fval is not None:
        # held-out MSE of the forward surrogate in standardized units (~ 1 - R^2)
        metrics["forward_val_mse"] = fval
    if task.name == "sinewave":
        y_star = float(task.single_target[0])
        metrics["mode_coverage_25"] = mode_coverage(solver.propose(y_star, n_coverage),
                                                    y_star)
        metrics["mode_coverage_1000"] = mode_coverage(single["x"], y_star)
    if task.oracle:
        metrics["oracle"] = True
        metrics.update(getattr(task, "oracle_holdout", {}))
    if run_dir is not None:
        # written beside, then moved in whole: a killed run never leaves a seed folder
        # whose config and metrics come from two different runs
        final = Path(run_dir) / task.name / method / f"seed{seed}"
        rd = RunDir(staged_run_dir(final))
        rd.write_config({"task": task.describe(), "method": method, "seed": seed,
                         "params": solver.get_params(), "n_train": len(x),
                         "n_targets": len(targets), "ts": list(ts), "n_single": n_single})
        rd.write_metrics(metrics)
        if task.x_dim <= 16:
            rd.save_table("proposals_single_target.csv",
                          proposals_table(task, single["x"], single["y"], task.single_target))
        picture = _PICTURES.get(task.name)
        if picture is not None:
            rd.save_plot(picture, plot_proposals(task, single["x"][:500], task.single_target,
                                                 title=f"{method}, seed {seed}"))
        metrics["run_dir"] = str(publish_run_dir(rd.path, final))
    metrics["_curve"] = curve
    return metrics


def aggregate(task: InverseTask, method: str, per_seed: list[dict[str, Any]],
              ts: tuple[int, ...]) -> list[dict[str, Any]]:
    """Benchmark records (mean and std over seeds) for one task and method."""
    base = {"task": task.name, "method": method, "seeds": len(per_seed),
            "n_train": per_seed[0]["n_train"], "n_targets": per_seed[0]["n_targets"],
            "forward_arch": per_seed[-1].get("forward_arch")}
    if task.oracle:
        base["resimulation"] = "oracle surrogate (extra-trees ensemble), not DFT"
        base["oracle_holdout_mse"] = per_seed[0].get("oracle_holdout_mse")

    def rec(metric: str, vals: list[float], unit: str, **extra: Any) -> dict[str, Any]:
        a = np.asarray(vals, dtype=float)
        return {**base, "metric": metric, "value": float(a.mean()),
                "std": float(a.std()), "unit": unit, **extra}

    out = [rec("resim_mse_multi", [m["resim_mse_multi"] for m in per_seed], "y^2"),
           rec("resim_mse_single", [m["resim_mse_single"] for m in per_seed], "y^2",
               target=per_seed[0]["single_target"]),
           rec("seconds_per_1000", [m["seconds_per_1000"] for m in per_seed], "s"),
           rec("cpu_seconds_per_1000", [m["cpu_seconds_per_1000"] for m in per_seed],
               "s (process CPU time)"),
           rec("fit_seconds", [m["fit_seconds"] for m in per_seed], "s")]
    if all("forward_val_mse" in m for m in per_seed):
        out.append(rec("forward_val_mse", [m["forward_val_mse"] for m in per_seed],
                       "fraction of y variance (held-out, standardized)"))
    for t in ts[1:]:
        out.append(rec(f"resim_mse_multi_best_of_{t}",
                       [m["r_T"][str(t)] for m in per_seed], "y^2"))
    if "mode_coverage_25" in per_seed[0]:
        out.append(rec("mode_coverage_25",
                       [m["mode_coverage_25"]["coverage"] for m in per_seed], "fraction",
                       n_modes=per_seed[0]["mode_coverage_25"]["n_modes"]))
        out.append(rec("mode_entropy_1000",
                       [m["mode_coverage_1000"]["mode_entropy"] for m in per_seed],
                       "normalized entropy"))
        out.append(rec("mean_pairwise_distance_1000",
                       [m["mode_coverage_1000"]["mean_pairwise_distance"] for m in per_seed],
                       "x units"))
    return out


def _previous_seed(run_dir: str | Path | None, task: str, method: str, seed: int,
                   ts: tuple[int, ...]) -> dict[str, Any]:
    """Per-seed metrics of an earlier run, read back from its run directory."""
    if run_dir is None:
        raise MatdiscoError("seeds below first_seed are read from run_dir, which is not set")
    path = Path(run_dir) / task / method / f"seed{seed}" / "metrics.json"
    if not path.is_file():
        raise MatdiscoError(f"no earlier result for {task}/{method} seed {seed}: {path} "
                            "is missing (run that seed first)")
    res = json.loads(path.read_text())
    missing = [str(t) for t in ts if str(t) not in res.get("r_T", {})]
    if missing:
        raise MatdiscoError(f"{path} has no r_T for T = {', '.join(missing)}; "
                            "it was run with a smaller T")
    res["_curve"] = {"T": list(ts), "r_T": [res["r_T"][str(t)] for t in ts]}
    return res


def run_benchmark(task_name: str, methods: list[str], seeds: int = 5, n_train: int = 10_000,
                  n_targets: int = 1000, ts: tuple[int, ...] = (1, 10, 100),
                  n_single: int = 1000, epochs: int | None = None,
                  run_dir: str | Path | None = None,
                  log: Any = None, forward_kwargs: dict[str, Any] | None = None,
                  min_steps: int | None = None,
                  method_kwargs: dict[str, dict[str, Any]] | None = None,
                  first_seed: int = 0, only_seeds: list[int] | None = None,
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run methods on a task over seeds.

    Seeds below ``first_seed`` are not run again: their per-seed ``metrics.json`` are read
    back from ``run_dir`` (so one expensive task can be spread over several processes or
    sessions and still be aggregated over all its seeds). ``only_seeds`` runs exactly those
    seeds and reads none back: several processes can each run a share of the seeds into the
    same ``run_dir``, and a last call with ``first_seed = seeds`` aggregates them all.

    Returns
    -------
    records : list of dict
        Aggregated benchmark records.
    details : dict
        Per-seed metrics by method (and ``r_T`` curves).
    """
    if int(seeds) <= 0:
        raise MatdiscoError(f"seeds must be positive, got {seeds}")
    if int(first_seed) < 0:
        raise MatdiscoError(f"first_seed must be >= 0, got {first_seed}")
    if epochs is not None and epochs < 1:
        raise MatdiscoError(f"epochs must be >= 1, got {epochs}")
    if min_steps is not None and min_steps < 0:
        raise MatdiscoError(f"min_steps must be >= 0, got {min_steps}")
    if isinstance(methods, str):
        methods = [methods]
    if not methods:
        raise MatdiscoError(f"no method given; choose from {', '.join(METHODS)}")
    for m in methods:
        if m not in METHODS:
            raise MatdiscoError(f"unknown method {m!r}; choose one of {', '.join(METHODS)}")
    methods = list(dict.fromkeys(methods))  # a method named twice is run once
    ts = tuple(ts)
    if not ts or any(isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 1
                     for t in ts):
        raise MatdiscoError(f"ts must be positive proposal counts, got {ts}")
    check_method_params(method_kwargs)
    if run_dir is not None:
        # a file in the way of the run folders is found now, not after the first fit
        for p in (Path(run_dir), *Path(run_dir).parents):
            if p.exists() and not p.is_dir():
                raise MatdiscoError(f"run directory {run_dir}: {p} is a file")
    task = get_task(task_name)
    for m in methods:  # every method's parameters are checked before anything is trained
        _build(m, task, 0, {}, epochs, min_steps, forward_kwargs, method_kwargs)
    if task.oracle:
        task.fit_oracle()  # type: ignore[attr-defined]
    # methods sharing trained parts run in an order that trains each part once
    order = sorted(methods, key=lambda m: (0 if m == "inn" else 1 if m == "na" else 2))
    per_method: dict[str, list[dict[str, Any]]] = {m: [] for m in order}
    if only_seeds is not None:
        if not only_seeds or min(only_seeds) < 0:
            raise MatdiscoError(f"only_seeds must be non-negative seeds, got {only_seeds}")
        to_run = list(only_seeds)
    else:
        for seed in range(min(first_seed, seeds)):
            for m in order:
                per_method[m].append(_previous_seed(run_dir, task.name, m, seed, ts))
        to_run = list(range(first_seed, seeds))
    for seed in to_run:
        shared: dict[str, Any] = {}
        for m in order:
            res = run_seed(task, m, seed, shared, n_train=n_train, n_targets=n_targets, ts=ts,
                           n_single=n_single, epochs=epochs, run_dir=run_dir,
                           forward_kwargs=forward_kwargs, min_steps=min_steps,
                           method_kwargs=method_kwargs)
            if log is not None:
                log(f"{task.name} {m} seed {seed}: resim_mse_multi={res['resim_mse_multi']:.4g}"
                    f" single={res['resim_mse_single']:.4g} "
                    f"s/1000={res['seconds_per_1000']:.3g} "
                    f"cpu_s/1000={res['cpu_seconds_per_1000']:.3g} "
                    f"fit={res['fit_seconds']:.1f}s")
            per_method[m].append(res)
    records: list[dict[str, Any]] = []
    for m in methods:
        records += aggregate(task, m, per_method[m], ts)
    if run_dir is not None:
        curves = {m: {"T": list(ts), "r_T": list(np.mean([r["_curve"]["r_T"]
                                                          for r in per_method[m]], axis=0))}
                  for m in methods}
        RunDir(Path(run_dir) / task.name).save_plot("r_T_curves", plot_r_t(curves, task.name))
    for lst in per_method.values():
        for r in lst:
            r.pop("_curve", None)
    return records, {"task": task.describe(), "per_seed": per_method}


def propose_run(task_name: str, method: str, target: Any, out: str | Path, *, n: int = 10,
                n_train: int = 10_000, epochs: int | None = None,
                min_steps: int | None = None, seed: int = 0,
                method_kwargs: dict[str, dict[str, Any]] | None = None,
                overwrite: bool = False) -> tuple[Any, dict[str, Any]]:
    """Fit a method on a task's training set, propose inputs for one target, write the run.

    Parameters
    ----------
    task_name, method : str
        A task of :data:`~matdisco.inverse.TASKS` and a method of
        :data:`~matdisco.inverse.METHODS`.
    target : float or sequence of float
        The desired output ``y*`` (one value per task output).
    out : path
        Run directory: ``config.json``, ``metrics.json``, ``proposals.csv`` (one column per
        input, the re-simulated outputs and the re-simulation error) and ``proposals.png``.
    n, n_train, seed
        Number of proposals, training pairs drawn from the task (MoS2: rows of the data,
        all of them when fewer) and the seed of the data, the networks and the sampling.
    epochs, min_steps
        Override the method's training epochs; least optimizer steps per network.
    method_kwargs : dict, optional
        Solver parameters keyed by method name or prefix (``""`` for every method), as
        ``--param [METHOD.]NAME=VALUE`` gives them; every one is checked before training.
    overwrite : bool
        Replace a run that ``out`` holds (only once the new one is complete); without it
        an existing run is refused before anything is trained.

    Returns
    -------
    (pandas.DataFrame, dict)
        The proposals table and the metrics (``resim_mse``, ``seconds``, ``fit_seconds``).
    """
    import shutil

    from matdisco.inverse.evaluation import proposals_table
    from matdisco.training import prepare_run_dir

    check_int("n", n, 1)
    check_int("n_train", n_train, 2)
    check_int("seed", seed, 0)
    y_star = np.atleast_1d(np.asarray(target, dtype=float)).ravel()
    t = get_task(task_name)
    if len(y_star) != t.y_dim:
        raise MatdiscoError(f"target has {len(y_star)} value(s) but task {t.name} has "
                            f"{t.y_dim} output(s)")
    if not np.all(np.isfinite(y_star)):
        raise MatdiscoError(f"target {y_star.tolist()} contains NaN/inf")
    check_method_params(method_kwargs)
    kwargs = method_params(method, method_kwargs)
    # the solver (and so every parameter) is checked before the training data are made
    solver = build_solver(method, t, seed, {}, epochs=kwargs.pop("epochs", epochs),
                          min_steps=kwargs.pop("min_steps", min_steps), **kwargs)
    # before the fit: a refused out must not cost a training run; an overwritten run
    # stays in place until the new one is published whole
    out = Path(out)
    prepare_run_dir(out, overwrite=overwrite, can_resume=False, staged=True)
    x, y = t.dataset(n_train, seed=seed)
    solver.fit(x, y)
    props = solver.propose(y_star, n)
    df = proposals_table(t, props, y_star=y_star)
    err = df["resim_error"].to_numpy()
    metrics = {"resim_mse": float(err.mean()), "seconds": solver.propose_seconds_,
               "fit_seconds": solver.fit_seconds_}
    rd = RunDir(staged_run_dir(out))
    try:
        rd.write_config({"task": t.describe(), "method": method, "target": y_star.tolist(),
                         "n": int(n), "n_train": len(x), "epochs": solver.epochs,
                         "min_steps": solver.min_steps, "seed": int(seed),
                         "params": solver.get_params(), "training": dict(solver.training_)})
        rd.save_table("proposals.csv", df)
        label = ",".join(f"{v:g}" for v in y_star)
        rd.save_plot("proposals", plot_proposals(t, props, y_star, err,
                                                 title=f"{method}: {t.name}, y* = {label}"))
        rd.write_metrics(metrics)
        publish_run_dir(rd.path, out)
    except BaseException:
        shutil.rmtree(rd.path, ignore_errors=True)
        raise
    return df, metrics
