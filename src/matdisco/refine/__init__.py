"""Imitation refinement: refine imperfect signals (NMF-extracted XRD phases, degraded
patterns, real handwritten digits) so that a classifier trained only on ideal simulated
data recognises them.

Notebook-friendly API::

    from matdisco.refine import SignalClassifier, ImitationRefiner
    clf = SignalClassifier(arch="cnn1d").fit(X_ideal, y_ideal)
    ref = ImitationRefiner(clf, arch="unet1d", lam=1.0, beta=10.0).fit(X_imperfect)
    X_refined = ref.transform(X_imperfect)
"""

from matdisco.refine.denoise import wavelet_denoise
from matdisco.refine.digits import digits_demo
from matdisco.refine.estimators import ImitationRefiner, SignalClassifier
from matdisco.refine.io import load_signals, save_signals
from matdisco.refine.losses import (
    entropy,
    highpass,
    kl_discrepancy,
    prediction_loss,
    prototype_loss,
    regularization_loss,
)
from matdisco.refine.metrics import (
    compare_refinement,
    plot_refinement,
    signal_distances,
    summarize_distances,
)
from matdisco.refine.nets import (
    CLASSIFIERS,
    CNN1DClassifier,
    DenseNet1DClassifier,
    LeNet,
    LSTMClassifier,
    PrototypeClassifier,
    UNet,
    build_classifier,
)
from matdisco.refine.workflow import apply_refiner, evaluate_refiner, train_refinement

__all__ = [
    "apply_refiner",
    "evaluate_refiner",
    "train_refinement",
    "CLASSIFIERS",
    "CNN1DClassifier",
    "DenseNet1DClassifier",
    "ImitationRefiner",
    "LSTMClassifier",
    "LeNet",
    "PrototypeClassifier",
    "SignalClassifier",
    "UNet",
    "build_classifier",
    "digits_demo",
    "entropy",
    "highpass",
    "kl_discrepancy",
    "load_signals",
    "prediction_loss",
    "prototype_loss",
    "regularization_loss",
    "save_signals",
    "compare_refinement",
    "plot_refinement",
    "signal_distances",
    "summarize_distances",
    "wavelet_denoise",
]
