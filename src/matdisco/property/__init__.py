"""Property prediction from composition: train, predict, evaluate, report."""

from matdisco.property.evaluation import regression_metrics, write_plots, write_report
from matdisco.property.workflow import (
    NN_DEFAULTS,
    PropertyPredictor,
    combine_runs,
    evaluate_run,
    load_run,
    make_estimator,
    predict_file,
    run_demo,
    train_property,
)

__all__ = [
    "NN_DEFAULTS",
    "PropertyPredictor",
    "combine_runs",
    "evaluate_run",
    "load_run",
    "make_estimator",
    "predict_file",
    "regression_metrics",
    "run_demo",
    "train_property",
    "write_plots",
    "write_report",
]
