"""Training core: the one trainer, run directories and weight I/O."""

from matdisco.training.rundir import (
    RunDir,
    config_differences,
    drop_checkpoints,
    environment,
    holds_run,
    load_state_checked,
    load_weights,
    load_weights_metadata,
    prepare_run_dir,
    publish_run_dir,
    refuse_foreign_run,
    save_weights,
    staged_run_dir,
)
from matdisco.training.trainer import Trainer, TrainerConfig, resolve_device, set_seed

__all__ = [
    "RunDir",
    "Trainer",
    "TrainerConfig",
    "config_differences",
    "drop_checkpoints",
    "environment",
    "holds_run",
    "load_state_checked",
    "load_weights",
    "load_weights_metadata",
    "prepare_run_dir",
    "publish_run_dir",
    "refuse_foreign_run",
    "resolve_device",
    "save_weights",
    "set_seed",
    "staged_run_dir",
]
