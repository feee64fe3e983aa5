"""``matdisco inverse``: inverse-design benchmarks and proposals."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import typer

from matdisco import MatdiscoError
from matdisco.cli import fail as _fail
from matdisco.cli import handle_errors

app = typer.Typer(help="Inverse design: neural adjoint, tandem, INN, cINN, cVAE, MDN, iPage.",
                  no_args_is_help=True)



def _parse_target(text: str) -> np.ndarray:
    try:
        vals = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError as exc:
        raise MatdiscoError(f"--target {text!r}: expected comma-separated numbers") from exc
    if not vals:
        raise MatdiscoError("--target is empty")
    return np.asarray(vals)


def _parse_params(items: list[str] | None) -> dict[str, dict[str, object]]:
    """``[METHOD.]NAME=VALUE`` options -> solver parameters by method prefix ("" = all).

    Values are read as JSON where they parse (``4``, ``1e-5``, ``true``, ``"x"``), else
    kept as text (``--param selection=diverse``)."""
    out: dict[str, dict[str, object]] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        prefix, _, name = key.strip().rpartition(".")
        if not sep or not name.isidentifier():
            raise MatdiscoError(f"--param {item!r}: expected [METHOD.]NAME=VALUE, "
                                "e.g. ipage.prescreen=4")
        try:
            value: object = json.loads(text)
        except ValueError:
            value = text
        out.setdefault(prefix, {})[name] = value
    return out


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Show warnings (target outside the training range, untrained surrogate) as one
    ``warning: ...`` line on stderr instead of a file path and a line of source code."""
    def show(message: Warning | str, category: type[Warning], *args: Any,
             **kwargs: Any) -> None:
        typer.echo(f"warning: {message}", err=True)

    old = warnings.showwarning
    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


PARAM_HELP = ("solver parameter [METHOD.]NAME=VALUE, repeatable; METHOD is a method name or "
              "prefix (e.g. ipage.prescreen=4, na.steps=300); without it, every method")


@app.command("tasks")
@handle_errors
def tasks_cmd() -> None:
    """List the benchmark tasks and the methods."""
    from matdisco.inverse import METHODS, TASKS

    typer.echo("tasks: " + ", ".join(TASKS))
    typer.echo("methods: " + ", ".join(METHODS))


