"""Run-directory workflows of OMNet: train, index pattern files, evaluate.

These are what ``matdisco ebsd train``, ``ebsd index`` and ``ebsd evaluate`` call::

    from matdisco.ebsd.workflow import evaluate_runs, index_patterns, train_omnet
    train_omnet("train.h5", "runs/omnet", loss="mae_mde", epochs=30)
    index_patterns("scan.h5", "runs/omnet", "scan.ang", table="scan.csv")
    evaluate_runs("test.h5", ["runs/omnet"], "runs/eval", dictionary="dict.h5")
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError

#: Settings of an OMNet run that may change on resume (not the epochs: the schedule
#: depends on them, and a finished run would silently not train the extra epochs).
RESUME_FREE = ("trainer.patience", "trainer.device", "trainer.progress")


def read_patterns(path: str | os.PathLike[str]
                  ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, ...] | None,
                             float | None]:
    """Patterns of a pattern file, with what the file knows about them.

    Returns ``(patterns, quaternions, scan_shape, step)``: the true quaternions of a
    matdisco HDF5 set (from ``ebsd simulate``), the scan shape and step of a file that
    kikuchipy reads (h5ebsd, EMsoft, NORDIF, .ebsp); each of the last three is None where
    the file has none.
    """
    from matdisco.ebsd import load_dataset
    from matdisco.ebsd.io import load_patterns

    path = Path(path)
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


def train_omnet(data: str | os.PathLike[str], run_dir: str | os.PathLike[str], *,
                loss: str = "mae_mde", preset: str = "compact", epochs: int = 30,
                batch_size: int = 64, lr: float = 1e-3, val_fraction: float = 0.1,
                seed: int = 0, resume: bool = False, augment: str | None = None,
                pixel_noise: float = 0.0, init: str | os.PathLike[str] | None = None,
                overwrite: bool = False) -> tuple[Any, dict[str, Any]]:
    """Train OMNet on a simulated set and write its run directory.

    Parameters
    ----------
    data : path
        HDF5 training set from ``ebsd simulate`` (patterns, quaternions, detector).
    run_dir : path
        Run directory: ``model.safetensors``, ``config.json``, ``history.jsonl``, the
        checkpoint (a finished one lets ``resume`` skip the training), ``metrics.json``
        and ``training_curve.png``.
    loss, preset, epochs, batch_size, lr, seed, augment, pixel_noise, init
        :class:`~matdisco.ebsd.OMNetIndexer` settings.
    val_fraction : float
        Fraction held out for early stopping (none for sets of ≤ 10 patterns).
    resume : bool
        Continue the run in ``run_dir`` (only the same configuration; ``RESUME_FREE``
        settings may change).
    overwrite : bool
        Replace a run that ``run_dir`` holds; the old run stays in place until the new
        one is complete. Without ``resume`` or ``overwrite`` an existing run is refused
        before any work.

    Returns
    -------
    (OMNetIndexer, dict)
        The trained estimator and the metrics written to ``metrics.json``.
    """
    from matdisco.ebsd import DetectorConfig, OMNetIndexer, load_dataset
    from matdisco.training import (
        RunDir,
        holds_run,
        prepare_run_dir,
        publish_run_dir,
        staged_run_dir,
    )
    from matdisco.training.plots import plot_history

    run_dir = Path(run_dir)
    if not (isinstance(val_fraction, int | float) and 0 <= val_fraction < 1):
        raise MatdiscoError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not (isinstance(pixel_noise, int | float) and pixel_noise >= 0):
        raise MatdiscoError(f"pixel_noise must be ≥ 0, got {pixel_noise}")
    x, q, meta = load_dataset(data)
    det = DetectorConfig.from_dict(meta.get("detector", {"shape": x.shape[1:]}),
                                   source=f"{data}: detector")
    est = OMNetIndexer(loss=loss, preset=preset, detector=det, epochs=epochs,
                       batch_size=batch_size, lr=lr, seed=seed, run_dir=run_dir,
                       augment=augment, pixel_noise=pixel_noise, init=init)
    est._trainer_config()  # bad epochs, batch size or lr are refused before any write
    # an existing run is never silently replaced; resume continues only the same
    # configuration (refused before its config.json is touched); an overwritten run stays
    # in place until the new one is published whole
    replacing = overwrite and not resume and holds_run(run_dir)
    prepare_run_dir(run_dir, resume=resume, overwrite=overwrite, config=est.get_config(),
                    free=RESUME_FREE, staged=True)
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
        metrics = {"epochs_run": len(est.history_), "n_parameters": est.n_parameters,
                   "n_train": len(ti), "n_val": int(nv),
                   "seconds_this_run": time.perf_counter() - t0,
                   "last_epoch": {k: v for k, v in last.items()
                                  if isinstance(v, int | float)}}
        rd = RunDir(target)
        rd.write_metrics(metrics)
        rd.save_plot("training_curve", plot_history(est.history_, f"OMNet ({loss} loss)"))
        if replacing:
            publish_run_dir(target, run_dir)
    except BaseException:
        if replacing:
            shutil.rmtree(target, ignore_errors=True)
        raise
    est.run_dir = run_dir
    return est, metrics


def index_patterns(patterns: str | os.PathLike[str], run_dir: str | os.PathLike[str],
                   output: str | os.PathLike[str], *,
                   map_shape: tuple[int, int] | None = None, refine: bool = False,
                   trust_region: float = 5.0, table: str | os.PathLike[str] | None = None,
                   step: float | None = None) -> dict[str, Any]:
    """Index a pattern file with an OMNet run and write an orix CrystalMap.

    Parameters
    ----------
    patterns : path
        A matdisco HDF5 set or any file kikuchipy reads (see :func:`read_patterns`).
    run_dir : path
        Trained OMNet run directory.
    output : path
        CrystalMap ``.ang`` or ``.h5``; with a 2D map shape also ``<stem>_ipf_z.png``.
    map_shape : (rows, cols), optional
        Map shape (default: the file's scan shape).
    refine, trust_region
        Refine OMNet's orientations against the master pattern (kikuchipy), ± degrees per
        Euler angle.
    table : path, optional
        Also write one row per pattern in input order (.csv or .parquet; see
        :func:`~matdisco.ebsd.evaluation.orientation_table`).
    step : float, optional
        Scan step of the x, y coordinates (default: the file's step, else 1).

    Returns
    -------
    dict
        ``n_patterns``, ``seconds``, ``patterns_per_s``, ``shape``, ``step`` and the paths
        written (``output``, ``ipf_png`` or None, ``table`` or None).
    """
    from matdisco._io import check_output_file, save_figure, write_table
    from matdisco.ebsd import OMNetIndexer
    from matdisco.ebsd.evaluation import orientation_table, plot_ipf_map, write_crystal_map

    output = Path(output)
    check_output_file(output, (".ang", ".h5"))
    if table is not None:
        check_output_file(table, (".csv", ".parquet"), "--table")
    shape: tuple[int, ...] | None = None
    if map_shape is not None:
        shape = tuple(map_shape)
        if len(shape) != 2 or not all(isinstance(v, int | np.integer) and v >= 1
                                      for v in shape):
            raise MatdiscoError(f"map_shape must be two positive integers (rows, cols), "
                                f"got {map_shape!r}")
    if step is not None and not (math.isfinite(step) and step > 0):
        raise MatdiscoError(f"step must be a positive number, got {step}")
    est = OMNetIndexer.load(run_dir)
    x, _, nav, file_step = read_patterns(patterns)
    step = step if step is not None else (file_step or 1.0)
    if shape is not None and shape[0] * shape[1] != len(x):  # refused before indexing
        raise MatdiscoError(f"map shape {shape[0]},{shape[1]} holds {shape[0] * shape[1]} "
                            f"points, but {patterns} has {len(x)} patterns")
    t0 = time.perf_counter()
    qp, scores = est.predict_with_scores(x, refine=refine, trust_region=trust_region)
    dt = time.perf_counter() - t0
    if shape is None and nav is not None and len(nav) == 2:
        shape = nav
    write_crystal_map(output, qp, shape, scores, step=step)  # type: ignore[arg-type]
    if table is not None:
        write_table(table, orientation_table(qp, shape, scores,  # type: ignore[arg-type]
                                             step=step))
    png = None
    if shape is not None and len(shape) == 2 and shape[0] * shape[1] == len(qp):
        png = output.with_name(output.stem + "_ipf_z.png")
        save_figure(png, plot_ipf_map(qp, shape, "z", title=f"OMNet IPF-Z ({output.name})"))
    return {"n_patterns": len(qp), "seconds": dt, "patterns_per_s": len(qp) / max(dt, 1e-9),
            "shape": None if shape is None else list(shape), "step": step,
            "output": str(output), "ipf_png": None if png is None else str(png),
            "table": None if table is None else str(table)}


def evaluate_runs(test: str | os.PathLike[str], run_dirs: Sequence[str | os.PathLike[str]],
                  output: str | os.PathLike[str], *,
                  dictionary: str | os.PathLike[str] | None = None, refine: bool = False,
                  trust_region: float = 5.0) -> dict[str, dict[str, Any]]:
    """Disorientation metrics of OMNet runs (and dictionary indexing) on a test set.

    Writes ``metrics.json`` (one entry per method) and ``disorientation_hist.png`` to
    ``output`` and returns the entries. Two runs with the same loss are told apart by
    their directory; ``refine`` adds the refined OMNet (± ``trust_region`` degrees) and
    refined dictionary solutions.
    """
    from matdisco.ebsd import OMNetIndexer, load_dataset
    from matdisco.ebsd.dictionary import DictionaryIndexer
    from matdisco.ebsd.evaluation import (
        disorientation_deg,
        orientation_metrics,
        plot_histograms,
    )
    from matdisco.ebsd.indexer import check_patterns, check_quaternions
    from matdisco.training import RunDir, holds_run

    output = Path(output)
    if not run_dirs:
        raise MatdiscoError("give at least one OMNet run directory")
    if output.exists() and not output.is_dir():
        raise MatdiscoError(f"--output {output} is a file; give a directory")
    if holds_run(output):  # its metrics.json would be replaced by the evaluation's
        raise MatdiscoError(f"--output {output} holds a training run; write the evaluation "
                            "to another directory")
    x, q, meta = load_dataset(test)
    q = check_quaternions(q, len(check_patterns(x, name=f"{test}: patterns")),
                          name=f"{test}: quaternions")
    results: dict[str, dict[str, Any]] = {}
    dis: dict[str, np.ndarray] = {}
    for rd in run_dirs:
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
    return results
