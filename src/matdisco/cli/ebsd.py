"""``matdisco ebsd``: simulate Ni EBSD patterns, train OMNet, index maps, evaluate."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from matdisco import MatdiscoError
from matdisco._io import check_output_file
from matdisco.cli import handle_errors, one_input

if TYPE_CHECKING:  # imported lazily at runtime to keep the CLI start fast
    import numpy as np

    from matdisco.ebsd import DetectorConfig

app = typer.Typer(help="EBSD orientation indexing of cubic (m-3m) crystals: simulate "
                  "patterns from kikuchipy's Ni master pattern, train OMNet, index "
                  "pattern files and evaluate against dictionary indexing.",
                  no_args_is_help=True)


# entries of an OMNet run's configuration that --resume may change
#: Settings that may change on --resume (not the epochs: the schedule depends on them, and
#: a finished run would silently not train the extra epochs).
_RESUME_FREE = ("trainer.patience", "trainer.device", "trainer.progress")


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


def _read_patterns(path: Path) -> tuple[np.ndarray, np.ndarray | None,
                                         tuple[int, ...] | None, float | None]:
    """Patterns, true quaternions (our HDF5 sets), scan shape and scan step (kikuchipy
    files) of a pattern file; each of the last three None where the file has none."""
    from matdisco.ebsd import load_dataset
    from matdisco.ebsd.io import load_patterns

    if not path.exists():
        raise MatdiscoError(f"{path}: pattern file not found")
    if path.suffix == ".h5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                ours = "patterns" in f and "quaternions" in f
        except OSError as exc:
            raise MatdiscoError(f"{path}: not a readable HDF5 file ({exc})") from exc
        if ours:
            x, q, _ = load_dataset(path)
            return x, q, None, None
    x, nav, sig = load_patterns(path)
    axes = sig.axes_manager.navigation_axes
    scale = float(axes[0].scale) if axes else None
    return x, None, nav, scale if scale is not None and math.isfinite(scale) and scale > 0 \
        else None


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
    data = one_input(data, data_option, "training set")
    import shutil

    import numpy as np

    from matdisco.ebsd import DetectorConfig, OMNetIndexer, load_dataset
    from matdisco.training import (
        RunDir,
        holds_run,
        prepare_run_dir,
        publish_run_dir,
        staged_run_dir,
    )
    from matdisco.training.plots import plot_history

    if not 0 <= val_fraction < 1:
        raise MatdiscoError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if not pixel_noise >= 0:
        raise MatdiscoError(f"--pixel-noise must be ≥ 0, got {pixel_noise}")
    x, q, meta = load_dataset(data)
    det = DetectorConfig.from_dict(meta.get("detector", {"shape": x.shape[1:]}),
                                   source=f"{data}: detector")
    est = OMNetIndexer(loss=loss, preset=preset, detector=det, epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed, run_dir=run_dir,
                       augment=augment, pixel_noise=pixel_noise, init=init)
    est._trainer_config()  # bad epochs, batch size or lr are refused before any write
    # an existing run is never silently replaced; --resume continues only the same
    # configuration (refused before its config.json is touched); an overwritten run stays
    # in place until the new one is published whole
    replacing = overwrite and not resume and holds_run(run_dir)
    prepare_run_dir(run_dir, resume=resume, overwrite=overwrite, config=est.get_config(),
                    free=_RESUME_FREE, staged=True)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    nv = int(round(val_fraction * len(x))) if len(x) > 10 else 0
    vi, ti = idx[:nv], idx[nv:]
    target = staged_run_dir(run_dir) if replacing else run_dir
    est.run_dir = target
    try:
        t0 = time.perf_counter()
        est.fit(x[ti], q[ti], val=(x[vi], q[vi]) if nv else None, resume=resume)
        est.save(target)
        last = est.history_[-1] if est.history_ else {}
        rd = RunDir(target)
        rd.write_metrics({"epochs_run": len(est.history_), "n_parameters": est.n_parameters,
                          "n_train": len(ti), "n_val": int(nv),
                          "seconds_this_run": time.perf_counter() - t0,
                          "last_epoch": {k: v for k, v in last.items()
                                         if isinstance(v, int | float)}})
        rd.save_plot("training_curve", plot_history(est.history_, f"OMNet ({loss} loss)"))
        if replacing:
            publish_run_dir(target, run_dir)
    except BaseException:
        if replacing:
            shutil.rmtree(target, ignore_errors=True)
        raise
    typer.echo(f"trained OMNet ({est.n_parameters} parameters) for {len(est.history_)} "
               f"epochs; last train MDE {last.get('train_mde_deg', float('nan')):.3f} deg "
               f"-> {run_dir}")


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
    from matdisco._io import save_figure, write_table
    from matdisco.ebsd import OMNetIndexer
    from matdisco.ebsd.evaluation import orientation_table, plot_ipf_map, write_crystal_map

    check_output_file(output, (".ang", ".h5"))
    if table is not None:
        check_output_file(table, (".csv", ".parquet"), "--table")
    shape: tuple[int, ...] | None = None
    if map_shape:
        try:
            shape = tuple(int(v) for v in map_shape.split(","))
        except ValueError:
            shape = None
        if shape is None or len(shape) != 2 or min(shape) < 1:
            raise MatdiscoError(f"--map-shape must be two positive integers 'rows,cols', "
                                f"got {map_shape!r}")
    if step is not None and not (math.isfinite(step) and step > 0):
        raise MatdiscoError(f"--step must be a positive number, got {step}")
    est = OMNetIndexer.load(run_dir)
    x, _, nav, file_step = _read_patterns(patterns)
    step = step if step is not None else (file_step or 1.0)
    if shape is not None and shape[0] * shape[1] != len(x):  # refused before indexing
        raise MatdiscoError(f"--map-shape {map_shape} holds {shape[0] * shape[1]} points, "
                            f"but {patterns} has {len(x)} patterns")
    t0 = time.perf_counter()
    qp, scores = est.predict_with_scores(x, refine=refine, trust_region=trust_region)
    dt = time.perf_counter() - t0
    if shape is None and nav is not None and len(nav) == 2:
        shape = nav
    write_crystal_map(output, qp, shape, scores, step=step)  # type: ignore[arg-type]
    if table is not None:
        write_table(table, orientation_table(qp, shape, scores,  # type: ignore[arg-type]
                                             step=step))
    extra = ""
    if shape is not None and len(shape) == 2 and shape[0] * shape[1] == len(qp):
        png = output.with_name(output.stem + "_ipf_z.png")
        save_figure(png, plot_ipf_map(qp, shape, "z", title=f"OMNet IPF-Z ({output.name})"))
        extra = f" and {png}"
    if table is not None:
        extra += f" and {table}"
    typer.echo(f"indexed {len(qp)} patterns ({len(qp) / max(dt, 1e-9):.0f} patterns/s) "
               f"-> {output}{extra}")


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
    from matdisco.ebsd import OMNetIndexer, load_dataset
    from matdisco.ebsd.dictionary import DictionaryIndexer
    from matdisco.ebsd.evaluation import (
        disorientation_deg,
        orientation_metrics,
        plot_histograms,
    )
    from matdisco.training import RunDir, holds_run

    if output.exists() and not output.is_dir():
        raise MatdiscoError(f"--output {output} is a file; give a directory")
    if holds_run(output):  # its metrics.json would be replaced by the evaluation's
        raise MatdiscoError(f"--output {output} holds a training run; write the evaluation "
                            "to another directory")
    from matdisco.ebsd.indexer import check_patterns, check_quaternions

    x, q, meta = load_dataset(test)
    q = check_quaternions(q, len(check_patterns(x, name=f"{test}: patterns")),
                          name=f"{test}: quaternions")
    results, dis = {}, {}
    for rd in run_dir:
        est = OMNetIndexer.load(rd)
        t0 = time.perf_counter()
        qp = est.predict(x)
        dt = time.perf_counter() - t0
        name = f"omnet_{est.loss}"
        if name in results:  # two runs with the same loss: tell them apart by directory
            name = f"{name}_{'_'.join(Path(rd).resolve().parts[-2:])}"
        results[name] = orientation_metrics(qp, q, dt)
        dis[name] = disorientation_deg(qp, q)
        if refine:
            t0 = time.perf_counter()
            qr = est.predict(x, refine=True, trust_region=trust_region)
            results[f"{name}_refined"] = orientation_metrics(qr, q, time.perf_counter() - t0)
            dis[f"{name}_refined"] = disorientation_deg(qr, q)
    if dictionary is not None:
        from matdisco.ebsd import DetectorConfig

        dx, dq, dmeta = load_dataset(dictionary)
        det = DetectorConfig.from_dict(dmeta.get("detector", {}),
                                       source=f"{dictionary}: detector")
        di = DictionaryIndexer(dx, dq, detector=det, resolution=dmeta.get("resolution"))
        t0 = time.perf_counter()
        qd, _ = di.index(x)
        t1 = time.perf_counter()
        results["dictionary"] = orientation_metrics(qd, q, t1 - t0)
        results["dictionary"]["dictionary_size"] = len(dx)
        dis["dictionary"] = disorientation_deg(qd, q)
        if refine:
            qr, _ = di.refine(x, qd)
            results["dictionary_refined"] = orientation_metrics(
                qr, q, time.perf_counter() - t0)
            dis["dictionary_refined"] = disorientation_deg(qr, q)
    out = RunDir(output)
    out.write_metrics({"test": str(test), "level": meta.get("level"), "results": results})
    out.save_plot("disorientation_hist", plot_histograms(dis))
    for k, v in results.items():
        typer.echo(f"{k}: mean {v['mean_disorientation_deg']:.3f} deg, median "
                   f"{v['median_disorientation_deg']:.3f} deg, <=1deg "
                   f"{v['frac_within_1deg']:.2f}, {v.get('patterns_per_s', 0):.1f} patterns/s")
