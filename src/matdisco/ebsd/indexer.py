"""OMNet orientation indexer: scikit-learn-style estimator trained by the shared Trainer."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matdisco import MatdiscoError
from matdisco._io import config_errors
from matdisco.ebsd.augment import random_degrade, standardize
from matdisco.ebsd.losses import LOSSES, normalize_euler, orientation_loss, output_to_quaternion
from matdisco.ebsd.nets import OMNet, count_parameters, inference_module
from matdisco.ebsd.rotations import quaternion_to_euler
from matdisco.ebsd.simulate import DEGRADATION_LEVELS, DetectorConfig
from matdisco.training import RunDir, Trainer, TrainerConfig, load_state_checked, set_seed

__all__ = ["OMNetIndexer", "check_patterns", "check_quaternions", "preprocess_patterns"]

_REPR = {"mae": "euler", "mde": "euler", "mae_mde": "euler", "quat": "quat", "6d": "6d"}


def check_patterns(patterns: Any, shape: tuple[int, int] | None = None,
                   name: str = "patterns") -> np.ndarray:
    """Validate a pattern stack ``(n, rows, cols)`` (a single 2-D pattern is promoted).

    Raises a :class:`MatdiscoError` naming the first bad pattern for NaN/inf pixels, and
    for a shape that does not match ``shape`` (the detector / model).
    """
    x = np.asarray(patterns)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4:  # a (rows, cols) map of patterns
        x = x.reshape(-1, *x.shape[-2:])
    if x.ndim != 3:
        raise MatdiscoError(f"{name} must have shape (n, rows, cols), got {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise MatdiscoError(f"{name} must be numeric, got dtype {x.dtype}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise MatdiscoError(f"{name} have shape {tuple(x.shape[1:])} per pattern but the "
                            f"detector/model expects {tuple(shape)}")
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MatdiscoError(f"{name}: pattern {i + 1} contains NaN or infinite pixels "
                            f"({int(bad.sum())} bad patterns in total)")
    return x


def check_quaternions(quaternions: Any, n: int, name: str = "quaternions") -> np.ndarray:
    """Validate ``n`` orientations ``(n, 4)``: finite unit quaternions (float64).

    Raises a :class:`MatdiscoError` naming the first bad row.
    """
    q = np.asarray(quaternions)
    if q.shape != (n, 4) or q.dtype.kind not in "iuf":
        raise MatdiscoError(f"{name} must have shape ({n}, 4) to match the patterns, got "
                            f"{q.shape} ({q.dtype})")
    q = q.astype(np.float64)
    norm = np.linalg.norm(q, axis=1)
    bad = ~(np.abs(norm - 1.0) <= 1e-3)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MatdiscoError(f"{name}: row {i + 1} is {q[i].tolist()}, not a unit quaternion "
                            f"({int(bad.sum())} bad rows in total)")
    return q


def preprocess_patterns(patterns: np.ndarray) -> np.ndarray:
    """Per-pattern standardization to zero mean and unit standard deviation (float32)."""
    x = torch.from_numpy(np.ascontiguousarray(patterns, dtype=np.float32))
    return standardize(x).numpy()


class OMNetIndexer:
    """Index EBSD patterns of cubic (m-3m) crystals with OMNet.

    Parameters
    ----------
    loss : {"mae", "mde", "mae_mde", "quat", "6d"}
        Training objective (``mae_mde`` is the study's best); ``quat``/``6d`` use a
        continuous representation with the symmetry-aware disorientation loss.
    preset : {"full", "compact", "tiny"}
        OMNet width preset.
    detector : DetectorConfig, optional
        Detector the model is trained for; patterns must match its shape.
    augment : str, optional
        Degradation level (e.g. ``"noise3"``) up to which every training batch is
        randomly degraded (:func:`~matdisco.ebsd.augment.random_degrade`); ``None`` trains
        on the patterns as given.
    clean_fraction : float
        Fraction of each augmented batch left clean.
    pixel_noise : float
        Largest additive pixel-noise level of the augmentation (see
        :func:`~matdisco.ebsd.augment.random_degrade`); 0 turns it off.
    init : path, optional
        Run directory of a trained OMNet to start from (fine-tuning); its architecture
        and detector must match.
    epochs, batch_size, lr, weight_decay, patience, seed, device, progress
        Passed to :class:`~matdisco.training.TrainerConfig`.
    run_dir : path, optional
        Run directory for checkpoints/history/config/weights.
    """

    def __init__(self, loss: str = "mae_mde", preset: str = "compact",
                 detector: DetectorConfig | None = None, epochs: int = 30,
                 batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4,
                 patience: int | None = None, seed: int = 0, device: str = "auto",
                 progress: bool = False, run_dir: str | os.PathLike[str] | None = None,
                 augment: str | None = None, clean_fraction: float = 0.25,
                 pixel_noise: float = 0.0, init: str | os.PathLike[str] | None = None) -> None:
        if loss not in LOSSES:
            raise MatdiscoError(f"unknown loss {loss!r}; choose from {LOSSES}")
        self.loss = loss
        self.preset = preset
        self.detector = detector or DetectorConfig()
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.seed = seed
        self.device = device
        self.progress = progress
        self.run_dir = run_dir
        if augment is not None and augment not in DEGRADATION_LEVELS:
            raise MatdiscoError(f"unknown augmentation level {augment!r}; "
                                f"choose from {sorted(DEGRADATION_LEVELS)}")
        self.augment = augment
        self.clean_fraction = clean_fraction
        self.pixel_noise = float(pixel_noise)
        self.init = init
        self.model_: OMNet | None = None
        self._fast: tuple[OMNet, str, torch.nn.Module] | None = None
        self.history_: list[dict[str, Any]] = []

    @property
    def representation(self) -> str:
        """Output representation implied by the loss."""
        return _REPR[self.loss]

    def _build(self) -> OMNet:
        set_seed(self.seed)
        return OMNet(self.detector.shape, self.representation, self.preset)

    def _trainer_config(self) -> TrainerConfig:
        return TrainerConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             weight_decay=self.weight_decay, patience=self.patience,
                             seed=self.seed, device=self.device, progress=self.progress,
                             eval_batch_size=512)

    def _tensors(self, patterns: np.ndarray, quaternions: np.ndarray
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = check_patterns(patterns, self.detector.shape)
        q = check_quaternions(quaternions, len(x))
        qt = torch.as_tensor(q, dtype=torch.float32)
        e = normalize_euler(quaternion_to_euler(torch.as_tensor(q)).float())
        return torch.from_numpy(preprocess_patterns(x)), qt, e

    def fit(self, patterns: np.ndarray, quaternions: np.ndarray,
            val: tuple[np.ndarray, np.ndarray] | None = None, resume: bool = False
            ) -> OMNetIndexer:
        """Train on patterns and their true orientations (quaternions ``(n, 4)``).

        Orientations should lie in the m-3m fundamental zone (as produced by
        :func:`~matdisco.ebsd.simulate.sample_orientations`) so Euler labels are unique.
        """
        train = self._tensors(patterns, quaternions)
        vdata = self._tensors(*val) if val is not None else None
        self.model_ = self._build()
        self._fast = None
        if self.init is not None:
            src = OMNetIndexer.load(self.init, detector=self.detector)
            if (src.preset, src.representation) != (self.preset, self.representation):
                raise MatdiscoError(f"{self.init}: cannot start from an OMNet with preset "
                                    f"{src.preset!r}/{src.representation!r}; this one is "
                                    f"{self.preset!r}/{self.representation!r}")
            self.model_.load_state_dict(src._require().state_dict())
        rep, loss = self.representation, self.loss
        augment, clean, pix = self.augment, self.clean_fraction, self.pixel_noise

        def compute_loss(model: torch.nn.Module, batch: Any) -> Any:
            x, q, e = batch
            if augment is not None and model.training:
                x = random_degrade(x, augment, clean, pixel_noise=pix)
            return orientation_loss(model(x), q, e, loss, rep)

        rd = RunDir(self.run_dir) if self.run_dir is not None else None
        if rd is not None:
            rd.write_config(self.get_config())
        trainer = Trainer(self.model_, self._trainer_config(), compute_loss=compute_loss,
                          run_dir=rd.path if rd is not None else None)
        t0 = time.perf_counter()
        self.history_ = trainer.fit(train, vdata, resume=resume)
        self.train_seconds_ = time.perf_counter() - t0
        self.model_.cpu().eval()
        if rd is not None:
            rd.save_weights("model", self.model_.state_dict())
        return self

    def get_config(self) -> dict[str, Any]:
        """Everything needed to rebuild the estimator."""
        return {"kind": "omnet", "loss": self.loss, "preset": self.preset,
                "representation": self.representation, "detector": self.detector.to_dict(),
                "augment": self.augment, "clean_fraction": self.clean_fraction,
                "pixel_noise": self.pixel_noise,
                "init": None if self.init is None else str(self.init),
                "trainer": self._trainer_config().to_dict(),
                "n_parameters": self.n_parameters}

    @property
    def n_parameters(self) -> int:
        """Trainable parameters of the network."""
        return count_parameters(self.model_ if self.model_ is not None else self._build())

    def _require(self) -> OMNet:
        if self.model_ is None:
            raise MatdiscoError("the OMNet indexer is not fitted; call fit() or load()")
        return self.model_

    def _fast_model(self, dev: torch.device, example: torch.Tensor) -> torch.nn.Module:
        """The cached inference copy of the model (:func:`~matdisco.ebsd.nets.inference_module`)."""
        model = self._require()
        if self._fast is None or self._fast[0] is not model or self._fast[1] != str(dev):
            self._fast = (model, str(dev), inference_module(model, example))
        return self._fast[2]

    def predict(self, patterns: np.ndarray, batch_size: int | None = None,
                refine: bool = False, trust_region: float = 5.0,
                retry_trust_region: float | None = 15.0) -> np.ndarray:
        """Orientations (unit quaternions ``(n, 4)``, float64) of the patterns.

        Prediction runs on a frozen copy of the network with each Conv-BN pair folded, in
        ``channels_last`` format (see :func:`~matdisco.ebsd.nets.inference_module`), in
        batches of ``batch_size`` (default 128 on CPU, where small batches stay in cache,
        1024 on GPU).

        With ``refine``, OMNet's orientations start kikuchipy's refinement against the
        master pattern (:func:`~matdisco.ebsd.dictionary.refine_orientations`, each Euler
        angle within +/- ``trust_region`` degrees): dictionary-free indexing, much slower
        than OMNet alone (refinement runs at tens of patterns/s on a CPU). Patterns whose
        refined NCC score stays below 0.9 x the median score are refined again from
        OMNet's orientation within +/- ``retry_trust_region`` degrees (``None``: no
        retry), and the better-scoring solution is kept.
        """
        return self.predict_with_scores(patterns, batch_size, refine, trust_region,
                                        retry_trust_region)[0]

    def predict_with_scores(self, patterns: np.ndarray, batch_size: int | None = None,
                            refine: bool = False, trust_region: float = 5.0,
                            retry_trust_region: float | None = 15.0
                            ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict`, also returning each pattern's score: the NCC of the kept
        refined solution with ``refine`` (``(n,)`` floats), ``None`` without (OMNet
        gives no score)."""
        q = self._predict(patterns, batch_size)
        if not refine:
            return q, None
        from matdisco.ebsd.dictionary import refine_orientations

        q0 = q
        q, score = refine_orientations(patterns, q0, self.detector, trust_region)
        q = np.array(q, dtype=np.float64)
        score = np.array(score, dtype=np.float64)
        if retry_trust_region is not None and len(q) > 1:
            redo = np.flatnonzero(score < 0.9 * np.median(score))
            if len(redo):
                q2, s2 = refine_orientations(np.asarray(patterns)[redo], q0[redo],
                                             self.detector, retry_trust_region)
                better = s2 > score[redo]
                q[redo[better]] = q2[better]
                score[redo[better]] = s2[better]
        q[q[:, 0] < 0] *= -1
        return q, score

    @torch.no_grad()
    def _predict(self, patterns: np.ndarray, batch_size: int | None) -> np.ndarray:
        model = self._require()
        x = check_patterns(patterns, model.input_shape)
        model.eval()
        dev = next(model.parameters()).device
        if batch_size is None:
            batch_size = 128 if dev.type == "cpu" else 1024
        outs = []
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(preprocess_patterns(x[i:i + batch_size])).to(dev)
            xb = xb.unsqueeze(1).contiguous(memory_format=torch.channels_last)
            fast = self._fast_model(dev, xb)
            outs.append(output_to_quaternion(fast(xb).double(), self.representation).cpu())
        q = torch.cat(outs).numpy() if outs else np.zeros((0, 4))
        # exactly unit length: the training-time normalization (a 1e-12 guard under the
        # square root) leaves a small "quat" output visibly shorter than 1
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
        q[q[:, 0] < 0] *= -1
        return q

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into a run directory."""
        model = self._require()
        rd = RunDir(path)
        rd.write_config(self.get_config())
        rd.save_weights("model", model.state_dict())
        return rd.path

    @classmethod
    def load(cls, path: str | os.PathLike[str],
             detector: DetectorConfig | None = None) -> OMNetIndexer:
        """Load a saved indexer; refuses a ``detector`` that differs from the trained one."""
        from matdisco._io import read_json

        root = RunDir.open(path).path
        source = root / "config.json"
        cfg = read_json(source)
        if not isinstance(cfg, dict) or cfg.get("kind") != "omnet":
            kind = cfg.get("kind") if isinstance(cfg, dict) else None
            raise MatdiscoError(f"{source}: not an OMNet run (kind={kind!r})")
        if "detector" not in cfg:
            raise MatdiscoError(f"{source}: missing entry 'detector'")
        det = DetectorConfig.from_dict(cfg["detector"], source=f"{source}: detector")
        if detector is not None and detector != det:
            raise MatdiscoError(
                f"{root}: the model was trained for detector {det.to_dict()}, "
                f"but detector {detector.to_dict()} was given")
        with config_errors(str(source), "OMNet"):
            est = cls(loss=cfg["loss"], preset=cfg["preset"], detector=det, device="cpu",
                      augment=cfg.get("augment"),
                      clean_fraction=float(cfg.get("clean_fraction", 0.25)),
                      pixel_noise=float(cfg.get("pixel_noise", 0.0)))
            est.model_ = est._build()
        load_state_checked(est.model_, root / "model.safetensors")
        est.model_.eval()
        return est
