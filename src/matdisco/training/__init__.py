"""Training core: the one trainer, run directories and weight I/O."""

from matdisco.training.rundir import (
    RunDir,
    environment,
    load_state_checked,
    load_weights,
    save_weights,
)
from matdisco.training.trainer import Trainer, TrainerConfig, resolve_device, set_seed

__all__ = [
    "RunDir",
    "Trainer",
    "TrainerConfig",
    "environment",
    "load_state_checked",
    "load_weights",
    "resolve_device",
    "save_weights",
    "set_seed",
]
