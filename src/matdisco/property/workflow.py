"""Property prediction from composition: training runs, ensembles, transfer learning.

:func:`train_property` is what ``matdisco train`` calls: it loads and cleans a dataset,
featurizes it, trains one model (or one per fold) with the shared trainer, and writes a
complete run directory. :func:`load_run` turns a run directory back into a predictor.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matdisco import MatdiscoError
from matdisco.data import (
    clean_dataset,
    in_system_mask,
    kfold_indices,
    load_dataset,
    reduced_key,
)
from matdisco.featurize import (
    Featurizer,
    check_weights_features,
    features_metadata,
    get_featurizer,
)
from matdisco.models import ARCHITECTURES, ForestRegressor, NeuralRegressor
from matdisco.models.neural import check_fine_tuning
from matdisco.property.evaluation import regression_metrics, write_plots, write_report
from matdisco.training import (
    RunDir,
    drop_checkpoints,
    holds_run,
    load_weights,
    prepare_run_dir,
    publish_run_dir,
    refuse_foreign_run,
    staged_run_dir,
)

#: Default input features of each model family.
DEFAULT_FEATURES = {"elemnet": "fractions", "rf": "fractions", "mlp": "fractions",
                    "roost": "fractions"}

#: Default hyper-parameters of the neural models (tuned for a 2-core CPU budget).
NN_DEFAULTS: dict[str, Any] = dict(epochs=100, batch_size=256, lr=1e-3, weight_decay=1e-5,
                                   optimizer="adamw", scheduler="cosine", warmup_epochs=1.0,
                                   patience=30, val_fraction=0.1, loss="l1")


def _features_for(model: str, features: str | None) -> str:
    if features:
        return features
    return DEFAULT_FEATURES.get(model, "magpie")


def make_estimator(model: str, features: str, seed: int = 0,
                   **hyper: Any) -> NeuralRegressor | ForestRegressor:
    """Build an unfitted estimator for a model name (``rf`` or an architecture)."""
    model = model.lower()
    if model == "rf":
        keys = {"n_estimators", "max_features", "min_samples_leaf", "n_jobs"}
        return ForestRegressor(seed=seed, **{k: v for k, v in hyper.items() if k in keys})
    if model not in ARCHITECTURES:
        raise MatdiscoError(f"unknown model {model!r}; choose rf or one of {ARCHITECTURES}")
    params = dict(NN_DEFAULTS)
    # None is a value here (patience=None disables early stopping, ema=None...)
    params.update({k: v for k, v in hyper.items() if k in NeuralRegressor().get_params()})
    # standardize physical attributes, keep raw element fractions (as ElemNet)
    params.setdefault("scale_inputs", features != "fractions")
    if model == "roost" and (features != "fractions" or params["scale_inputs"]):
        raise MatdiscoError("roost reads raw element fractions: use features='fractions' "
                            "without scale_inputs")
    # anneal dropout over the last tenth of training (only networks with dropout, i.e.
    # ElemNet, are affected): its deterministic network is then the one it was trained as
    if params.get("dropout_anneal_epochs") is None:
        params["dropout_anneal_epochs"] = max(1, int(params["epochs"]) // 10)
    return NeuralRegressor(arch=model, seed=seed, **params)


@dataclass
class PropertyPredictor:
    """A trained property model (one member, or an ensemble over folds).

    Attributes
    ----------
    featurizer : Featurizer
        Input featurization (records the element list).
    members : list
        Fitted estimators; predictions are their mean and standard deviation.
    config : dict
        The run's ``config.json``.
    """

    featurizer: Featurizer
    members: list[Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def elements(self) -> tuple[str, ...]:
        """Element order of the fraction inputs."""
        return self.featurizer.elements

    def predict_features(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread over members for a feature matrix."""
        preds = np.stack([m.predict(X) for m in self.members])
        return preds.mean(axis=0), preds.std(axis=0)

    def predict_fractions(self, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread from an element-fraction matrix (screening hot path)."""
        fr = np.asarray(fr, dtype=np.float32)
        if fr.ndim != 2 or fr.shape[1] != len(self.elements):
            raise MatdiscoError(
                f"fractions must have shape (n, {len(self.elements)}), got {fr.shape}"
            )
        return self.predict_features(self.featurizer.from_fractions(fr))

    def predict(self, formulas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread for formulas."""
        return self.predict_features(self.featurizer.transform(list(formulas)))


def _member_from_tensors(model: str, tensors: dict, n_features: int, source: str,
                         hyper: dict[str, Any]) -> NeuralRegressor | ForestRegressor:
    if model == "rf":
        return ForestRegressor().load_state_tensors(tensors, n_features, source)
    est = NeuralRegressor(arch=model, device=hyper.get("device", "auto"),
                          arch_kwargs=hyper.get("arch_kwargs"))
    return est.load_state_tensors(tensors, n_features, source)


def _usable_device(device: object) -> str:
    """The recorded training device if this machine has it, else ``"auto"``.

    A run trained with ``device="cuda"`` must still load and predict on a machine
    without a GPU (the device is bookkeeping, not part of the model).
    """
    from matdisco.training import resolve_device

    if not isinstance(device, str):
        return "auto"
    try:
        resolve_device(device)
    except (MatdiscoError, RuntimeError):
        return "auto"
    return device


def _check_run_config(cfg: dict[str, Any], where: Path) -> None:
    """Refuse a ``config.json`` whose fields have the wrong type, naming the field."""
    for key in ("model", "features", "members"):
        if key not in cfg:
            raise MatdiscoError(f"{where}: missing field {key!r}")
    if not isinstance(cfg["model"], str) or (cfg["model"] != "rf"
                                             and cfg["model"] not in ARCHITECTURES):
        raise MatdiscoError(f"{where}: field 'model' is {cfg['model']!r}, not rf or one of "
                            f"{', '.join(ARCHITECTURES)}")
    if not isinstance(cfg["features"], str | dict):
        raise MatdiscoError(f"{where}: field 'features' must be a featurizer name or "
                            f"object, got {cfg['features']!r}")
    members = cfg["members"]
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise MatdiscoError(f"{where}: field 'members' must be a list of weights file "
                            f"names, got {members!r}")
    for m in members:
        if Path(m).name != m or not m.endswith(".safetensors"):
            raise MatdiscoError(f"{where}: member {m!r} is not a .safetensors file name "
                                "inside the run directory")
    hyper = cfg.get("hyper", {})
    if not isinstance(hyper, dict):
        raise MatdiscoError(f"{where}: field 'hyper' must be an object, got {hyper!r}")
    arch = hyper.get("arch_kwargs")
    if arch is not None and not isinstance(arch, dict):
        raise MatdiscoError(f"{where}: field 'hyper.arch_kwargs' must be an object or "
                            f"null, got {arch!r}")


def load_run(path: str | Path) -> PropertyPredictor:
    """Load a property run directory as a predictor, validating config and weights."""
    run = RunDir.open(path)
    cfg = run.read_config()
    if cfg.get("task") != "property":
        raise MatdiscoError(f"{run / 'config.json'}: not a property-prediction run")
    _check_run_config(cfg, run / "config.json")
    try:
        featurizer = get_featurizer(cfg["features"])
    except MatdiscoError as exc:
        raise MatdiscoError(f"{run / 'config.json'}: field 'features': {exc}") from None
    hyper = {**cfg.get("hyper", {})}
    hyper["device"] = _usable_device(hyper.get("device", "auto"))
    members = []
    for name in cfg["members"]:
        tensors = load_weights(run / name)
        check_weights_features(run / name, featurizer, run / "config.json")
        members.append(_member_from_tensors(cfg["model"], tensors, featurizer.n_features,
                                            str(run / name), hyper))
    if not members:
        raise MatdiscoError(f"{run / 'config.json'}: the run lists no trained members")
    return PropertyPredictor(featurizer, members, cfg)


def _as_frame(data: str | Path | pd.DataFrame, formula_col: str, target_col: str
              ) -> tuple[pd.DataFrame, str]:
    if isinstance(data, pd.DataFrame):
        df = data.rename(columns={formula_col: "formula", target_col: "target"})
        if "formula" not in df or "target" not in df:
            raise MatdiscoError(f"data frame needs columns {formula_col!r} and {target_col!r}")
        return df.reset_index(drop=True), "<DataFrame>"
    return load_dataset(str(data), formula_col, target_col), str(data)


def _synthetic_rows(teacher: str | Path | None, n_synthetic: int, cv: int | None,
                    model: str, featurizer: Any, df: pd.DataFrame, X_all: np.ndarray,
                    train_pool: np.ndarray, holdout: Sequence[str], seed: int,
                    ) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Features, teacher labels and formulas of the distillation rows (or ``None``)."""
    if teacher is None and not n_synthetic:
        return None
    if teacher is None or n_synthetic < 1:
        raise MatdiscoError("distillation needs both a teacher run (--teacher) and a "
                            "number of synthetic compositions >= 1 (--n-synthetic)")
    if cv:
        raise MatdiscoError("distillation (--teacher) cannot be cross-validated: the "
                            "teacher would have seen the evaluation folds; use --test")
    if model == "rf":
        raise MatdiscoError("distillation (--teacher) trains a neural student, not rf")
    from matdisco.data.composition import encode_fractions
    from matdisco.property.distill import fraction_formulas, substitute_compositions

    t_pred = load_run(teacher)
    elements = featurizer.elements
    if tuple(t_pred.elements) != tuple(elements):
        raise MatdiscoError(f"teacher run {teacher} uses another element list")
    fr = X_all if featurizer.name == "fractions" else encode_fractions(
        df["formula"].tolist(), elements)
    fr_syn = substitute_compositions(fr[train_pool], elements, int(n_synthetic), seed=seed,
                                     exclude_systems=holdout)
    y_syn, _ = t_pred.predict_fractions(fr_syn)
    return (featurizer.from_fractions(fr_syn), y_syn.astype(np.float32),
            fraction_formulas(fr_syn, elements))


#: Every name a property run writes in its directory (anything else is the user's and
#: is never deleted by ``--overwrite``; see :func:`~matdisco.training.prepare_run_dir`).
_ARTEFACTS = ("config.json", "metrics.json", "*.safetensors", "history*.jsonl",
              "predictions.csv", "synthetic.csv", "*.png", "report.html")

#: Config entries that may differ when a run is resumed (bookkeeping, not the recipe).
_RESUME_FREE = ("estimator", "hyper.progress", "hyper.device")


def _aux_member_rows(aux: dict[str, Any], tr: np.ndarray, te: np.ndarray | None,
                     n_rows: int, select: str, seed: int) -> np.ndarray:
    """Indices of the auxiliary-fidelity rows one member co-trains on.

    Every row whose composition this member does not evaluate (its fold ``te``, the test
    file, holdout systems) is a candidate. ``n_rows`` of them are kept (0: all): a seeded
    random sample (``select="random"``), or first the rows of the member's own training
    compositions ``tr`` (paired fidelities), then a random sample of the rest
    (``"train-first"``).
    """
    never = set(aux["never"])
    if te is not None:
        never |= set(aux["data_keys"][te])
    allowed = np.flatnonzero(~np.isin(aux["keys"], list(never)))
    if len(allowed) == 0:
        raise MatdiscoError("multi-fidelity training: every auxiliary row is a composition "
                            "that is evaluated; nothing is left to co-train on")
    if 0 < n_rows < len(allowed):
        rng = np.random.default_rng(seed + 104729)
        order = rng.permutation(allowed)
        if select == "train-first":
            own = np.isin(aux["keys"][order], aux["data_keys"][tr])
            order = np.concatenate([order[own], order[~own]])
        allowed = np.sort(order[:n_rows])
    return allowed


def train_property(
    data: str | Path | pd.DataFrame,
    model: str = "elemnet",
    out: str | Path = "runs/property",
    features: str | None = None,
    cv: int | None = None,
    test: str | Path | pd.DataFrame | None = None,
    holdout: Sequence[str] | None = None,
    init: str | Path | None = None,
    clean: bool = True,
    formula_col: str = "formula",
    target_col: str = "target",
    seed: int = 0,
    resume: bool = False,
    train_fraction: float = 1.0,
    report: bool = True,
    teacher: str | Path | None = None,
    n_synthetic: int = 0,
    overwrite: bool = False,
    aux_data: str | Path | pd.DataFrame | None = None,
    aux_rows: int = 0,
    aux_select: str = "random",
    **hyper: Any,
) -> Path:
    """Train a property model and write its run directory.

    Parameters
    ----------
    data : str, Path or DataFrame
        Dataset name (``matdisco data list``), CSV/Parquet path, or frame with
        ``formula_col`` and ``target_col``.
    model : str
        ``elemnet``, ``irnet17|24|48``, ``plain17|24|48``, ``srnet17|24|48``, ``mlp``,
        ``roost`` (element attention on fractions, :mod:`matdisco.models.attention`) or
        ``rf``.
    out : path
        Run directory.
    features : {"fractions", "magpie"}, optional
        Inputs; default element fractions for ElemNet and RF, attributes for IRNet.
    cv : int, optional
        k-fold cross-validation (an ensemble of k members).
    test : path or DataFrame, optional
        Fixed test file (the model trains on all of ``data``).
    holdout : list of str, optional
        Chemical systems (``"Ti-O"``) whose compounds are removed from training and
        evaluated separately.
    init : path, optional
        Run directory of a source model: fine-tune all its weights (transfer learning).
    clean : bool
        Apply the ElemNet cleaning to the training data.
    seed : int
        Random seed (splits, initialisation, shuffling).
    resume : bool
        Continue an interrupted run (finished members are kept, the current one resumes
        from its checkpoint). The run directory must hold a run of the same configuration.
    train_fraction : float
        Use only this fraction of each training split (learning curves).
    report : bool
        Write ``report.html``.
    teacher : path, optional
        Run directory of a teacher model for knowledge distillation
        (:mod:`matdisco.property.distill`): ``n_synthetic`` analogues of the training
        compositions, labelled by the teacher, are added to the training rows (never to the
        early-stopping split). Not with ``cv`` (the teacher would have seen the evaluation
        folds); the teacher must not have been trained on the ``test`` rows either.
    n_synthetic : int
        Number of teacher-labelled synthetic compositions (with ``teacher``).
    overwrite : bool
        Replace a run that ``out`` already holds. Without it (and without ``resume``) an
        existing run is never touched: the call is refused before anything is written.
    aux_data : str, Path or DataFrame, optional
        Multi-fidelity co-training: rows of the same property at another fidelity (e.g.
        DFT formation energies, ``mp_e_form``, beside the experimental enthalpies), with
        the same ``formula_col`` / ``target_col`` and units. Each neural member trains
        on its rows plus a sample of these through a second output head
        (:meth:`NeuralRegressor.fit` ``X_aux``), weighted by the hyper-parameter
        ``aux_weight``. Auxiliary rows whose composition is evaluated by that member (its
        CV fold, the test file, holdout systems) are left out. Cleaned like ``data``.
    aux_rows : int
        Auxiliary rows sampled per member (0: all of them).
    aux_select : str
        How ``aux_rows`` are chosen: ``"random"``, or ``"train-first"`` (the rows of the
        member's own training compositions first, then random ones).
    **hyper
        Estimator hyper-parameters (``epochs``, ``batch_size``, ``lr``, ``n_estimators``...).

    Returns
    -------
    Path
        The run directory.
    """
    t_start = time.perf_counter()
    model = model.lower()
    if isinstance(train_fraction, bool) or not 0.0 < float(train_fraction) <= 1.0:
        raise MatdiscoError(f"train_fraction={train_fraction!r} must be in (0, 1]")
    if cv is not None and (isinstance(cv, bool) or not float(cv).is_integer()):
        raise MatdiscoError(f"cv={cv!r} must be an integer number of folds")
    feat_name = _features_for(model, features)
    featurizer = get_featurizer(feat_name)
    # a featurizer description (name and element list) chooses the estimator by its name:
    # e.g. element fractions over another element list are not standardized either
    feat_name = featurizer.name
    df, source = _as_frame(data, formula_col, target_col)
    cleaning = None
    if clean:
        df, cleaning = clean_dataset(df)
    check_fine_tuning(hyper, init is not None)  # refuse before anything is written
    init_pred = None
    if init is not None:
        init_pred = load_run(init)
        if init_pred.config["model"] != model:
            raise MatdiscoError(
                f"--init run {init} is a {init_pred.config['model']!r} model, not {model!r}"
            )
        src_fz = init_pred.featurizer
        if src_fz.to_dict() != featurizer.to_dict():
            same = set(src_fz.elements) == set(featurizer.elements)
            diff = (f"features {src_fz.name!r}, not {featurizer.name!r}"
                    if src_fz.name != featurizer.name else
                    f"another element list ({len(src_fz.elements)} elements, this run "
                    f"{len(featurizer.elements)}{', in another order' if same else ''})")
            raise MatdiscoError(f"--init run {init} uses different input features: {diff}")
        if model == "rf":
            raise MatdiscoError("transfer learning (--init) needs a neural model, not rf")
        # the fine-tuned network has the source's architecture (e.g. a custom mlp / roost)
        src_arch = init_pred.config.get("hyper", {}).get("arch_kwargs")
        if src_arch is not None and "arch_kwargs" not in hyper:
            hyper = {**hyper, "arch_kwargs": src_arch}

    holdout = list(holdout or [])
    hold_mask = np.zeros(len(df), dtype=bool)
    for system in holdout:
        hold_mask |= in_system_mask(df["formula"], system)
    test_df = None
    if test is not None:
        test_df, _ = _as_frame(test, formula_col, target_col)
    if holdout and not hold_mask.any() and (
        test_df is None or not any(in_system_mask(test_df["formula"], s).any() for s in holdout)
    ):
        raise MatdiscoError(f"no compound of holdout systems {holdout} in the data")

    aux = None
    if aux_data is not None:
        if model == "rf":
            raise MatdiscoError("multi-fidelity training (--aux-data) needs a neural model, "
                                "not rf")
        if aux_rows < 0:
            raise MatdiscoError(f"aux_rows={aux_rows} must be >= 0 (0: all rows)")
        if aux_select not in ("random", "train-first"):
            raise MatdiscoError(f"aux_select={aux_select!r}: choose 'random' or "
                                "'train-first'")
        aux_df, aux_source = _as_frame(aux_data, formula_col, target_col)
        aux_cleaning = None
        if clean:
            aux_df, aux_cleaning = clean_dataset(aux_df)
        aux = {"df": aux_df, "source": aux_source, "cleaning": aux_cleaning,
               "keys": aux_df["formula"].map(reduced_key).to_numpy()}
    elif aux_rows or "aux_weight" in hyper:
        raise MatdiscoError(f"{'aux_rows' if aux_rows else 'aux_weight'} needs auxiliary "
                            "data (--aux-data)")

    X_all = featurizer.transform(df["formula"].tolist())
    y_all = df["target"].to_numpy(dtype=np.float32)
    if aux is not None:
        aux["X"] = featurizer.transform(aux["df"]["formula"].tolist())
        aux["y"] = aux["df"]["target"].to_numpy(dtype=np.float32)
        aux["data_keys"] = df["formula"].map(reduced_key).to_numpy()
        # compositions no member may co-train on: holdout systems and the test file
        never = set(aux["data_keys"][hold_mask])
        if test_df is not None:
            never |= set(test_df["formula"].map(reduced_key))
        aux["never"] = never
    train_pool = np.flatnonzero(~hold_mask)
    if len(train_pool) == 0:
        why = [f"the holdout systems {holdout} take all {len(df)} rows"] if holdout else []
        if cleaning is not None:
            why.append(f"cleaning: {cleaning}")
        raise MatdiscoError(f"{source}: no training rows left"
                            + (f" ({'; '.join(why)})" if why else ""))
    synthetic = _synthetic_rows(teacher, n_synthetic, cv, model, featurizer, df, X_all,
                                train_pool, holdout, seed)

    # the splits: list of (member name, train idx into df, eval rows)
    splits: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    te: np.ndarray | None
    if cv:
        for i, (tr, te) in enumerate(kfold_indices(len(train_pool), int(cv), seed)):
            splits.append((f"fold_{i}", train_pool[tr], train_pool[te]))
    else:
        splits.append(("model", train_pool, None))

    config: dict[str, Any] = {
        "task": "property",
        "model": model,
        "features": featurizer.to_dict(),
        "n_features": featurizer.n_features,
        "data": {"source": source, "rows": int(len(df)), "cleaning": cleaning,
                 "formula_col": formula_col, "target_col": target_col},
        "split": {"cv": cv, "test": None if test is None else str(test) if not
                  isinstance(test, pd.DataFrame) else "<DataFrame>",
                  "holdout": holdout, "n_holdout_rows": int(hold_mask.sum()),
                  "train_fraction": train_fraction},
        "init": None if init is None else str(init),
        # provenance of a chained transfer (e.g. OQMD -> MP -> experiment): this run's
        # source first, then the source's own sources
        "init_chain": [] if init_pred is None else [str(init)] + list(
            init_pred.config.get("init_chain")
            or ([init_pred.config["init"]] if init_pred.config.get("init") else [])),
        "distillation": None if synthetic is None else {
            "teacher": str(teacher), "n_synthetic_requested": int(n_synthetic),
            "n_synthetic": int(len(synthetic[1])), "file": "synthetic.csv"},
        "aux": None if aux is None else {
            "source": aux["source"], "rows": int(len(aux["df"])),
            "cleaning": aux["cleaning"], "rows_per_member": int(aux_rows),
            "select": aux_select},
        "seed": seed,
        "hyper": {k: v for k, v in hyper.items()},
        "members": [name + ".safetensors" for name, _, _ in splits],
    }
    est0 = make_estimator(model, feat_name, seed=seed, **hyper)
    if isinstance(est0, NeuralRegressor):
        est0.trainer_config()  # a bad setting (e.g. ema=1.5) stops here, before any write
    else:
        est0.check_params()  # e.g. n_estimators=0
    config["estimator"] = est0.get_params()
    if init_pred is not None and isinstance(est0, NeuralRegressor):
        # the source weights must fit this run's network (e.g. other mlp widths): refused
        # here, before anything is written, rather than by the first member's fit
        est0.load_state_tensors(init_pred.members[0].state_tensors(), featurizer.n_features,
                                source=f"--init run {init} ({init_pred.config['members'][0]})")
    # every input is validated above: only now is anything written
    work, fresh, staged = _training_dir(Path(out), resume, overwrite, config)
    run = RunDir(work)
    members: list[Any] = []
    try:
        run.write_config(config)
        if synthetic is not None:
            from matdisco._io import write_table

            write_table(run / "synthetic.csv", pd.DataFrame(
                {"formula": synthetic[2], "teacher_prediction": synthetic[1]}))

        oof = np.full(len(df), np.nan)
        fold_of = np.full(len(df), -1)
        fold_metrics = []
        train_time = 0.0
        n_seen = 0
        rng = np.random.default_rng(seed + 1)
        for k, (name, tr, te) in enumerate(splits):
            wpath = run / f"{name}.safetensors"
            if train_fraction < 1.0:
                tr = np.sort(rng.choice(tr, size=max(2, int(round(train_fraction * len(tr)))),
                                        replace=False))
            est = make_estimator(model, feat_name, seed=seed + k, **hyper)
            aux_idx = None
            if aux is not None:
                aux_idx = _aux_member_rows(aux, tr, te, aux_rows, aux_select, seed + k)
            if resume and wpath.exists():
                est = _member_from_tensors(model, load_weights(wpath), featurizer.n_features,
                                           str(wpath), hyper)
            else:
                t0 = time.perf_counter()
                init_t = init_pred.members[0].state_tensors() if init_pred is not None else None
                if model == "rf":
                    est.fit(X_all[tr], y_all[tr])
                else:
                    est.fit(X_all[tr], y_all[tr], init=init_t, run_dir=run.path,
                            checkpoint_name=f"checkpoint_{name}", resume=resume,
                            X_extra=None if synthetic is None else synthetic[0],
                            y_extra=None if synthetic is None else synthetic[1],
                            X_aux=None if aux is None or aux_idx is None
                            else aux["X"][aux_idx],
                            y_aux=None if aux is None or aux_idx is None
                            else aux["y"][aux_idx])
                train_time += time.perf_counter() - t0
                hist = getattr(est, "history_", [])
                # a resumed fit: count the epochs of the interrupted process too, with their
                # logged times, so that the time and the samples/s cover the whole training
                train_time += sum(h.get("seconds", 0.0)
                                  for h in hist[:getattr(est, "resumed_epochs_", 0)])
                n_extra = (0 if synthetic is None else len(synthetic[1])) + (
                    0 if aux_idx is None else len(aux_idx))
                n_seen += (len(tr) + n_extra) * (len(hist) or 1)
                run.save_weights(name, est.state_tensors(), features_metadata(featurizer))
                drop_checkpoints(run.path, f"checkpoint_{name}.safetensors")
            members.append(est)
            if te is not None:
                oof[te] = est.predict(X_all[te])
                fold_of[te] = k
                fold_metrics.append(regression_metrics(y_all[te], oof[te]))

    except MatdiscoError:
        # a configuration error that only training reveals (e.g. freeze_layers larger
        # than the network): a run directory this call created holds no finished member,
        # so it is removed rather than left half-written
        if fresh and not members:
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    except KeyboardInterrupt:
        if fresh and not any(run.path.iterdir()):  # stopped before anything was written
            run.path.rmdir()
            raise KeyboardInterrupt("nothing was written" + (
                "; the old run is untouched" if staged else "")) from None
        if staged:  # the old run is untouched; say how to continue the replacement
            raise KeyboardInterrupt(
                f"the run replacing {out} is kept in {run.path}; the old run is "
                f"untouched; pass --overwrite --resume to continue the replacement") from None
        raise KeyboardInterrupt(f"finished members and the last epoch's checkpoint are in "
                                f"{run.path}; pass --resume to continue") from None

    predictor = PropertyPredictor(featurizer, members, config)
    metrics: dict[str, Any] = {"model": model, "features": feat_name,
                               "n_train_rows": int(len(train_pool)),
                               "train_seconds": train_time}
    if n_seen and train_time > 0 and model != "rf":
        metrics["train_samples_per_s"] = n_seen / train_time
    tables = []
    if cv:
        m = ~np.isnan(oof)
        metrics["cv"] = regression_metrics(y_all[m], oof[m])
        metrics["cv"]["folds"] = int(cv)
        metrics["cv"]["mae_fold_std"] = float(np.std([f["mae"] for f in fold_metrics]))
        metrics["cv"]["per_fold"] = fold_metrics
        tables.append(pd.DataFrame({"formula": df["formula"][m], "target": y_all[m],
                                    "prediction": oof[m], "fold": fold_of[m],
                                    "split": "cv"}))
    if test_df is not None:
        X_test = featurizer.transform(test_df["formula"].tolist())
        t0 = time.perf_counter()
        mean, std = predictor.predict_features(X_test)
        dt = time.perf_counter() - t0
        metrics["test"] = regression_metrics(test_df["target"].to_numpy(), mean)
        metrics["test"]["n"] = int(len(test_df))
        metrics["predict_per_s"] = len(test_df) / dt if dt > 0 else None
        tables.append(pd.DataFrame({"formula": test_df["formula"], "target": test_df["target"],
                                    "prediction": mean, "std": std, "split": "test"}))
    if holdout:
        metrics["holdout"] = {}
        for system in holdout:
            parts = [df[in_system_mask(df["formula"], system)]]
            if test_df is not None:
                parts.append(test_df[in_system_mask(test_df["formula"], system)])
            hd = pd.concat(parts, ignore_index=True)
            hd = hd.loc[~hd["formula"].map(reduced_key).duplicated()]
            if len(hd) == 0:
                continue
            mean, std = predictor.predict(hd["formula"].tolist())
            metrics["holdout"][system] = regression_metrics(hd["target"].to_numpy(), mean)
            metrics["holdout"][system]["n"] = int(len(hd))
            tables.append(pd.DataFrame({"formula": hd["formula"], "target": hd["target"],
                                        "prediction": mean, "std": std,
                                        "split": f"holdout_{system}"}))
    if not tables:
        mean, std = predictor.predict_features(X_all[train_pool])
        metrics["train"] = regression_metrics(y_all[train_pool], mean)
        tables.append(pd.DataFrame({"formula": df["formula"].iloc[train_pool],
                                    "target": y_all[train_pool], "prediction": mean,
                                    "std": std, "split": "train"}))
    preds = pd.concat(tables, ignore_index=True)
    run.save_table("predictions.csv", preds)
    metrics["total_seconds"] = time.perf_counter() - t_start
    hist = [getattr(m, "history_", None) for m in members]
    if any(hist):
        metrics["epochs_trained"] = [len(h) if h else 0 for h in hist]
    run.write_metrics(metrics)
    write_plots(run, preds)
    if report:
        write_report(run, name=Path(out).name)
    if staged:  # the new run is complete: only now does it replace the old one
        return publish_run_dir(run.path, out)
    return run.path


def _training_dir(out: Path, resume: bool, overwrite: bool, config: dict[str, Any]
                  ) -> tuple[Path, bool, bool]:
    """Where :func:`train_property` writes the run: ``(directory, fresh, staged)``.

    Without ``overwrite`` the run is written (or resumed) in ``out`` itself. With
    ``overwrite`` and a run already in ``out``, the new run is written beside it in
    ``.NAME.pending`` (``staged``) and replaces the old run only once it is complete: an
    interrupted replacement leaves the old run intact, and ``overwrite`` with ``resume``
    continues the pending run where it stopped. ``overwrite`` alone starts it over.
    """
    pending = out.with_name(f".{out.name}.pending")
    if overwrite and resume and holds_run(pending):
        try:
            prepare_run_dir(pending, resume=True, config=config, free=_RESUME_FREE)
        except MatdiscoError as exc:
            raise MatdiscoError(f"{exc}; it is the interrupted replacement of {out}: drop "
                                "--resume to start the replacement over") from None
        return pending, False, True
    if not overwrite and resume and holds_run(pending):
        raise MatdiscoError(f"{out}: an interrupted --overwrite run is pending in {pending}; "
                            "pass --overwrite --resume to continue it, or --overwrite alone "
                            "to start it over")
    if overwrite and pending.exists():
        shutil.rmtree(pending)
    if overwrite and not resume and holds_run(out):
        # checks that ``out`` holds a run (a folder of other files is refused), keeps it
        prepare_run_dir(out, overwrite=True, staged=True, artefacts=_ARTEFACTS)
        pending.mkdir(parents=True)
        return pending, True, True
    return out, prepare_run_dir(out, resume, overwrite, config, free=_RESUME_FREE,
                                artefacts=_ARTEFACTS), False


def _table_columns(path: str | Path) -> list[str]:
    """Column names of a CSV/Parquet file (its header only)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return [str(c) for c in pd.read_csv(path, nrows=0, index_col=False).columns]


def predict_file(run_dir: str | Path, data: str | Path, out: str | Path,
                 formula_col: str = "formula") -> Path:
    """Predict every formula of a CSV/Parquet file.

    The output has the formula column first (under its input name), then every other
    input column unchanged (sample IDs, labels, notes), then ``prediction`` (the
    ensemble mean) and ``std`` (its spread over members). ``out`` must end in ``.csv``
    or ``.parquet``; it is checked before anything is read and written atomically (no
    partial file on an error).

    Raises
    ------
    MatdiscoError
        For a bad input row (naming it), or an input that already has a ``prediction``
        or ``std`` column (rename it first: it would be overwritten).
    """
    from matdisco._io import check_output_file, write_table
    from matdisco.data import load_table

    check_output_file(out, (".csv", ".parquet"), "--out")
    pred = load_run(run_dir)
    df = load_table(data, formula_col, None, elements=pred.elements)
    if formula_col != "formula" and "formula" in _table_columns(data):
        # the reader keeps the formulas under the name "formula": a column of that name
        # besides --formula would be silently dropped from the output
        raise MatdiscoError(f"{data}: has a column 'formula' besides the formula column "
                            f"{formula_col!r}; it would be lost from the output; rename it")
    clash = [c for c in ("prediction", "std") if c in df.columns and c != "formula"]
    if clash:
        raise MatdiscoError(f"{data}: already has column(s) {clash}, which the predictions "
                            "would overwrite; rename them first")
    X = pred.featurizer.transform(df["formula"].tolist())
    mean, std = pred.predict_features(X)
    res = df.rename(columns={"formula": formula_col})
    res["prediction"] = mean
    res["std"] = std
    return write_table(out, res)


def evaluate_run(run_dir: str | Path, data: str | Path, formula_col: str | None = None,
                 target_col: str | None = None) -> dict[str, Any]:
    """Metrics of a trained run on a labelled dataset.

    ``formula_col`` and ``target_col`` default to the columns the run was trained with
    (``config.json`` ``data.formula_col`` / ``data.target_col``; else ``formula`` and
    ``target``).
    """
    pred = load_run(run_dir)
    rec = pred.config.get("data")
    rec = rec if isinstance(rec, dict) else {}
    formula_col = formula_col or str(rec.get("formula_col") or "formula")
    target_col = target_col or str(rec.get("target_col") or "target")
    df = load_dataset(str(data), formula_col, target_col)
    mean, _ = pred.predict(df["formula"].tolist())
    out = regression_metrics(df["target"].to_numpy(), mean)
    out["n"] = int(len(df))
    return out


def combine_runs(runs: Sequence[str | Path], out: str | Path, overwrite: bool = False) -> Path:
    """Combine finished runs of one model into an ensemble run directory.

    Typical use: the same recipe trained with several seeds (possibly on different
    machines), then averaged (a deep ensemble). The runs must share the model, the input
    features and the rows of their ``predictions.csv`` (same data, splits and test file).

    The new run lists every member of every run; predictions are the mean over all
    members and ``std`` their spread. Its ``predictions.csv`` and ``metrics.json`` are
    recomputed: test and holdout rows are predicted again by all members; cross-validation
    rows (out-of-fold predictions) are averaged over the runs, so each row is still
    predicted only by models that did not see it. ``metrics.json`` also records every
    input run's own metrics for comparison.

    Parameters
    ----------
    runs : sequence of paths
        Two or more property run directories.
    out : path
        The ensemble run directory (must not be one of ``runs``). An ensemble already
        there is replaced (it is recomputed from its runs); any other run only with
        ``overwrite``.
    overwrite : bool
        Replace a run in ``out`` that is not an ensemble.

    Returns
    -------
    Path
        The run directory.
    """
    paths = [Path(r) for r in runs]
    if len(paths) < 2:
        raise MatdiscoError("an ensemble needs at least two runs")
    if Path(out).resolve() in {p.resolve() for p in paths}:
        raise MatdiscoError(f"--out {out} is one of the input runs")
    preds = [load_run(p) for p in paths]
    first = preds[0].config
    tables = []
    for p, pr in zip(paths, preds, strict=True):
        for key in ("model", "features", "n_features"):
            if pr.config.get(key) != first.get(key):
                raise MatdiscoError(
                    f"{p}: {key} {pr.config.get(key)!r} differs from {paths[0]}'s "
                    f"{first.get(key)!r}; only runs of one model and input can be combined"
                )
        arch = pr.config.get("hyper", {}).get("arch_kwargs")
        if arch != first.get("hyper", {}).get("arch_kwargs"):
            raise MatdiscoError(f"{p}: architecture {arch!r} differs from {paths[0]}'s")
        if not (p / "predictions.csv").exists():
            raise MatdiscoError(f"{p}: no predictions.csv (is the run finished?)")
        tables.append(pd.read_csv(p / "predictions.csv"))
    ref = tables[0]
    for p, t in zip(paths[1:], tables[1:], strict=True):
        if (len(t) != len(ref) or not t["formula"].equals(ref["formula"])
                or not t["split"].equals(ref["split"])):
            raise MatdiscoError(
                f"{p}: predictions.csv rows differ from {paths[0]}'s; the runs must use "
                "the same data, splits and test file"
            )
    config = dict(first)
    config["members"] = []
    config["ensemble_of"] = [
        {"run": str(p), "members": pr.config["members"]}
        for p, pr in zip(paths, preds, strict=True)
    ]
    config["seed"] = [pr.config.get("seed") for pr in preds]
    for i, pr in enumerate(preds):
        config["members"] += [f"r{i}_{m}" for m in pr.config["members"]]
    refuse_foreign_run(out, lambda cfg: "ensemble_of" in cfg, "an ensemble", overwrite)
    # an old ensemble (or, with overwrite, run) stays in place until the new one is
    # complete; the staging folder starts empty, so no stale member file is carried over
    prepare_run_dir(out, overwrite=True, staged=True, artefacts=_ARTEFACTS)
    run = RunDir(staged_run_dir(out))
    run.write_config(config)
    for i, pr in enumerate(preds):  # weights already loaded (and checked) by load_run
        for m, est in zip(pr.config["members"], pr.members, strict=True):
            run.save_weights(f"r{i}_{Path(m).stem}", est.state_tensors(),
                             features_metadata(pr.featurizer))
    members = [m for pr in preds for m in pr.members]
    ens = PropertyPredictor(preds[0].featurizer, members, config)

    res = ref[["formula", "target", "split"]].copy()
    stack = np.stack([t["prediction"].to_numpy(float) for t in tables])
    res["prediction"] = stack.mean(axis=0)
    res["std"] = stack.std(axis=0)
    # test, holdout (and train) rows: every member predicts them. Out-of-fold rows keep
    # the mean over runs of their out-of-fold predictions
    again = (res["split"] != "cv").to_numpy()
    if again.any():
        mean, std = ens.predict(res.loc[again, "formula"].tolist())
        res.loc[again, "prediction"] = mean
        res.loc[again, "std"] = std
    if "fold" in ref and all(t["fold"].equals(ref["fold"]) for t in tables):
        res["fold"] = ref["fold"]
    metrics: dict[str, Any] = {"model": first["model"], "features": first["features"]["name"],
                               "n_members": len(members), "runs": {}}
    for split, part in res.groupby("split", sort=False):
        m = regression_metrics(part["target"], part["prediction"])
        if split.startswith("holdout_"):
            metrics.setdefault("holdout", {})[split[len("holdout_"):]] = m
        else:
            metrics[split] = m
    for p in paths:
        met = json.loads((p / "metrics.json").read_text())
        metrics["runs"][str(p)] = {k: met[k]["mae"] for k in ("cv", "test", "train")
                                   if k in met}
    run.save_table("predictions.csv", res)
    run.write_metrics(metrics)
    write_plots(run, res)
    write_report(run, name=Path(out).name)
    return publish_run_dir(run.path, out)


def _is_demo_config(cfg: dict[str, Any]) -> bool:
    """Whether a run's config is that of :func:`run_demo`."""
    data, split = cfg.get("data"), cfg.get("split")
    return (cfg.get("model") == "elemnet" and isinstance(data, dict)
            and data.get("source") == "exp_formation_enthalpy"
            and isinstance(split, dict) and bool(split.get("cv")))


def run_demo(out: str | Path = "runs/demo", folds: int = 5, epochs: int = 25,
             overwrite: bool = False, progress: bool = True) -> Path:
    """The main job: cross-validate ElemNet on the embedded experimental formation
    enthalpies (2,135 compounds shipped with pymatgen) and write the run and its report.

    A demo run already in ``out`` is replaced (staged: it stays until the new one is
    complete); any other run only with ``overwrite``.

    Returns
    -------
    Path
        The run directory.
    """
    refuse_foreign_run(out, _is_demo_config, "a demo run", overwrite)
    return train_property("exp_formation_enthalpy", model="elemnet", out=out, cv=folds,
                          epochs=epochs, batch_size=64, lr=1e-3, patience=10,
                          progress=progress, overwrite=True)


__all__ = ["PropertyPredictor", "combine_runs", "evaluate_run", "load_run",
           "make_estimator", "predict_file", "run_demo", "train_property"]
