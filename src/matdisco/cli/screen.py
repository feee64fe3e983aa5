"""``matdisco screen``: enumerate, predict at scale, and analyse stability."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from matdisco import MatdiscoError
from matdisco.cli import fail as _fail
from matdisco.cli import handle_errors

app = typer.Typer(help="Combinatorial screening of compositions: count the space, predict it "
                  "(resumable, in-process or Dask), and find candidates below the known "
                  "convex hull.", no_args_is_help=True)



def _space(elements: str | None, exclude: str | None, must_contain: str | None,
           arity: str, max_atoms: int, chunk_size: int, universe: tuple[str, ...] | None = None
           ) -> object:
    from matdisco.screening import CompositionSpace

    try:
        ar: int | list[int] = int(arity)
    except ValueError:
        try:
            ar = [int(a) for a in arity.replace(",", " ").split()]
        except ValueError:
            raise MatdiscoError(f"--arity must be an integer or a list like 2,3; got {arity!r}"
                                ) from None
    kwargs = {}
    if universe is not None:
        kwargs["universe"] = universe
    return CompositionSpace(elements=elements, exclude=exclude, must_contain=must_contain,
                            arities=ar, max_atoms=max_atoms, chunk_size=chunk_size, **kwargs)


ELEMENTS_HELP = "Elements or groups (3d, 4d, 5d, alkali, halogens, ...), comma separated; " \
    "default: the 86 ElemNet elements."
ARITY_HELP = "Number of elements per composition: N means 1..N; a list (e.g. 2,3) means " \
    "exactly those."
REFERENCES_HELP = "Reference formation enthalpies (CSV/Parquet, formula,target in eV/atom); " \
    "default: OQMD val+test of the shared data."


def _check_out_file(path: Path, option: str, suffix: str | None = None) -> None:
    """Refuse an output file path that cannot be written, before any work is done."""
    if path.is_dir():
        raise MatdiscoError(f"{option} {path} is a folder; give a file name")
    if path.parent.exists() and not path.parent.is_dir():
        raise MatdiscoError(f"{option} {path}: {path.parent} is a file, not a folder")
    if suffix is not None and path.suffix.lower() != suffix:
        raise MatdiscoError(f"{option} {path}: the file is written as {suffix[1:].upper()}; "
                            f"give a name ending in {suffix}")


def _check_out_dir(path: Path, option: str) -> None:
    if path.exists() and not path.is_dir():
        raise MatdiscoError(f"{option} {path} is a file; give a folder")


@app.command()
@handle_errors
def count(
    elements: str = typer.Option(None, help=ELEMENTS_HELP),
    exclude: str = typer.Option(None, help="Elements or groups to leave out."),
    must_contain: str = typer.Option(None, help="Every composition contains all of these."),
    arity: str = typer.Option("4", help=ARITY_HELP),
    max_atoms: int = typer.Option(10, help="Max total atoms w+x+y+z of the reduced formula."),
    chunk_size: int = typer.Option(250_000, help="Compositions per chunk."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Exact size of a composition space, computed without enumerating it."""
    sp = _space(elements, exclude, must_contain, arity, max_atoms, chunk_size)
    by = sp.count_by_arity()  # type: ignore[attr-defined]
    info = {"total": len(sp), "by_arity": by, "n_elements": len(sp.allowed),  # type: ignore
            "n_chunks": sp.n_chunks}  # type: ignore[attr-defined]
    if as_json:
        typer.echo(json.dumps(info))
        return
    for k, n in by.items():
        typer.echo(f"arity {k}: {n:,}")
    typer.echo(f"total: {len(sp):,} compositions in {sp.n_chunks:,} chunks")  # type: ignore


