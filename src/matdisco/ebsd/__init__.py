"""EBSD orientation indexing for cubic (m-3m) crystals: OMNet vs dictionary indexing.

Submodules
----------
rotations
    Vectorized, differentiable torch quaternion maths and the m-3m disorientation.
losses
    Euler MAE, mean disorientation (MDE), their sum, quaternion / 6-D losses.
simulate
    Patterns from kikuchipy's Ni master pattern, degradation levels, HDF5 cache.
nets, indexer
    OMNet and the scikit-learn-style :class:`OMNetIndexer` (trained by the Trainer).
dictionary
    kikuchipy dictionary indexing + refinement baseline.
io, evaluation
    Readers with background correction; metrics, IPF maps, histograms, CrystalMaps.
workflow
    The run-directory workflows of ``matdisco ebsd``: :func:`train_omnet`,
    :func:`index_patterns`, :func:`evaluate_runs` and :func:`read_patterns`.

kikuchipy/orix are imported lazily (they are slow to import).
"""

from matdisco.ebsd.indexer import OMNetIndexer, check_patterns, preprocess_patterns
from matdisco.ebsd.losses import LOSSES, orientation_loss
from matdisco.ebsd.nets import OMNet, count_parameters
from matdisco.ebsd.rotations import (
    disorientation_angle,
    euler_to_quaternion,
    quaternion_to_euler,
    random_quaternions,
)
from matdisco.ebsd.simulate import (
    DEGRADATION_LEVELS,
    Degradation,
    DetectorConfig,
    degrade_patterns,
    load_dataset,
    sample_orientations,
    save_dataset,
    simulate_dataset,
    simulate_patterns,
)
from matdisco.ebsd.workflow import evaluate_runs, index_patterns, read_patterns, train_omnet

__all__ = [
    "evaluate_runs",
    "index_patterns",
    "read_patterns",
    "train_omnet",
    "DEGRADATION_LEVELS",
    "Degradation",
    "DetectorConfig",
    "LOSSES",
    "OMNet",
    "OMNetIndexer",
    "check_patterns",
    "count_parameters",
    "degrade_patterns",
    "disorientation_angle",
    "euler_to_quaternion",
    "load_dataset",
    "orientation_loss",
    "preprocess_patterns",
    "quaternion_to_euler",
    "random_quaternions",
    "sample_orientations",
    "save_dataset",
    "simulate_dataset",
    "simulate_patterns",
]
