"""Run-directory workflows of PADNet: train on an image library, classify images.

These are what ``matdisco xrd train`` and ``matdisco xrd classify`` call::

    from matdisco.xrd.workflow import train_padnet, classify_images
    metrics = train_padnet("lib.npz", "runs/padnet", preprocess="cs", cv=5, epochs=30)
    table = classify_images("runs/padnet", ["lib.npz"])   # one row per image
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError


def train_padnet(library: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 preprocess: str = "none", cv: int = 0, seed: int = 0,
                 overwrite: bool = False, **params: Any) -> dict[str, Any]:
    """Train PADNet on an image library and write its run directory.

    Parameters
    ----------
    library : path
        Image library ``.npz`` (:class:`~matdisco.xrd.library.ImageLibrary`).
    out : path
        Run directory: ``model.safetensors``, ``config.json`` (the library, the
        preprocessing and the region names), ``metrics.json``, ``training_curve.png`` and,
        with ``cv``, ``cv_predictions.csv`` and ``confusion_cv.png``.
    preprocess : str
        Background removal of the training images: ``none`` (raw I), ``mf`` or ``cs``;
        ``classify_images`` applies the same to the images it classifies.
    cv : int
        Also report ``cv``-fold cross-validated accuracy (``k ≥ 2``; 0 skips it).
    seed : int
        Seed of the folds and of the training.
    overwrite : bool
        Replace a run that ``out`` already holds. It stays in place until the new run is
        complete (a failed or killed training leaves it untouched); without ``overwrite``
        an existing run is refused before any work.
    **params
        :class:`~matdisco.xrd.padnet.PADNetClassifier` parameters (``f``, ``epochs``,
        ``lr``, ``use_composition``, ...).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    import pandas as pd

    from matdisco.training import (
        RunDir,
        drop_checkpoints,
        prepare_run_dir,
        publish_run_dir,
        staged_run_dir,
    )
    from matdisco.training.plots import plot_confusion, plot_history
    from matdisco.xrd.background import METHODS, remove_background
    from matdisco.xrd.library import ImageLibrary
    from matdisco.xrd.padnet import PADNetClassifier, count_parameters, cross_validate_matrix

    out = Path(out)
    if isinstance(cv, bool) or not isinstance(cv, int) or cv < 0 or cv == 1:
        raise MatdiscoError(f"cv must be 0 (no cross-validation) or a fold count ≥ 2, "
                            f"got {cv!r}")
    if preprocess not in METHODS:
        raise MatdiscoError(f"preprocess must be one of {', '.join(METHODS)}, got "
                            f"{preprocess!r}")
    PADNetClassifier(seed=seed, **params)  # bad parameters are refused before any work
    lib = ImageLibrary.load(library)
    prepare_run_dir(out, overwrite=overwrite, can_resume=False, staged=True)
    comp = lib.compositions if params.get("use_composition") else None
    metrics: dict[str, Any] = {}
    oof = None
    if cv:
        res = cross_validate_matrix(lib.images, lib.labels, comp, train_on=(preprocess,),
                                    test_on=(preprocess,), n_splits=cv, seed=seed,
                                    return_predictions=True, **params)
        oof = next(iter(res.pop("predictions").values()))
        metrics["cv"] = res
    x = remove_background(lib.images, preprocess)
    staged = staged_run_dir(out)
    try:
        clf = PADNetClassifier(seed=seed, **params).fit(x, lib.labels, comp, run_dir=staged)
        clf.save(staged, extra={"library": str(library), "preprocess": preprocess,
                                "region_names": lib.region_names})
        metrics.update({"train_accuracy": clf.score(x, lib.labels, comp),
                        "epochs_run": len(clf.history_),
                        "n_parameters": count_parameters(clf.model_),
                        "seconds_per_image": clf.seconds_per_image(x, comp)})
        rd = RunDir(staged)
        rd.write_metrics(metrics)
        names = list(lib.region_names)
        rd.save_plot("training_curve", plot_history(clf.history_, "PADNet"))
        if oof is not None:
            y = np.asarray(lib.labels)
            rd.save_table("cv_predictions.csv", pd.DataFrame({
                "sample": np.arange(len(y)), "label": y, "region": [names[i] for i in y],
                "predicted": oof,
                "predicted_region": [names[i] if i >= 0 else "" for i in oof]}))
            rd.save_plot("confusion_cv", plot_confusion(y, oof, names, f"{cv}-fold CV"))
        drop_checkpoints(staged)  # the command has no resume
        publish_run_dir(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return metrics


def classify_images(model: str | os.PathLike[str],
                    inputs: Sequence[str | os.PathLike[str]]) -> Any:
    """Classify detector images into phase regions with a PADNet run.

    Parameters
    ----------
    model : path
        Run directory written by :func:`train_padnet`.
    inputs : sequence of paths
        One library ``.npz`` or image files (TIFF/EDF/CBF/...), read by
        :func:`~matdisco.xrd.readers.load_images`; the run's background removal is applied.

    Returns
    -------
    pandas.DataFrame
        One row per image in input order: ``path``, ``index`` (position in that file; the
        two are a unique key back to the inputs), ``name``, ``label``, ``region``,
        ``probability``.
    """
    import pandas as pd

    from matdisco.training import RunDir
    from matdisco.xrd.background import METHODS, remove_background
    from matdisco.xrd.padnet import PADNetClassifier
    from matdisco.xrd.readers import load_images

    model = Path(model)
    clf = PADNetClassifier.load(model)
    cfg = RunDir(model).read_config()
    source = model / "config.json"
    preprocess = cfg.get("preprocess", "none")
    if preprocess not in METHODS:
        raise MatdiscoError(f"{source}: preprocess is {preprocess!r}, not one of "
                            f"{', '.join(METHODS)}")
    regions = cfg.get("region_names") or [str(i) for i in range(clf.n_classes_)]
    if (not isinstance(regions, list) or len(regions) != clf.n_classes_
            or not all(isinstance(r, str) for r in regions)):
        raise MatdiscoError(f"{source}: region_names must be a list of {clf.n_classes_} "
                            "names (one per class of the model)")
    x, comp, names, sources = load_images(inputs)
    if clf.use_composition and comp is None:
        raise MatdiscoError("this model uses compositions; give a library .npz with them")
    x = remove_background(x, preprocess)
    proba = clf.predict_proba(x, comp if clf.use_composition else None)
    pred = proba.argmax(1)
    return pd.DataFrame({"path": [src for src, _ in sources],
                         "index": [i for _, i in sources], "name": names, "label": pred,
                         "region": [regions[i] for i in pred],
                         "probability": proba.max(1)})