@app.command()
@handle_errors
def run(
    model: list[Path] = typer.Option(..., help="Model run directory (repeat for an ensemble)."),
    out: Path = typer.Option(..., help="Output folder (resumed if it exists)."),
    elements: str = typer.Option(None, help=ELEMENTS_HELP),
    exclude: str = typer.Option(None, help="Elements or groups to leave out."),
    must_contain: str = typer.Option(None, help="Every composition contains all of these."),
    arity: str = typer.Option("4", help=ARITY_HELP),
    max_atoms: int = typer.Option(10, help="Max total atoms of the reduced formula."),
    chunk_size: int = typer.Option(250_000, help="Compositions per chunk (resume unit)."),
    batch_size: int = typer.Option(4096, help="Rows per model call."),
    keep_below: float = typer.Option(None, help="Only write rows predicted <= this value "
                                     "(eV/atom); default: write every row."),
    threads: int = typer.Option(None, help="torch threads; default: all cores but one "
                                "in-process, 1 per Dask worker."),
    scheduler: str = typer.Option(None, help="Dask scheduler address tcp://host:port."),
    workers: int = typer.Option(None, help="Start a Dask LocalCluster with N workers."),
    jit: bool = typer.Option(False, help="TorchScript-trace the networks."),
    max_chunks: int = typer.Option(None, help="Stop after N chunks (resumable)."),
    progress: bool = typer.Option(True, help="Progress bar."),
) -> None:
    """Predict every composition of a space into a partitioned Parquet dataset."""
    from matdisco.screening.run import screen

    try:
        sp = _space(elements, exclude, must_contain, arity, max_atoms, chunk_size)
        res = screen(sp, [str(m) for m in model], out, batch_size=batch_size,  # type: ignore
                     keep_below=keep_below, threads=threads, scheduler=scheduler,
                     workers=workers, jit=jit, max_chunks=max_chunks, progress=progress)
    except KeyboardInterrupt:
        if (out / "manifest.json").is_file():
            msg = (f"interrupted: completed chunks are recorded in {out}/manifest.json; "
                   "run the same command again to resume")
        else:
            msg = "interrupted before any chunk was recorded; run the same command again"
        typer.echo(msg, err=True)
        raise typer.Exit(130) from None
    rate = res.compositions_this_run / res.seconds if res.seconds > 0 else float("nan")
    typer.echo(f"{res.completed}/{res.n_chunks} chunks done ({res.chunks_this_run} now), "
               f"{res.rows_written:,} rows written, {rate:,.0f} compositions/s this run")


