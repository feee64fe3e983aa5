"""Run-directory workflows of imitation refinement (what ``matdisco refine`` calls)::

    from matdisco.refine.workflow import train_refinement, apply_refiner, evaluate_refiner
    ref, metrics = train_refinement("ideal.npz", "imperfect.npz", "runs/refine")
    apply_refiner("runs/refine", "new.npz", "new_refined.npz")
    evaluate_refiner("runs/refine", "imperfect.npz")
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError


def train_refinement(ideal: str | os.PathLike[str], imperfect: str | os.PathLike[str],
                     out: str | os.PathLike[str], *, arch: str = "cnn1d",
                     refiner: str = "unet1d", refiner_output: str = "residual",
                     lr: float = 1e-3, prototypical: bool = False, targeted: bool = True,
                     target_class: int | None = None, lam: float = 1.0, alpha: float = 0.0,
                     beta: float = 10.0, gamma: float = 0.0, psi: str = "identity",
                     psi_window: int = 101, floor_window: int = 9, clf_epochs: int = 15,
                     epochs: int = 30, seed: int = 0, overwrite: bool = False,
                     log: Callable[[str], None] | None = None) -> tuple[Any, dict[str, Any]]:
    """Train a classifier on ideal signals, then a refiner on imperfect ones; write the run.

    Parameters
    ----------
    ideal : path
        Ideal simulated signals with labels (``X``, ``y``; optional ``two_theta``,
        ``class_names``), read by :func:`~matdisco.refine.io.load_signals`.
    imperfect : path
        Imperfect signals to refine (``X``; ``y`` = target classes, ``true`` = clean
        signals, both optional).
    out : path
        Run directory: the classifier and refiner weights and configs, ``metrics.json``
        (:func:`~matdisco.refine.compare_refinement` on the training signals, the mean
        absolute change and the classifier's training accuracy), ``refined.npz`` and
        ``refined_vs_raw.png``.
    targeted, target_class
        Refine towards the imperfect file's ``y`` (``targeted``) or every signal towards
        ``target_class``; a file without ``y`` trains a non-targeted refiner (and says so
        through ``log`` unless ``targeted`` is False).
    overwrite : bool
        Replace a run that ``out`` holds (in place only once the new one is complete);
        without it an existing run is refused before any work.
    arch, prototypical, clf_epochs
        :class:`~matdisco.refine.SignalClassifier` settings.
    refiner, refiner_output, lr, lam, alpha, beta, gamma, psi, psi_window, floor_window
        :class:`~matdisco.refine.ImitationRefiner` settings (with ``epochs`` and ``seed``;
        the seed also seeds the classifier).
    log : callable, optional
        Receives notes (one line each).

    Returns
    -------
    (ImitationRefiner, dict)
        The fitted refiner (its classifier is ``.classifier``) and the metrics.
    """
    from matdisco.refine import (
        ImitationRefiner,
        SignalClassifier,
        compare_refinement,
        plot_refinement,
    )
    from matdisco.refine.io import class_labels, load_signals, save_signals
    from matdisco.training import (
        RunDir,
        drop_checkpoints,
        prepare_run_dir,
        publish_run_dir,
        staged_run_dir,
    )

    ideal, imperfect = Path(ideal), Path(imperfect)
    idl = load_signals(ideal)
    imp = load_signals(imperfect)
    if "y" not in idl:
        raise MatdiscoError(f"{ideal}: ideal signals need labels (array 'y')")
    y_ideal = class_labels(idl["y"], ideal)
    y_imp = class_labels(imp["y"], imperfect) if "y" in imp else None
    # an existing run is never silently replaced; an overwritten one stays in place until
    # the new run is published whole (a killed training leaves nothing at out)
    # (its classifier/ sub-run is the run's own, not a foreign run to protect)
    prepare_run_dir(out, overwrite=overwrite, can_resume=False, staged=True,
                    own_subruns=("classifier",))
    grid = idl.get("two_theta")
    names = [str(c) for c in idl["class_names"]] if "class_names" in idl else None
    clf = SignalClassifier(arch=arch, prototypical=prototypical, epochs=clf_epochs,
                           seed=seed, two_theta=grid, class_names=names)
    clf.fit(idl["X"], y_ideal, two_theta=grid)
    y = None
    if target_class is not None:
        y = np.full(len(imp["X"]), target_class, np.int64)
    elif targeted and y_imp is not None:
        y = y_imp
    elif targeted and log is not None:
        log(f"note: {imperfect} has no labels (y): training a non-targeted refiner "
            "(pass --target-class K for a targeted one, or --no-targeted to silence this)")
    ref = ImitationRefiner(clf, arch=refiner, lam=lam, alpha=alpha, beta=beta, gamma=gamma,
                           psi=psi, output=refiner_output, epochs=epochs, lr=lr, seed=seed,
                           psi_window=psi_window, floor_window=floor_window)
    staged = staged_run_dir(out)
    try:
        ref.fit(imp["X"], y, run_dir=staged, two_theta=imp.get("two_theta"))
        ref.save(staged)
        # the run's own record of what it did to its training signals
        xr = ref.transform(imp["X"], two_theta=imp.get("two_theta"))
        rd = RunDir(staged)
        metrics: dict[str, Any] = compare_refinement(clf, imp["X"], xr, y_imp, imp.get("true"))
        metrics["mean_abs_change"] = float(np.abs(xr - np.asarray(imp["X"], float)).mean())
        metrics["classifier_train_accuracy"] = float((clf.predict(idl["X"]) == y_ideal).mean())
        metrics["targeted"] = y is not None
        rd.write_metrics(metrics)
        save_signals(rd / "refined.npz", xr, imp, imperfect)
        side = int(round(np.sqrt(xr.shape[1]))) if refiner == "unet2d" else None
        rd.save_plot("refined_vs_raw", plot_refinement(np.asarray(imp["X"]), xr, imp.get("true"),
                                                       imp.get("two_theta"), image_side=side))
        drop_checkpoints(staged)  # the command has no resume
        publish_run_dir(staged, Path(out))
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return ref, metrics


def apply_refiner(run: str | os.PathLike[str], input: str | os.PathLike[str],
                  output: str | os.PathLike[str],
                  classifier: str | os.PathLike[str] | None = None) -> np.ndarray:
    """Refine the signals of ``input`` with a trained refiner and write them to ``output``
    (.npz, .npy, .csv or .parquet; one signal per input, in order, a table starting with the
    input's label and name/ID columns). ``classifier`` is a classifier run directory
    (default: the refiner's own). Returns the refined signals."""
    from matdisco._io import check_output_file
    from matdisco.refine import ImitationRefiner, SignalClassifier
    from matdisco.refine.io import check_ids, load_signals, save_signals, signal_ids

    output, input = Path(output), Path(input)
    suffixes = (".npz", ".npy", ".csv", ".parquet")
    if output.is_dir() or output.suffix.lower() not in suffixes:  # before any work
        check_output_file(output, suffixes)
    clf = SignalClassifier.load(classifier) if classifier is not None else None
    ref = ImitationRefiner.load(run, classifier=clf)
    data = load_signals(input)
    x = np.asarray(data["X"])
    if output.suffix.lower() in (".csv", ".parquet") and x.ndim == 2:  # before the work
        check_ids(signal_ids(data), [f"x{i}" for i in range(x.shape[1])], input)
    xr = ref.transform(data["X"], two_theta=data.get("two_theta"))
    save_signals(output, xr, data, input)
    return np.asarray(xr)


def evaluate_refiner(run: str | os.PathLike[str], input: str | os.PathLike[str],
                     output: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Compare the raw and refined signals of ``input``: classifier accuracy (with ``y``),
    class fractions and distances to the true signals (with ``true``); the metrics of
    :func:`~matdisco.refine.compare_refinement`, also written as JSON to ``output``."""
    from matdisco._io import write_json
    from matdisco.refine import ImitationRefiner, compare_refinement
    from matdisco.refine.io import class_labels, load_signals

    input = Path(input)
    ref = ImitationRefiner.load(run)
    data = load_signals(input)
    xr = ref.transform(data["X"], two_theta=data.get("two_theta"))
    y = class_labels(data["y"], input) if "y" in data else None
    res: dict[str, Any] = compare_refinement(ref.classifier, data["X"], xr, y, data.get("true"))
    if output is not None:
        write_json(output, res)
    return res
