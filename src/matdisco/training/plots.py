"""Plots every kind of run can use: training curves and confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def plot_history(history: Sequence[dict[str, Any]], title: str = "") -> Any:
    """Training (and validation) loss per epoch from a trainer history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        vals = [h.get(key) for h in history]
        if any(v is not None for v in vals):
            ax.plot(epochs, [np.nan if v is None else v for v in vals], style,
                    label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str],
                   title: str = "") -> Any:
    """Confusion matrix (rows: true class, columns: predicted class), with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(names)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(np.asarray(y_true), np.asarray(y_pred), strict=True):
        if 0 <= p < k:
            cm[int(t), int(p)] += 1
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * k, 0.8 + 0.5 * k))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(k), list(names), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), list(names), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} accuracy {acc:.3f}".strip(), fontsize=9)
    fig.tight_layout()
    return fig