@app.command("bench")
@handle_errors
def bench_cmd(
    task: str = typer.Option(..., "--task", "-t", help="sinewave, robotic_arm, ballistics, "
                             "architecture or mos2"),
    method: list[str] = typer.Option(..., "--method", "-m",
                                     help="method name(s); repeat or comma-separate"),
    seeds: int = typer.Option(5, help="number of seeds (mean +- std)"),
    n_train: int = typer.Option(10_000, help="training pairs"),
    n_targets: int = typer.Option(1000, help="targets of the multi-target re-simulation"),
    t_max: int = typer.Option(100, help="largest T of the r_T curve: T runs over 1, 10, "
                              "100, 1000 up to this value"),
    n_single: int = typer.Option(1000, help="proposals for the single target"),
    epochs: int | None = typer.Option(None, help="override the training epochs"),
    min_steps: int | None = typer.Option(
        None, help="least optimizer steps per network (solver default 3000); epochs are "
        "raised to reach it"),
    out: Path = typer.Option(Path("runs/inverse"), help="run directory root"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the records here"),
    param: list[str] | None = typer.Option(None, "--param", "-p", help=PARAM_HELP),
    first_seed: int = typer.Option(0, help="seeds below this are read back from --out "
                                   "(resume a benchmark, or aggregate shares run apart)"),
    only_seeds: str | None = typer.Option(
        None, help="comma-separated seeds to run into --out, nothing read back (one "
        "process's share; aggregate afterwards with --first-seed equal to --seeds)"),
) -> None:
    """Fit methods on a task and measure them by re-simulation."""
    import torch

    from matdisco._io import write_json
    from matdisco.inverse.bench import run_benchmark
    from matdisco.training import environment

    methods = [m.strip() for item in method for m in item.split(",") if m.strip()]
    ts = tuple(t for t in (1, 10, 100, 1000) if t <= t_max)
    try:
        if n_train <= 1 or n_targets <= 0 or n_single <= 0:
            raise MatdiscoError("--n-train must be > 1, --n-targets and --n-single > 0")
        if t_max < 1:
            raise MatdiscoError(f"--t-max must be >= 1, got {t_max}")
        if json_out is not None:
            # a --json that cannot be written is found now, not after the benchmark
            if json_out.is_dir():
                raise MatdiscoError(f"--json {json_out} is a folder; give a file name")
            for p in json_out.parents:
                if p.exists() and not p.is_dir():
                    raise MatdiscoError(f"--json {json_out}: {p} is a file, not a folder")
        try:
            share = [int(k) for k in only_seeds.split(",")] if only_seeds else None
        except ValueError:
            raise MatdiscoError(f"--only-seeds takes comma-separated integers, got "
                                f"{only_seeds!r}") from None
        with _one_line_warnings():
            records, details = run_benchmark(task, methods, seeds=seeds, n_train=n_train,
                                             n_targets=n_targets, ts=ts, n_single=n_single,
                                             epochs=epochs, run_dir=out, log=typer.echo,
                                             min_steps=min_steps,
                                             method_kwargs=_parse_params(param),
                                             first_seed=first_seed, only_seeds=share)
    except MatdiscoError as exc:
        _fail(exc)
        return
    for r in records:
        typer.echo(f"{r['task']:>12} {r['method']:>18} {r['metric']:>30} "
                   f"{r['value']:.4g} +- {r['std']:.2g}")
    if json_out is not None:
        write_json(json_out, {
            "benchmark": "inverse", "command": "matdisco inverse bench ...",
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "machine": {**environment(), "torch_threads": torch.get_num_threads()},
            "records": records, "details": details})
        typer.echo(f"wrote {json_out}")


@app.command("propose")
@handle_errors
def propose_cmd(
    task: str = typer.Option(..., "--task", "-t", help="sinewave, robotic_arm, ballistics, "
                             "architecture or mos2"),
    method: str = typer.Option("ipage_mlhs", "--method", "-m",
                               help="one method (`matdisco inverse tasks` lists them)"),
    target: str = typer.Option(..., "--target", help="y*, comma-separated for several outputs"),
    n: int = typer.Option(10, "--n", help="number of proposals"),
    n_train: int = typer.Option(10_000, help="training pairs drawn from the task (mos2: "
                                "rows of the data, all of them when fewer)"),
    epochs: int | None = typer.Option(None, help="override the training epochs (default: "
                                      "the method's own)"),
    min_steps: int | None = typer.Option(
        None, help="least optimizer steps per network (solver default 3000); epochs are "
        "raised to reach it"),
    seed: int = typer.Option(0, help="seed of the training data, the networks and the "
                             "sampling"),
    out: Path = typer.Option(Path("runs/inverse/propose"), help="run directory"),
    param: list[str] | None = typer.Option(None, "--param", "-p", help=PARAM_HELP),
    overwrite: bool = typer.Option(False, help="replace the run that --out already holds "
                                   "(otherwise an existing run is refused, never touched)"),
) -> None:
    """Fit a method on a task's training set and propose inputs for one target.

    Writes config.json, metrics.json, proposals.csv (one column per input, the
    re-simulated output y_resim and the squared re-simulation error resim_error) and
    proposals.png to --out."""
    from matdisco.inverse.bench import propose_run

    try:
        if n <= 0:
            raise MatdiscoError(f"--n must be positive, got {n}")
        if n_train <= 1:
            raise MatdiscoError(f"--n-train must be > 1, got {n_train}")
        if seed < 0:
            raise MatdiscoError(f"--seed must be >= 0, got {seed}")
        y_star = _parse_target(target)
        with _one_line_warnings():
            _, metrics = propose_run(task, method, y_star, out, n=n, n_train=n_train,
                                     epochs=epochs, min_steps=min_steps, seed=seed,
                                     method_kwargs=_parse_params(param),
                                     overwrite=overwrite)
    except MatdiscoError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps({"resim_mse": metrics["resim_mse"],
                           "seconds": metrics["seconds"], "run_dir": str(out)}))
