"""``matdisco ebsd``: simulate Ni EBSD patterns, train OMNet, index maps, evaluate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from matdisco import MatdiscoError
from matdisco._io import check_output_file
from matdisco.cli import handle_errors, one_input

if TYPE_CHECKING:  # imported lazily at runtime to keep the CLI start fast
    from matdisco.ebsd import DetectorConfig

app = typer.Typer(help="EBSD orientation indexing of cubic (m-3m) crystals: simulate "
                  "patterns from kikuchipy's Ni master pattern, train OMNet, index "
                  "pattern files and evaluate against dictionary indexing.",
                  no_args_is_help=True)


def _detector(shape: int, pc: str | None) -> DetectorConfig:
    from matdisco.ebsd import DetectorConfig

    d = DetectorConfig(shape=(shape, shape))
    if pc:
        try:
            vals = tuple(float(v) for v in pc.split(","))
        except ValueError:
            raise MatdiscoError(
                f"--pc must be three comma-separated numbers, got {pc!r}") from None
        if len(vals) != 3:
            raise MatdiscoError(f"--pc must be three comma-separated numbers, got {pc!r}")
        if not all(math.isfinite(v) for v in vals) or vals[2] <= 0:
            raise MatdiscoError(f"--pc must be finite numbers with PCz > 0, got {pc!r}")
        from dataclasses import replace

        d = replace(d, pc=vals)
    return d


@app.command()
@handle_errors
def simulate(
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Output HDF5 file (patterns, quaternions)."),
    n: int = typer.Option(1000, help="Number of orientations (random sampling)."),
    method: str = typer.Option("random", help="random (uniform SO(3)) or cubochoric."),
    resolution: float = typer.Option(None, help="Cubochoric grid resolution (degrees)."),
    level: str = typer.Option("noise0", help="Degradation level: noise0..noise3."),
    shape: int = typer.Option(60, help="Detector size (square, pixels)."),
    pc: str = typer.Option(None, help="Projection centre 'PCx,PCy,PCz' (Bruker)."),
    seed: int = typer.Option(0),
    pc_jitter: float = typer.Option(0.0, help="Training set: random projection-centre "
                                    "errors up to this standard deviation (PC units), "
                                    "one PC per pattern; 25% keep the exact PC."),
) -> None:
    """Simulate Ni patterns (chunked, Dask-parallel, cached) and write them to HDF5."""
    from matdisco.ebsd import save_dataset, simulate_dataset

    check_output_file(output, (".h5",))
    det = _detector(shape, pc)
    if not pc_jitter >= 0:
        raise MatdiscoError(f"--pc-jitter must be ≥ 0 (a standard deviation), got {pc_jitter}")
    if pc_jitter > 0:
        if method != "random" or level != "noise0":
            raise MatdiscoError("--pc-jitter makes a clean training set: use it with "
                                "--method random and --level noise0")
        from matdisco.ebsd.augment import simulate_training_set

        x, q = simulate_training_set(n, seed=seed, config=det, pc_error=pc_jitter)
        save_dataset(output, x, q, {"level": "noise0", "detector": det.to_dict(),
                                    "method": "random", "pc_jitter": pc_jitter,
                                    "seed": seed})
        typer.echo(f"simulated {len(x)} patterns (PC jitter {pc_jitter}) -> {output}")
        return
    out = simulate_dataset(n if method == "random" else None, method=method,
                           resolution=resolution, seed=seed, config=det,
                           levels=(level,), path=output)
    typer.echo(f"simulated {len(out[level][0])} patterns ({level}) -> {output}")


@app.command()
@handle_errors
def train(
    data: Path = typer.Argument(None, help="HDF5 training set from `simulate` (or --data)."),
    data_option: Path = typer.Option(None, "--data", help="The training set, as an option."),
    run_dir: Path = typer.Option(..., "--run-dir", "--out", help="Run directory."),
    loss: str = typer.Option("mae_mde", help="mae, mde, mae_mde, quat or 6d."),
    preset: str = typer.Option("compact", help="OMNet preset: full, compact, tiny."),
    epochs: int = typer.Option(30),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1e-3),
    val_fraction: float = typer.Option(0.1, help="Held-out fraction for early stopping."),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(False, help="Resume from the run directory's checkpoint."),
    augment: str = typer.Option(None, help="Degrade every training batch at random up to "
                                "this level (noise1, noise2, noise3) for robustness."),
    pixel_noise: float = typer.Option(0.0, help="With --augment: largest additive pixel "
                                      "noise (relative std), as real detectors show."),
    init: Path = typer.Option(None, help="Start from this trained OMNet run (fine-tune)."),
    overwrite: bool = typer.Option(False, help="Replace the run that --run-dir already holds."),
) -> None:
    """Train OMNet on simulated patterns with the shared Trainer."""
    from matdisco.ebsd.workflow import train_omnet

    data = one_input(data, data_option, "training set")
    if not 0 <= val_fraction < 1:
        raise MatdiscoError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if not pixel_noise >= 0:
        raise MatdiscoError(f"--pixel-noise must be ≥ 0, got {pixel_noise}")
    est, metrics = train_omnet(data, run_dir, loss=loss, preset=preset, epochs=epochs,
                               batch_size=batch_size, lr=lr, val_fraction=val_fraction,
                               seed=seed, resume=resume, augment=augment,
                               pixel_noise=pixel_noise, init=init, overwrite=overwrite)
    mde = metrics["last_epoch"].get("train_mde_deg", float("nan"))
    typer.echo(f"trained OMNet ({est.n_parameters} parameters) for {metrics['epochs_run']} "
               f"epochs; last train MDE {mde:.3f} deg -> {run_dir}")


@app.command()
@handle_errors
def index(
    patterns: Path = typer.Argument(..., help="HDF5 set from `simulate` or any file "
                                    "kikuchipy reads (h5ebsd, EMsoft, NORDIF, .ebsp)."),
    run_dir: Path = typer.Option(..., help="Trained OMNet run directory."),
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Output orix CrystalMap (.ang or .h5)."),
    map_shape: str = typer.Option(None, help="Map shape 'rows,cols' (default: file's)."),
    refine: bool = typer.Option(False, help="Refine OMNet's orientations against the "
                                "master pattern (kikuchipy; dictionary-free, slower)."),
    trust_region: float = typer.Option(5.0, help="With --refine: +/- degrees per Euler "
                                       "angle around OMNet's orientation."),
    table: Path = typer.Option(None, help="Also write one row per pattern, in input order "
                               "(.csv or .parquet): index, row, col, x, y (as in the map), "
                               "quaternion qw..qz, Euler angles phi1_deg, Phi_deg, phi2_deg "
                               "and score (refinement NCC; empty without --refine)."),
    step: float = typer.Option(None, help="Scan step for the map's x, y coordinates "
                               "(default: the file's step, e.g. 1.5 um for kikuchipy's Ni "
                               "data; 1 when the file has none)."),
) -> None:
    """Index patterns with a trained OMNet and write an orix CrystalMap."""
    from matdisco.ebsd.workflow import index_patterns

    shape: tuple[int, int] | None = None
    if map_shape:
        try:
            vals = tuple(int(v) for v in map_shape.split(","))
        except ValueError:
            vals = ()
        if len(vals) != 2 or min(vals) < 1:
            raise MatdiscoError(f"--map-shape must be two positive integers 'rows,cols', "
                                f"got {map_shape!r}")
        shape = (vals[0], vals[1])
    if step is not None and not (math.isfinite(step) and step > 0):
        raise MatdiscoError(f"--step must be a positive number, got {step}")
    res = index_patterns(patterns, run_dir, output, map_shape=shape, refine=refine,
                         trust_region=trust_region, table=table, step=step)
    extra = "".join(f" and {res[k]}" for k in ("ipf_png", "table") if res[k])
    typer.echo(f"indexed {res['n_patterns']} patterns ({res['patterns_per_s']:.0f} "
               f"patterns/s) -> {output}{extra}")


@app.command()
@handle_errors
def evaluate(
    test: Path = typer.Argument(..., help="HDF5 test set with true orientations."),
    run_dir: list[Path] = typer.Option(..., help="OMNet run directories (repeatable)."),
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Output directory (metrics.json, PNGs)."),
    dictionary: Path = typer.Option(None, help="HDF5 dictionary set: also run "
                                    "dictionary indexing."),
    refine: bool = typer.Option(False, help="Also refine the dictionary and the OMNet "
                                "solutions (kikuchipy refinement)."),
    trust_region: float = typer.Option(5.0, help="With --refine: +/- degrees per Euler "
                                       "angle around OMNet's orientation (2 for the "
                                       "dictionary's)."),
) -> None:
    """Disorientation metrics of OMNet runs (and dictionary indexing) on a test set."""
    from matdisco.ebsd.workflow import evaluate_runs

    results = evaluate_runs(test, run_dir, output, dictionary=dictionary, refine=refine,
                            trust_region=trust_region)
    for k, v in results.items():
        typer.echo(f"{k}: mean {v['mean_disorientation_deg']:.3f} deg, median "
                   f"{v['median_disorientation_deg']:.3f} deg, <=1deg "
                   f"{v['frac_within_1deg']:.2f}, {v.get('patterns_per_s', 0):.1f} patterns/s")
