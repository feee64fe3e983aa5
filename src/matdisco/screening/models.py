"""Models for screening: loading runs, ensembles, and a fast CPU inference path.

A screening model is anything with ``elements`` (the column order of its fraction input)
and ``predict_fractions(fr) -> (mean, std)``. :func:`load_model` turns one run directory
(or several, an ensemble of runs) into such a model. Neural members on element fractions
are wrapped by :class:`FastNet`, which folds the scalers into the network, runs under
``torch.inference_mode`` and skips per-call validation (the enumerator's output is valid
by construction).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch

from matdisco import MatdiscoError


class ScreeningModel(Protocol):
    """What the screening runner needs from a model."""

    elements: tuple[str, ...]

    def predict_fractions(self, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread for an element-fraction matrix."""
        ...


class FastNet:
    """Inference-only wrapper of a fitted :class:`~matdisco.models.NeuralRegressor`.

    Parameters
    ----------
    est : NeuralRegressor
        Fitted estimator.
    jit : bool
        Trace the network with TorchScript (``torch.jit.trace`` + ``freeze``).
    """

    def __init__(self, est: Any, jit: bool = False) -> None:
        net = est.network_.cpu().eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.x_mean = torch.from_numpy(np.asarray(est.x_mean_, np.float32))
        self.x_std = torch.from_numpy(np.asarray(est.x_std_, np.float32))
        self.identity_scaler = bool((self.x_mean == 0).all() and (self.x_std == 1).all())
        self.y_mean, self.y_std = float(est.y_mean_), float(est.y_std_)
        self.n_features = int(est.n_features_in_)
        self.net: Any = net
        if jit:
            with torch.inference_mode(False), torch.no_grad():
                ex = torch.rand(8, self.n_features)
                self.net = torch.jit.freeze(torch.jit.trace(net, ex).eval())
        # sparse input path: the first linear layer as a weighted gather of <= k columns
        from matdisco.models.nets import _Seq

        first = net.body[0] if len(net.body) else None
        self.supports_sparse = isinstance(first, _Seq) and self.identity_scaler and not jit
        if self.supports_sparse:
            assert isinstance(first, _Seq)
            self._first = first
            self._w_t = first.fc.weight.detach().t().contiguous()
            self._rest = torch.nn.Sequential(*list(net.body)[1:], )

    def predict_sparse(self, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        """Predictions from (column, fraction) pairs: ``cols`` (n, k) int64, ``vals``
        (n, k) float32 (padding: fraction 0)."""
        if not self.supports_sparse:
            raise MatdiscoError("this network has no sparse input path")
        with torch.inference_mode():
            h = torch.nn.functional.embedding_bag(
                torch.from_numpy(np.ascontiguousarray(cols, dtype=np.int64)), self._w_t,
                per_sample_weights=torch.from_numpy(np.ascontiguousarray(vals,
                                                                         dtype=np.float32)),
                mode="sum") + self._first.fc.bias
            h = self._first.act(self._first.bn(h))
            y = self.net.head(self._rest(h)).squeeze(-1)
        return y.numpy() * self.y_std + self.y_mean

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions in target units (float32)."""
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
            if not self.identity_scaler:
                x = (x - self.x_mean) / self.x_std
            y = self.net(x)
        return y.numpy() * self.y_std + self.y_mean


class Predictor:
    """Mean and spread over members that share one featurizer.

    Parameters
    ----------
    featurizer : matdisco.featurize.Featurizer
        Input featurization; ``featurizer.elements`` is the fraction column order.
    members : list
        Objects with ``predict(X)``.
    name : str
        Description recorded in manifests.
    """

    def __init__(self, featurizer: Any, members: list[Any], name: str = "model") -> None:
        if not members:
            raise MatdiscoError(f"{name}: the model has no members")
        self.featurizer = featurizer
        self.members = members
        self.name = name

    @property
    def elements(self) -> tuple[str, ...]:
        """Column order of the fraction input."""
        return tuple(self.featurizer.elements)

    @property
    def supports_sparse(self) -> bool:
        """Whether :meth:`predict_sparse` is available (fraction inputs, fast nets)."""
        return self.featurizer.name == "fractions" and all(
            getattr(m, "supports_sparse", False) for m in self.members)

    @staticmethod
    def _combine(preds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if len(preds) == 1:
            p = np.asarray(preds[0], dtype=np.float32)
            return p, np.zeros_like(p)
        arr = np.stack([np.asarray(p, dtype=np.float32) for p in preds])
        return arr.mean(axis=0), arr.std(axis=0)

    def predict_fractions(self, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (population std over members; 0 for one member)."""
        X = self.featurizer.from_fractions(fr)
        return self._combine([m.predict(X) for m in self.members])

    def predict_sparse(self, cols: np.ndarray, vals: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread from (column, fraction) pairs (see :class:`FastNet`)."""
        return self._combine([m.predict_sparse(cols, vals) for m in self.members])


class Ensemble:
    """Ensemble of several models (e.g. several runs) over the same element list.

    The mean is the mean of the models' means; the spread is the standard deviation of
    all members' predictions pooled (law of total variance over the models).
    """

    def __init__(self, models: Sequence[Any], name: str = "ensemble") -> None:
        if not models:
            raise MatdiscoError("an ensemble needs at least one model")
        els = tuple(models[0].elements)
        for m in models[1:]:
            if tuple(m.elements) != els:
                raise MatdiscoError(
                    f"ensemble models disagree on the element list: {getattr(m, 'name', m)}"
                )
        self.models = list(models)
        self.name = name

    @property
    def elements(self) -> tuple[str, ...]:
        return tuple(self.models[0].elements)

    @property
    def supports_sparse(self) -> bool:
        return all(getattr(m, "supports_sparse", False) for m in self.models)

    def predict_sparse(self, cols: np.ndarray, vals: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        return self._pool([m.predict_sparse(cols, vals) for m in self.models])

    def predict_fractions(self, fr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._pool([m.predict_fractions(fr) for m in self.models])

    @staticmethod
    def _pool(outs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        means = np.stack([o[0] for o in outs])
        var = np.stack([np.asarray(o[1]) ** 2 for o in outs]).mean(axis=0) + means.var(axis=0)
        return means.mean(axis=0).astype(np.float32), np.sqrt(var).astype(np.float32)


def _fast_members(members: list[Any], jit: bool) -> list[Any]:
    from matdisco.models import NeuralRegressor

    return [FastNet(m, jit=jit) if isinstance(m, NeuralRegressor) else m for m in members]


def load_model(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Any,
               fast: bool = True, jit: bool = False) -> Any:
    """Load a screening model.

    Parameters
    ----------
    spec : path, list of paths, or model object
        A property run directory (``matdisco.property`` layout, including distilled
        screening models), several of them (an ensemble), or an object that already has
        ``elements`` and ``predict_fractions``.
    fast : bool
        Wrap neural members in :class:`FastNet`.
    jit : bool
        Also trace them with TorchScript.
    """
    if hasattr(spec, "predict_fractions") and hasattr(spec, "elements"):
        return spec
    if isinstance(spec, (list, tuple)):
        if len(spec) == 1:
            return load_model(spec[0], fast, jit)
        return Ensemble([load_model(s, fast, jit) for s in spec],
                        name="+".join(str(s) for s in spec))
    from matdisco.featurize import check_weights_features, get_featurizer
    from matdisco.models import NeuralRegressor
    from matdisco.training import RunDir, load_weights

    run = RunDir.open(cast("str | os.PathLike[str]", spec))
    path = run.path
    cfg = run.read_config()
    if cfg.get("task") not in ("property", "screening_model"):
        raise MatdiscoError(f"{run / 'config.json'}: not a property or screening-model run")
    for key in ("model", "features", "members"):
        if key not in cfg:
            raise MatdiscoError(f"{run / 'config.json'}: missing field {key!r}")
    if not isinstance(cfg["members"], list) or not cfg["members"] or not all(
            isinstance(m, str) for m in cfg["members"]):
        raise MatdiscoError(f"{run / 'config.json'}: field 'members' must be a non-empty "
                            f"list of weight file names, got {cfg['members']!r}")
    featurizer = get_featurizer(cfg["features"])
    members: list[Any] = []
    arch_kwargs = cfg.get("arch_kwargs") or cfg.get("hyper", {}).get("arch_kwargs")
    for name in cfg["members"]:
        tensors = load_weights(run / name)
        check_weights_features(run / name, featurizer, run / "config.json")
        if cfg["model"] == "rf":
            from matdisco.models import ForestRegressor

            members.append(ForestRegressor().load_state_tensors(
                tensors, featurizer.n_features, str(run / name)))
        else:
            est = NeuralRegressor(arch=cfg["model"], device="cpu", arch_kwargs=arch_kwargs)
            members.append(est.load_state_tensors(tensors, featurizer.n_features,
                                                  str(run / name)))
    if fast:
        members = _fast_members(members, jit)
    return Predictor(featurizer, members, name=str(path.resolve()))


def describe_model(model: Any, spec: Any = None) -> dict[str, Any]:
    """Identity of a model for the manifest: run paths, weight file sizes and SHA-256
    digests (a run retrained in place has weight files of the same size but other
    content, and must not be mixed into a resumed screening output)."""
    if spec is not None and not hasattr(spec, "predict_fractions"):
        import hashlib

        paths = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
        out = []
        digests = {}
        for p in paths:
            p = Path(p).resolve()
            files = sorted(p.glob("*.safetensors"))
            out.append({"path": str(p), "weights": {f.name: f.stat().st_size for f in files}})
            for f in files:
                with open(f, "rb") as fh:
                    digests[str(f)] = hashlib.file_digest(fh, "sha256").hexdigest()
        return {"runs": out, "elements": list(model.elements), "sha256": digests}
    return {"object": type(model).__name__, "name": getattr(model, "name", None),
            "elements": list(model.elements)}
