"""Top-level property commands: train, predict, evaluate, report, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from matdisco.cli import handle_errors

if TYPE_CHECKING:
    from matdisco.training import RunDir


@handle_errors
def train(
    data: str = typer.Option("exp_formation_enthalpy", help="Dataset name or CSV/Parquet."),
    model: str = typer.Option("elemnet", help="elemnet, irnet17|24|48, plain*, srnet*, mlp, "
                              "roost (element attention), rf."),
    target: str = typer.Option("target", help="Target column."),
    formula: str = typer.Option("formula", help="Formula column."),
    features: str = typer.Option(None, help="fractions or magpie (default per model)."),
    cv: int = typer.Option(None, help="k-fold cross-validation."),
    test: str = typer.Option(None, help="Fixed test file."),
    holdout_system: list[str] = typer.Option(None, help="Hold out a chemical system, "
                                             "e.g. Ti-O (repeatable)."),
    init: str = typer.Option(None, help="Source run directory for transfer learning."),
    teacher: str = typer.Option(None, help="Teacher run directory for distillation: adds "
                                "--n-synthetic teacher-labelled composition analogues to "
                                "the training rows."),
    n_synthetic: int = typer.Option(0, help="Synthetic compositions for --teacher."),
    aux_data: str = typer.Option(None, help="Multi-fidelity co-training: a dataset name or "
                                 "CSV/Parquet of the same property at another fidelity "
                                 "(e.g. DFT energies, same columns and units), trained "
                                 "alongside the data through a second output head that is "
                                 "dropped afterwards; rows of evaluated compositions are "
                                 "left out."),
    aux_rows: int = typer.Option(0, help="With --aux-data: rows sampled per member (0: all)."),
    aux_select: str = typer.Option("random", help="With --aux-rows: random, or "
                                   "train-first (the auxiliary rows of each member's own "
                                   "training compositions first)."),
    aux_weight: float = typer.Option(None, help="With --aux-data: loss weight of an "
                                     "auxiliary row (default 1)."),
    out: Path = typer.Option(Path("runs/property"), help="Run directory."),
    epochs: int = typer.Option(None, help="Maximum epochs (default 100)."),
    batch_size: int = typer.Option(None, help="Batch size (default 256)."),
    lr: float = typer.Option(None, help="Peak learning rate of the cosine schedule "
                             "(default 0.001; AdamW, weight decay 1e-5, 1 warm-up epoch)."),
    patience: int = typer.Option(None, help="Early-stopping patience in epochs on the "
                                 "validation loss (default 30)."),
    dropout_anneal: int = typer.Option(None, help="Epochs at the end over which dropout is "
                                       "annealed to zero (default: a tenth of --epochs)."),
    dropout_scale: float = typer.Option(None, help="Multiply every dropout probability "
                                        "(0: off; e.g. to fine-tune an annealed ElemNet "
                                        "with --init)."),
    val_fraction: float = typer.Option(None, help="Share of the training rows held out for "
                                       "early stopping (default 0.1; 0: train the whole "
                                       "schedule on every row)."),
    ema: float = typer.Option(None, help="Weight EMA decay (e.g. 0.99); evaluation and the "
                              "saved weights use the averaged weights."),
    l2sp: float = typer.Option(None, help="With --init: L2-SP penalty weight pulling the "
                               "fine-tuned weights toward the source run's."),
    freeze_layers: int = typer.Option(None, help="With --init: keep the first N linear "
                                      "layers at the source weights."),
    probe_head: bool = typer.Option(None, "--probe-head/--no-probe-head", help="With "
                                    "--init: refit the last layer by least squares on the "
                                    "source features before fine-tuning (LP-FT)."),
    n_estimators: int = typer.Option(100, help="Trees (rf)."),
    seed: int = typer.Option(0, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    clean: bool = typer.Option(True, help="Apply the ElemNet cleaning."),
    resume: bool = typer.Option(False, help="Resume an interrupted run (same options)."),
    overwrite: bool = typer.Option(False, help="Replace the run that --out already holds "
                                   "(otherwise an existing run is refused, never touched). "
                                   "The new run is written beside it and replaces it only "
                                   "when complete; with --resume, an interrupted "
                                   "replacement continues."),
) -> None:
    """Train (and cross-validate / test) a property model; writes a run directory."""
    from matdisco.property import train_property

    settings: dict[str, Any] = dict(
        epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
        dropout_anneal_epochs=dropout_anneal, dropout_scale=dropout_scale, l2sp=l2sp,
        val_fraction=val_fraction, ema=ema, freeze_layers=freeze_layers,
        probe_head=probe_head, aux_weight=aux_weight)
    hyper = {k: v for k, v in settings.items() if v is not None}
    run = train_property(data, model=model, out=out, features=features, cv=cv, test=test,
                         holdout=holdout_system or None, init=init, clean=clean,
                         teacher=teacher, n_synthetic=n_synthetic, aux_data=aux_data,
                         aux_rows=aux_rows, aux_select=aux_select,
                         formula_col=formula, target_col=target, seed=seed, resume=resume,
                         overwrite=overwrite, n_estimators=n_estimators, device=device,
                         progress=True, **hyper)
    _summary(run)


def _run_dir(run: Path) -> RunDir:
    """The run directory ``run``, refused (never created) when it is not one."""
    from matdisco import MatdiscoError
    from matdisco.training import RunDir

    rd = RunDir.open(run)
    if not (rd / "config.json").exists():
        raise MatdiscoError(f"{run}: not a run directory (no config.json)")
    return rd


def _num(value: object, spec: str) -> str:
    """Format a metric (``nan`` for a missing one)."""
    return "nan" if value is None else format(value, spec)


def _summary(run: Path) -> None:
    from matdisco.property.evaluation import read_run_metrics

    met = read_run_metrics(_run_dir(run))
    for key in ("cv", "test", "train"):
        if key in met:
            m = met[key]
            typer.echo(f"{key}: MAE {_num(m.get('mae'), '.4f')}  "
                       f"RMSE {_num(m.get('rmse'), '.4f')}  R2 {_num(m.get('r2'), '.3f')}  "
                       f"(n={m.get('n')})")
    for system, m in met.get("holdout", {}).items():
        typer.echo(f"holdout {system}: MAE {_num(m.get('mae'), '.4f')} (n={m.get('n')})")
    typer.echo(f"run directory: {run}  (report: {run / 'report.html'})")


@handle_errors
def predict(run: Path = typer.Argument(..., help="Run directory."),
            data: Path = typer.Argument(..., help="CSV/Parquet with a formula column."),
            out: Path = typer.Option(Path("predictions.csv"), "--out", "-o",
                                     help="Output CSV/Parquet."),
            formula: str = typer.Option("formula", help="Formula column.")) -> None:
    """Predict a file of formulas (mean and spread over the run's ensemble)."""
    from matdisco.property import predict_file

    typer.echo(f"wrote {predict_file(run, data, out, formula)}")


@handle_errors
def evaluate(run: Path = typer.Argument(..., help="Run directory."),
             data: str = typer.Argument(None, help="Labelled dataset; default: print the "
                                        "run's own metrics."),
             target: str = typer.Option(None, help="Target column (default: the one the "
                                        "run was trained with)."),
             formula: str = typer.Option(None, help="Formula column (default: the one the "
                                         "run was trained with).")) -> None:
    """Evaluate a run on a labelled dataset (or show its recorded metrics)."""
    from matdisco.property import evaluate_run

    if data is None:
        _summary(run)
        return
    m = evaluate_run(run, data, formula, target)
    typer.echo(json.dumps(m, indent=2))


@handle_errors
def ensemble(runs: list[Path] = typer.Argument(..., help="Two or more finished runs of one "
                                               "model (e.g. the same recipe, other seeds)."),
             out: Path = typer.Option(..., help="Ensemble run directory (an ensemble "
                                      "already there is recomputed)."),
             overwrite: bool = typer.Option(False, help="Replace a run in --out that is not "
                                            "an ensemble.")) -> None:
    """Combine runs into one ensemble run (mean and spread over all their members)."""
    from matdisco.property import combine_runs

    _summary(combine_runs(runs, out, overwrite=overwrite))


@handle_errors
def report(run: Path = typer.Argument(..., help="Run directory.")) -> None:
    """Write the run's HTML report (parity plot, error CDF, metrics table)."""
    from matdisco.property import write_plots, write_report
    from matdisco.property.evaluation import read_predictions, read_run_metrics

    rd = _run_dir(run)
    rd.read_config()  # every input is checked before a plot is replaced
    read_run_metrics(rd)
    write_plots(rd, read_predictions(rd))
    typer.echo(f"wrote {write_report(rd)}")


@handle_errors
def demo(out: Path = typer.Option(Path("runs/demo"), help="Run directory."),
         folds: int = typer.Option(5, help="Cross-validation folds."),
         epochs: int = typer.Option(25, help="Maximum epochs per fold."),
         overwrite: bool = typer.Option(False, help="Also replace a run in --out that is "
                                        "not a demo run.")) -> None:
    """The main job: cross-validate ElemNet on the embedded experimental formation
    enthalpies (2,135 compounds shipped with pymatgen) and write the run and its report
    (a demo run already in ``--out`` is replaced; any other run only with --overwrite)."""
    from matdisco.property import run_demo

    typer.echo(f"ElemNet, {folds}-fold CV on the embedded experimental formation "
               "enthalpies (pymatgen exp_compounds.json.gz) ...")
    run = run_demo(out, folds=folds, epochs=epochs, overwrite=overwrite)
    _summary(run)


def register(app: typer.Typer) -> None:
    """Attach the property commands to the root app."""
    for fn in (train, predict, evaluate, ensemble, report, demo):
        app.command(fn.__name__)(fn)
