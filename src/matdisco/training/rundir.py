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
import fnmatch
import glob
import json
import os
import platform
import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
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


def load_weights_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata stored in a ``.safetensors`` header (empty when there is none).

    Reads the header only, never the tensors; a missing or corrupt file raises the same
    clear error as :func:`load_weights`.
    """
    path = Path(path)
    if not path.exists():
        raise MatdiscoError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
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


def holds_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a (finished or interrupted) run: a ``config.json``, weights or
    checkpoints (``*.safetensors``), or a training log (``history*.jsonl``)."""
    p = Path(path)
    return p.is_dir() and ((p / "config.json").exists() or any(p.glob("*.safetensors"))
                           or any(p.glob("history*.jsonl")))


def refuse_foreign_run(path: str | os.PathLike[str], is_own: Callable[[dict[str, Any]], bool],
                       what: str, overwrite: bool = False) -> None:
    """Refuse a run in ``path`` that a command may not replace without ``overwrite``.

    For commands that replace their own earlier output without being asked (``demo``
    replaces a demo run, ``ensemble`` an ensemble): ``is_own`` judges the run's
    ``config.json`` (an unreadable or non-object config is never the command's own), and
    any other run is refused, naming ``what`` the command would have accepted. An empty
    or absent ``path`` and ``overwrite`` pass.
    """
    if overwrite or not holds_run(path):
        return
    try:
        cfg = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        cfg = None
    if not (isinstance(cfg, dict) and is_own(cfg)):
        raise MatdiscoError(f"{path} already holds a run that is not {what}; choose another "
                            "--out, or pass --overwrite to replace it")


def config_differences(old: dict[str, Any], new: dict[str, Any],
                       free: Collection[str] = ()) -> list[str]:
    """Entries (``key`` or ``key.sub``) in which two run configurations differ.

    ``created``, ``environment`` and the entries named in ``free`` are bookkeeping and are
    not compared; neither is an entry that only one side has (a run written by an older
    version lacks the newer entries).
    """
    def norm(c: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(c, default=str))

    a, b = norm(old), norm(new)
    skip = {"created", "environment", *free}
    diff = []
    for key in sorted(set(a) & set(b) - skip):
        va, vb = a[key], b[key]
        if isinstance(va, dict) and isinstance(vb, dict):
            diff += [f"{key}.{sub}" for sub in sorted(set(va) | set(vb))
                     if f"{key}.{sub}" not in skip and va.get(sub) != vb.get(sub)]
        elif va != vb:
            diff.append(key)
    return diff


def prepare_run_dir(path: str | os.PathLike[str], resume: bool = False,
                    overwrite: bool = False, config: dict[str, Any] | None = None,
                    free: Collection[str] = (), can_resume: bool = True,
                    staged: bool = False, artefacts: Collection[str] | None = None,
                    own_subruns: Collection[str] = ()) -> bool:
    """Check what ``path`` holds before a run is written there; call it before any write.

    An absent or empty directory is fine. A directory holding a run is refused unless
    ``resume`` (continue it; with ``config``, only if :func:`config_differences` finds
    nothing outside ``free``) or ``overwrite`` (the old run is deleted first, or, with
    ``staged``, left in place until :func:`publish_run_dir` replaces it with the new run
    written in :func:`staged_run_dir`). A non-empty folder that is not a run is always
    refused and never deleted. ``can_resume=False`` (a command that cannot continue a
    run) only changes the advice in the error.

    Replacing a run never deletes what is not part of it: with ``artefacts`` (glob
    patterns of every name the command writes in its run directory) any other entry is
    refused; without, a sub-folder that holds a run of its own is (a run nested inside
    the one being replaced), unless ``own_subruns`` names it (a sub-run the command itself
    writes). Hidden temporary files of atomic writes are always allowed.

    Returns
    -------
    bool
        True if the run starts from an empty directory (absent, empty or overwritten).

    Raises
    ------
    MatdiscoError
        Naming the directory, what it holds and how to proceed.
    """
    p = Path(path)
    _clean_stale_stages(p)  # a run set aside by a killed job is back before it is judged
    if p.exists() and not p.is_dir():
        raise MatdiscoError(f"run directory {p} is a file")
    if not p.exists() or not any(p.iterdir()):
        return True
    if not holds_run(p):
        raise MatdiscoError(f"{p} is not empty and is not a run directory (no config.json, "
                            "weights or training log); choose another output directory")
    state = "a finished run" if (p / "metrics.json").exists() else "an unfinished run"
    if resume:
        if config is not None and (p / "config.json").exists():
            try:
                old = json.loads((p / "config.json").read_text())
            except ValueError as exc:
                raise MatdiscoError(f"{p / 'config.json'} is not valid JSON ({exc}); "
                                    "cannot resume") from exc
            diff = config_differences(old, config, free)
            if diff:
                raise MatdiscoError(f"cannot resume {p}: it holds {state} with another "
                                    f"configuration (differs in {', '.join(diff)}); use "
                                    "another output directory, or --overwrite to replace it")
        return False
    if not overwrite:
        advice = ("pass --resume to continue it or --overwrite to replace it" if can_resume
                  else "pass --overwrite to replace it, or choose another output directory")
        raise MatdiscoError(f"{p} already holds {state}; {advice}")
    _refuse_foreign_entries(p, artefacts, own_subruns)
    if not staged:
        shutil.rmtree(p)
    return True