@app.command()
@handle_errors
def hull(
    results: Path = typer.Option(..., help="Screening output folder."),
    references: Path = typer.Option(None, help=REFERENCES_HELP),
    out: Path = typer.Option(..., help="Folder for candidates.parquet, summary.csv, "
                             "summary.json (replaced if present)."),
    threshold: float = typer.Option(0.2, help="Keep candidates this far below the hull "
                                    "(eV/atom)."),
    top: int = typer.Option(3, help="Examples per system."),
) -> None:
    """Candidates predicted at least THRESHOLD below the known hull, summarised per system."""
    from matdisco.screening.hull import hull_report

    _check_out_dir(out, "--out")  # before the references are loaded; hull_report checks the rest
    stable, per, summary = hull_report(results, _references(references),  # type: ignore[arg-type]
                                       out, threshold, top)
    for w in summary["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    totals = summary["totals"]
    typer.echo(f"{len(stable):,} candidates: {totals}")
    if len(per):
        typer.echo(per.head(20).to_string(index=False))
    else:
        typer.echo(f"no composition is predicted {threshold:g} eV/atom or more below the "
                   f"known hull (files in {out} are empty; try a smaller --threshold)")


def _references(path: Path | None) -> object:
    import pandas as pd

    from matdisco.data import shared_data_dir
    from matdisco.screening.hull import load_references

    if path is not None:
        return load_references(path)
    d = shared_data_dir()
    if d is None:
        raise MatdiscoError("no --references given and no shared OQMD data found")
    frames = [pd.read_csv(d / "oqmd_formation_enthalpy" / f) for f in ("val.csv", "test.csv")]
    return load_references(pd.concat(frames, ignore_index=True))


@app.command()
@handle_errors
def plot(
    system: str = typer.Argument(..., help="Chemical system, e.g. Ti-O or Fe-Ni-O."),
    model: list[str] = typer.Option(..., help="NAME=RUN_DIR (repeat for several models)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output PNG (name ending in .png)."),
    references: Path = typer.Option(None, help=REFERENCES_HELP),
    max_atoms: int = typer.Option(None, help="Grid density (max atoms per formula); "
                                  "default: 24 for binaries, 16 for ternaries."),
) -> None:
    """Known and predicted convex hulls of a binary or ternary system."""
    from matdisco._io import save_figure
    from matdisco.screening.hull import ReferenceHulls, plot_phase_diagram

    _check_out_file(out, "--out", ".png")
    models = _named_models(model)
    hulls = ReferenceHulls(_references(references))  # type: ignore[arg-type]
    fig = plot_phase_diagram(system, hulls, models, max_atoms)
    save_figure(out, fig)
    typer.echo(f"wrote {out}")


def _named_models(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for it in items:
        if "=" not in it:
            raise MatdiscoError(f"--model {it!r}: expected NAME=RUN_DIR")
        name, path = (x.strip() for x in it.split("=", 1))
        if not name or not path:
            raise MatdiscoError(f"--model {it!r}: expected NAME=RUN_DIR with both parts")
        if name in out:
            raise MatdiscoError(f"--model: the name {name!r} is given twice; give each "
                                "model its own name")
        out[name] = path
    return out


@app.command()
@handle_errors
def holdout(
    system: list[str] = typer.Option(..., help="Held-out system (repeat), e.g. Ti-O."),
    model: list[str] = typer.Option(..., help="NAME=RUN_DIR of models trained without it."),
    references: Path = typer.Option(None, help=REFERENCES_HELP),
    tol: float = typer.Option(0.05, help="Atomic-fraction tolerance (max-norm) to a known "
                              "hull compound."),
    max_atoms: int = typer.Option(None, help="Grid density (max atoms per formula); default: "
                                  "24 for binaries, 16 for ternaries, 12 otherwise."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the counts as JSON."),
) -> None:
    """Count spurious stable predictions in held-out systems (ElemNet holdout test)."""
    from matdisco._io import write_json
    from matdisco.screening.hull import ReferenceHulls, spurious_stable

    if out is not None:
        _check_out_file(out, "--out")
    if not (tol >= 0 and tol < float("inf")):
        raise MatdiscoError(f"--tol must be a finite fraction >= 0, got {tol}")
    models = _named_models(model)
    hulls = ReferenceHulls(_references(references))  # type: ignore[arg-type]
    res = [{"model": name, **spurious_stable(path, hulls, s, max_atoms, tol)}
           for s in system for name, path in models.items()]
    for r in res:
        typer.echo(f"{r['system']:>12} {r['model']:>10}: {r['n_spurious']} spurious of "
                   f"{r['n_predicted_stable']} predicted stable "
                   f"({r['n_known_stable']} known stable)")
    if out is not None:
        write_json(out, res)


@app.command()
@handle_errors
def distill(
    teacher: list[Path] = typer.Option(..., help="Teacher run directory (repeat: ensemble)."),
    out: Path = typer.Option(..., help="Run directory of the student."),
    train: str = typer.Option(None, help="Real compositions to include: a dataset name "
                              "(`matdisco data list`) or a CSV/Parquet file with a formula "
                              "column."),
    n_synthetic: int = typer.Option(100_000, help="Compositions sampled uniformly from the "
                                    "ElemNet space (86 elements, arity <= 4, <= 10 atoms)."),
    widths: str = typer.Option("256,128,64", help="Hidden widths of the student MLP."),
    epochs: int = typer.Option(30, help="Training epochs (early stopping on 5 % held out)."),
    seed: int = typer.Option(0, help="Seed of sampling, split and training."),
    overwrite: bool = typer.Option(False, help="Replace the run that --out already holds."),
) -> None:
    """Train a small fast MLP to reproduce a model (the fast screening path)."""

    from matdisco.data import encode_fractions
    from matdisco.screening.distill import distill as _distill
    from matdisco.screening.models import load_model

    try:
        t = load_model([str(p) for p in teacher])
        real = None
        if train is not None:
            from matdisco.data import load_dataset

            df = load_dataset(str(train), "formula", None)  # a name, CSV or Parquet
            real = encode_fractions(df["formula"], t.elements, source=str(train))
        try:
            w = [int(x) for x in widths.replace(",", " ").split()]
        except ValueError:
            raise MatdiscoError(f"--widths must be comma-separated integers, got {widths!r}"
                                ) from None
        _distill([str(p) for p in teacher], out, real_fractions=real,
                 n_synthetic=n_synthetic, widths=w, epochs=epochs, seed=seed, progress=True,
                 overwrite=overwrite)
    except (MatdiscoError, ValueError) as exc:
        _fail(exc if isinstance(exc, MatdiscoError) else MatdiscoError(str(exc)))
    typer.echo(f"wrote {out}")
