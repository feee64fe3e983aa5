"""Run directories: every run writes config, metrics, weights, predictions and plots.

Layout::

    RUN/
      config.json          # everything needed to rebuild the run
      metrics.json         # final metrics
      history.jsonl        # per-epoch metrics log (written by the Trainer)
      *.safetensors        # weights (never pickle)
      predictions.csv      # predictions
      *.png                # plots
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from matdisco import MatdiscoError, __version__
from matdisco._io import atomic_path, read_json, save_figure, write_json, write_table


def save_weights(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor],
                 metadata: dict[str, str] | None = None) -> Path:
    """Save a dict of tensors as ``.safetensors`` atomically."""
    path = Path(path)
    clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)
    return path


def load_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a ``.safetensors`` file, raising a clear error when missing or corrupt."""
    path = Path(path)
    if not path.exists():
        raise MatdiscoError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise MatdiscoError(f"{path}: corrupt or unreadable safetensors file ({exc})") from exc


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor],
                    source: str, what: str = "the model") -> None:
    """Load ``state`` into ``module``, refusing missing/unexpected keys or shape mismatches.

    Parameters
    ----------
    module : nn.Module
        Target module.
    state : dict of tensors
        Weights (e.g. from :func:`load_weights`).
    source : str
        File name for error messages.
    what : str
        Description of the model for error messages.
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise MatdiscoError(
            f"{source}: weights do not match {what} (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise MatdiscoError(
                f"{source}: tensor {k!r} has shape {tuple(state[k].shape)}, "
                f"{what} expects {tuple(v.shape)}"
            )
    module.load_state_dict({k: state[k].to(v.dtype) for k, v in own.items()})


def load_state_checked(module: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a ``.safetensors`` file into ``module`` with :func:`load_state_into` checks."""
    load_state_into(module, load_weights(path), str(path))


def environment() -> dict[str, Any]:
    """Describe the machine and library versions for run records."""
    return {
        "matdisco": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class RunDir:
    """A run directory with atomic writers for every artefact.

    Parameters
    ----------
    path : str or Path
        Directory of the run; created if absent.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_config(self, config: dict[str, Any]) -> Path:
        """Write ``config.json`` (adds creation time and environment)."""
        cfg = dict(config)
        cfg.setdefault("created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
        cfg.setdefault("environment", environment())
        return write_json(self.path / "config.json", cfg)

    def read_config(self) -> dict[str, Any]:
        """Read ``config.json``."""
        cfg = read_json(self.path / "config.json")
        if not isinstance(cfg, dict):
            raise MatdiscoError(f"{self.path / 'config.json'}: expected a JSON object")
        return cfg

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        """Write ``metrics.json``."""
        return write_json(self.path / "metrics.json", metrics)

    def read_metrics(self) -> dict[str, Any]:
        """Read ``metrics.json``."""
        return read_json(self.path / "metrics.json")

    def read_history(self, name: str = "history") -> list[dict[str, Any]]:
        """Per-epoch records of ``<name>.jsonl`` written by the Trainer (``[]`` if absent)."""
        path = self.path / f"{name}.jsonl"
        if not path.exists():
            return []
        out = []
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise MatdiscoError(f"{path}, line {i}: not JSON ({e.msg})") from None
        return out

    def save_weights(self, name: str, tensors: dict[str, torch.Tensor]) -> Path:
        """Save tensors as ``name`` (``.safetensors`` appended if missing)."""
        if not name.endswith(".safetensors"):
            name += ".safetensors"
        return save_weights(self.path / name, tensors)

    def save_table(self, name: str, df: Any) -> Path:
        """Save a DataFrame (CSV or Parquet by suffix)."""
        return write_table(self.path / name, df)

    def save_plot(self, name: str, fig: Any) -> Path:
        """Save a matplotlib figure as PNG."""
        if not name.endswith(".png"):
            name += ".png"
        return save_figure(self.path / name, fig)