def _refuse_foreign_entries(p: Path, artefacts: Collection[str] | None,
                            own_subruns: Collection[str] = ()) -> None:
    """Refuse to replace the run in ``p`` when it holds entries that are not the run's."""
    foreign = []
    for e in sorted(p.iterdir()):
        if e.name.startswith(".") and e.name.endswith(".tmp"):
            continue  # an interrupted atomic write of the run itself
        if artefacts is not None:
            if not any(fnmatch.fnmatchcase(e.name, pat) for pat in artefacts):
                foreign.append(e.name + ("/" if e.is_dir() else ""))
        elif e.is_dir() and e.name not in own_subruns and holds_run(e):
            foreign.append(e.name + "/")
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more"
                                          if len(foreign) > 5 else "")
        what = ("entries that are not part of the run" if artefacts is not None
                else "another run inside it")
        raise MatdiscoError(f"cannot replace the run in {p}: it holds {what} ({shown}), "
                            "which --overwrite would delete; move them out or choose "
                            "another output directory")


def drop_checkpoints(path: str | os.PathLike[str], pattern: str = "*checkpoint*.safetensors"
                     ) -> None:
    """Delete the trainer checkpoints of a finished run in ``path`` (for commands that
    cannot resume: the run's weights are saved, the checkpoint only doubles its size)."""
    for ck in Path(path).glob(pattern):
        ck.unlink()


def staged_run_dir(final: str | os.PathLike[str]) -> Path:
    """A fresh staging directory beside ``final`` for a run written as a whole.

    Write the run there, then call :func:`publish_run_dir`: a reader of ``final`` sees
    either the old run or the new one, never a mixture of the two (a job killed midway
    leaves only a hidden ``.NAME.partial-PID`` folder, which the next staging beside
    ``final`` removes once that process is gone).
    """
    final = Path(final)
    _clean_stale_stages(final)
    tmp = final.with_name(f".{final.name}.partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    except OSError:
        return False
    return True


def _clean_stale_stages(final: Path) -> None:
    """Remove what killed jobs left beside ``final``: ``.NAME.partial-PID`` staging folders
    of processes that no longer run, and ``.NAME.old-PID`` runs set aside by
    :func:`publish_run_dir` (put back at ``final`` when the job died before the new run
    took its place, deleted otherwise)."""
    parent = final.parent
    if not parent.is_dir():
        return
    for kind in ("old", "partial"):  # an old run first: it may have to be put back
        prefix = f".{final.name}.{kind}-"
        for p in parent.glob(f"{glob.escape(prefix)}*"):
            pid = p.name[len(prefix):]
            if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
                continue
            if kind == "old" and not final.exists() and p.is_dir():
                p.rename(final)
            elif p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def publish_run_dir(staged: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Move a finished staging directory to ``final``, replacing the run held there."""
    staged, final = Path(staged), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
    staged.rename(final)
    if old is not None:
        shutil.rmtree(old)
    return final


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

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """An existing run directory; never creates one (a typo must not leave an empty
        folder behind).

        Raises
        ------
        MatdiscoError
            When ``path`` is not a directory.
        """
        if not Path(path).is_dir():
            raise MatdiscoError(f"{path}: run directory not found")
        return cls(path)

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

    def save_weights(self, name: str, tensors: dict[str, torch.Tensor],
                     metadata: dict[str, str] | None = None) -> Path:
        """Save tensors as ``name`` (``.safetensors`` appended if missing), with optional
        string ``metadata`` in the file header (see :func:`load_weights_metadata`)."""
        if not name.endswith(".safetensors"):
            name += ".safetensors"
        return save_weights(self.path / name, tensors, metadata)

    def save_table(self, name: str, df: Any) -> Path:
        """Save a DataFrame (CSV or Parquet by suffix)."""
        return write_table(self.path / name, df)

    def save_plot(self, name: str, fig: Any) -> Path:
        """Save a matplotlib figure as PNG."""
        if not name.endswith(".png"):
            name += ".png"
        return save_figure(self.path / name, fig)
