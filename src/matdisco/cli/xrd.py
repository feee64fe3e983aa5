"""``matdisco xrd``: 1D powder-pattern simulation, synthetic libraries and phase mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from matdisco import MatdiscoError

app = typer.Typer(help="X-ray diffraction: simulate 1D patterns, build composition-spread "
                  "libraries and map phases.", no_args_is_help=True)


def _fail(exc: MatdiscoError) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    from matdisco._io import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


@app.command()
def simulate(
    cif: list[Path] = typer.Argument(..., help="CIF files."),
    output: Path = typer.Option(..., help="Output .npz (X, two_theta, names) or .csv."),
    n_points: int = typer.Option(2000, help="Grid length."),
    two_theta_min: float = typer.Option(10.0),
    two_theta_max: float = typer.Option(80.0),
) -> None:
    """Simulate the 1D powder patterns of CIF structures."""
    import pandas as pd

    from matdisco._io import write_table
    from matdisco.xrd import default_two_theta, load_cif, simulate_pattern

    try:
        grid = default_two_theta(n_points, two_theta_min, two_theta_max)
        X = np.stack([simulate_pattern(load_cif(p), two_theta=grid) for p in cif])
        if output.suffix == ".npz":
            _save_npz(output, X=X, two_theta=grid, names=np.array([p.stem for p in cif]))
        else:
            df = pd.DataFrame(X, columns=[f"{t:.4f}" for t in grid])
            df.insert(0, "name", [p.stem for p in cif])
            write_table(output, df)
    except MatdiscoError as exc:
        _fail(exc)
    typer.echo(f"simulated {len(cif)} patterns -> {output}")


@app.command()
def library(
    output: Path = typer.Option(..., help="Output .npz (X, two_theta, compositions, "
                                "fractions, true_phases, ...)."),
    n_phases: int = typer.Option(4, help="Number of phases in the library."),
    n_samples: int = typer.Option(60, help="Number of compositions."),
    cif: list[Path] = typer.Option(None, help="Phase structures (default: random AFLOW "
                                   "prototypes)."),
    seed: int = typer.Option(0),
    background: float = typer.Option(0.1),
    noise: float = typer.Option(0.01),
) -> None:
    """Simulate a ternary composition-spread library (alloying shifts, background, noise)."""
    from matdisco.xrd import aflow_prototypes, composition_library, load_cif, prototype_phases

    try:
        if cif:
            structs = [(p.stem, load_cif(p)) for p in cif]
        else:
            protos = aflow_prototypes()
            rng = np.random.default_rng(seed)
            structs = [protos[i] for i in rng.choice(len(protos), n_phases, replace=False)]
        phases = prototype_phases(n_decorations=0, structures=structs, seed=seed)
        lib = composition_library(phases, n_samples, seed=seed, background=background,
                                  noise=noise)
        _save_npz(output, **lib.to_npz_dict())
    except MatdiscoError as exc:
        _fail(exc)
    typer.echo(f"library of {n_samples} patterns, {len(phases)} phases -> {output}")


@app.command()
def phasemap(
    input: Path = typer.Option(..., help="Library .npz (X, optional two_theta, true_phases) "
                               "or .npy/.csv of patterns."),
    n_phases: int = typer.Option(..., help="Number of basis patterns K."),
    out: Path = typer.Option(..., help="Output directory."),
    method: str = typer.Option("nmf", help="nmf or gibbs (≤ max-phases per sample)."),
    max_phases: int = typer.Option(3, help="Phases per sample for gibbs."),
    seed: int = typer.Option(0),
) -> None:
    """Decompose a library into K phases (NMF); match them to the true phases if present."""
    import pandas as pd

    from matdisco.cli.refine import load_signals
    from matdisco.training import RunDir
    from matdisco.xrd import match_phases
    from matdisco.xrd import phasemap as _phasemap

    try:
        data = load_signals(input)
        res = _phasemap(data["X"], n_phases, method=method, max_phases=max_phases, seed=seed)
        rd = RunDir(out)
        arrays = {"X": res.basis, "weights": res.weights}
        if "two_theta" in data:
            arrays["two_theta"] = data["two_theta"]
        metrics: dict = {"method": method, "n_phases": n_phases,
                         "reconstruction_error": res.reconstruction_error}
        if "true_phases" in data:
            assign, corr = match_phases(res.basis, data["true_phases"])
            arrays["true"] = data["true_phases"][np.clip(assign, 0, None)]
            metrics["assignment"] = assign.tolist()
            metrics["correlation"] = [float(c) for c in corr]
        _save_npz(rd / "phases.npz", **arrays)
        rd.save_table("weights.csv", pd.DataFrame(res.weights,
                                                  columns=[f"phase{i}" for i in range(n_phases)]))
        rd.write_config({"input": str(input), "n_phases": n_phases, "method": method,
                         "max_phases": max_phases, "seed": seed})
        rd.write_metrics(metrics)
    except MatdiscoError as exc:
        _fail(exc)
    typer.echo(f"{n_phases} phases ({method}), relative error {res.reconstruction_error:.3f} "
               f"-> {out}")
