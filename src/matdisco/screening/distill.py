"""A small, fast screening model distilled from a large model or ensemble.

The student is the ``mlp`` architecture of :func:`matdisco.models.build_network`, trained
with the shared :class:`~matdisco.training.Trainer` (through
:class:`~matdisco.models.NeuralRegressor`) to reproduce the teacher's predictions on
real compositions (e.g. the training set) plus compositions sampled uniformly from the
screening space, so it is accurate exactly where it will be used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError
from matdisco.screening.enumerate import CompositionSpace
from matdisco.screening.models import Predictor, load_model


def sample_space(space: CompositionSpace, n: int, columns: Sequence[str],
                 seed: int = 0) -> np.ndarray:
    """Fractions of ``n`` compositions drawn uniformly (without replacement) from a space."""
    rng = np.random.default_rng(seed)
    total = len(space)
    n = min(n, total)
    idx = np.sort(rng.choice(total, size=n, replace=False)) if total < 50 * n else \
        np.unique(rng.integers(0, total, size=int(n * 1.05)))[:n]
    elems, amts = space.indices_at(idx)
    out = space.fractions_from_indices(elems, amts, columns)
    return out


def save_screening_model(path: str | os.PathLike[str], members: Sequence[Any],
                         elements: Sequence[str], widths: Sequence[int],
                         extra: dict[str, Any] | None = None,
                         metrics: dict[str, Any] | None = None) -> Path:
    """Write a run directory loadable by :func:`~matdisco.screening.models.load_model`."""
    from matdisco.featurize import ElementFractions, features_metadata
    from matdisco.training import RunDir

    run = RunDir(path)
    names = []
    meta = features_metadata(ElementFractions(elements))
    for i, m in enumerate(members):
        names.append(run.save_weights(f"member{i}", m.state_tensors(), meta).name)
    cfg = {"task": "screening_model", "model": "mlp",
           "features": ElementFractions(elements).to_dict(),
           "arch_kwargs": {"widths": [int(w) for w in widths]}, "members": names}
    cfg.update(extra or {})
    run.write_config(cfg)
    if metrics is not None:
        run.write_metrics(metrics)
    return run.path


def _teacher_name(teacher: Any) -> str | list[str]:
    """The teacher as recorded in the student's config: absolute run path(s), or the class
    name of a model object (an ensemble may mix both)."""
    def one(t: Any) -> str:
        return type(t).__name__ if hasattr(t, "predict_fractions") else str(Path(t).resolve())

    if isinstance(teacher, (list, tuple)):
        names = [one(t) for t in teacher]
        return names[0] if len(names) == 1 else names
    return one(teacher)


def distill(teacher: Any, out: str | os.PathLike[str], *,
            space: CompositionSpace | None = None, real_fractions: np.ndarray | None = None,
            n_synthetic: int = 100_000, widths: Sequence[int] = (256, 128, 64),
            epochs: int = 30, batch_size: int = 512, lr: float = 2e-3, seed: int = 0,
            patience: int | None = 8, progress: bool = False,
            overwrite: bool = False) -> Predictor:
    """Train a small MLP to match ``teacher`` and save it as a run directory.

    Parameters
    ----------
    teacher : path, list of paths or model
        The model (or ensemble) to imitate.
    out : path
        Run directory of the student.
    space : CompositionSpace, optional
        Space to sample synthetic compositions from (default: 86 elements, arity <= 4,
        10 atoms).
    real_fractions : ndarray, optional
        Fractions of real compositions to include (e.g. the teacher's training set).
    n_synthetic : int
        Number of compositions sampled from ``space``.
    widths : sequence of int
        Hidden widths of the student.
    epochs, batch_size, lr, seed, patience, progress
        Training settings (shared Trainer). 5 % of the compositions (at random) are held
        out: early stopping, ``mae_vs_teacher_heldout`` and the parity plot use them.
    overwrite : bool
        Replace a run that ``out`` already holds (otherwise it is refused before any
        work). The old run stays in place until the new one is written whole.

    Returns
    -------
    Predictor
        The loaded student.
    """
    import pandas as pd

    from matdisco.models import NeuralRegressor
    from matdisco.property.evaluation import write_plots
    from matdisco.training import RunDir, prepare_run_dir, publish_run_dir, staged_run_dir

    t0 = time.perf_counter()
    bad = [w for w in widths if isinstance(w, bool) or int(w) != w or w < 1]
    if bad or not len(widths):
        raise MatdiscoError(f"widths must be positive integers, got {list(widths)!r}")
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise MatdiscoError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(n_synthetic, bool) or int(n_synthetic) != n_synthetic or n_synthetic < 0:
        raise MatdiscoError(f"n_synthetic must be an integer >= 0, got {n_synthetic!r}")
    if space is not None and n_synthetic > 0 and len(space) == 0:
        raise MatdiscoError("the composition space to sample from is empty")
    # an overwritten run stays in place until the new one is published whole
    prepare_run_dir(out, overwrite=overwrite, can_resume=False, staged=True)
    tmodel = load_model(teacher)
    cols = tuple(tmodel.elements)
    space = space or CompositionSpace(universe=cols)
    parts = []
    if real_fractions is not None:
        rf = np.asarray(real_fractions, dtype=np.float32)
        if rf.ndim != 2 or rf.shape[1] != len(cols):
            raise MatdiscoError(
                f"real_fractions must have shape (n, {len(cols)}), got {rf.shape}"
            )
        parts.append(rf)
    if n_synthetic > 0:
        parts.append(sample_space(space, n_synthetic, cols, seed))
    if not parts:
        raise MatdiscoError("distillation needs real_fractions or n_synthetic > 0")
    X = np.concatenate(parts)
    y = np.concatenate([tmodel.predict_fractions(X[i:i + 65536])[0]
                        for i in range(0, len(X), 65536)])
    perm = np.random.default_rng(seed).permutation(len(X))
    n_val = max(1, int(round(0.05 * len(X)))) if len(X) >= 20 else 0
    vi, ti = perm[:n_val], perm[n_val:]
    student = NeuralRegressor(arch="mlp", arch_kwargs={"widths": list(widths)},
                              epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                              patience=patience, scale_inputs=False, loss="l1",
                              device="cpu", progress=progress, val_fraction=0.0)
    if n_val:
        student.fit(X[ti], y[ti], X[vi], y[vi])
    else:
        student.fit(X, y)
    fit_mae = float(np.mean(np.abs(student.predict(X[ti]) - y[ti])))
    metrics: dict[str, Any] = {"mae_vs_teacher_train": fit_mae, "n_train": len(ti)}
    preds = None
    if n_val:
        pv = student.predict(X[vi])
        metrics.update(mae_vs_teacher_heldout=float(np.mean(np.abs(pv - y[vi]))),
                       n_heldout=int(n_val))
        preds = pd.DataFrame({"target": y[vi], "prediction": pv, "split": "held-out"})
    staged = staged_run_dir(out)
    save_screening_model(staged, [student], cols, widths,
                         extra={"distilled_from": _teacher_name(teacher),
                             "n_real": 0 if real_fractions is None else len(real_fractions),
                             "n_synthetic": int(n_synthetic), "epochs": epochs,
                             "seed": seed},
                         metrics={**metrics, "seconds": time.perf_counter() - t0})
    if preds is not None:  # teacher ("true") against student ("predicted")
        write_plots(RunDir(staged), preds)
    publish_run_dir(staged, out)
    return load_model(out)
