"""Staged run folders left by killed jobs are cleaned up (or put back) by a later run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from matdisco import MatdiscoError
from matdisco.training import prepare_run_dir, publish_run_dir, staged_run_dir


def _dead_pid() -> int:
    """The id of a process that has finished (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_partial_folder_of_a_dead_process_is_removed(tmp_path: Path) -> None:
    final = tmp_path / "run"
    dead = tmp_path / f".run.partial-{_dead_pid()}"
    (dead / "sub").mkdir(parents=True)
    (dead / "model.safetensors").write_bytes(b"half written")
    alive = tmp_path / f".run.partial-{os.getppid()}"  # a running process: left alone
    alive.mkdir()
    other = tmp_path / f".other.partial-{_dead_pid()}"  # another run's stage: left alone
    other.mkdir()
    staged = staged_run_dir(final)
    assert staged.is_dir() and staged.name == f".run.partial-{os.getpid()}"
    assert not dead.exists()
    assert alive.exists() and other.exists()
    (staged / "config.json").write_text("{}")
    publish_run_dir(staged, final)
    assert (final / "config.json").exists() and not staged.exists()


def test_old_run_set_aside_by_a_killed_publish_is_put_back(tmp_path: Path) -> None:
    final = tmp_path / "run"
    old = tmp_path / f".run.old-{_dead_pid()}"  # killed between the two renames
    old.mkdir()
    (old / "config.json").write_text('{"a": 1}')
    (old / "metrics.json").write_text("{}")
    # the run is back in place, so it is not silently replaced by a new one
    with pytest.raises(MatdiscoError, match="already holds a finished run"):
        prepare_run_dir(final, staged=True)
    assert (final / "config.json").read_text() == '{"a": 1}' and not old.exists()
    # with the final run present, a stale set-aside copy is just deleted
    old.mkdir()
    staged_run_dir(final)
    assert not old.exists() and (final / "config.json").exists()
