"""Exploration (not in the package): does a substrate-spot background (single-crystal
Bragg spots at sample-dependent positions, from wafer bow) separate 2D PADNet from the 1D
integrate -> envelope -> AdaBoost chain?  64x64, 177 samples, first 3 of 10 folds."""
import json
import sys
import time

import numpy as np
import torch

import matdisco.xrd.library as L
from matdisco.xrd.background import default_window
from matdisco.xrd.baselines import cross_validate_baseline, integrate_images
from matdisco.xrd.padnet import cross_validate_matrix

torch.set_num_threads(1)
mode = sys.argv[1]  # "spots" or "control"
n_spots_mean = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
orig = L.render_image

def render_with_spots(pattern, two_theta, geometry=None, *, rng=None, counts=500.0, **kw):
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    img = orig(pattern, two_theta, geometry, rng=rng, counts=None, **kw)
    if mode == "spots":
        h, w = img.shape
        yy, xx = np.mgrid[0:h, 0:w]
        s = max(1.0, 0.012 * max(h, w))
        for _ in range(rng.poisson(n_spots_mean)):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r2 = (yy - cy) ** 2 + (xx - cx) ** 2
            img = img + rng.uniform(0.5, 3.0) * np.exp(-r2 / (2 * s * s))
    if counts is not None:
        img = rng.poisson(np.clip(img, 0, None) * counts).astype(np.float64)
    return img.astype(np.float32)

L.render_image = render_with_spots
t0 = time.time()
lib = L.make_library(n_samples=177, background="irregular", n_frames=1, shape=64, seed=0)
print(mode, "library", lib.images.shape, f"{time.time()-t0:.0f}s", flush=True)
P = integrate_images(lib.images, lib.geometries, npt=500)
out = {}
for method in ("adaboost", "logreg", "rf"):
    r = cross_validate_baseline(P, lib.labels, None, n_splits=10, max_folds=3, seed=0,
                                method=method, use_composition=False)
    out[method + "_1d"] = r["mean"]
    print(mode, method, round(r["mean"], 3), flush=True)
res = cross_validate_matrix(lib.images, lib.labels, None, n_splits=10, max_folds=3, seed=0,
                            f_background=default_window(64), f=3, trainable_filters=False,
                            epochs=40, patience=10, attention="none", device="cpu",
                            train_on=("none",), test_on=("none",))
out["padnet_I_I"] = res["train-I_test-I"]["mean"]
print(mode, "padnet raw", round(out["padnet_I_I"], 3), f"{time.time()-t0:.0f}s", flush=True)
json.dump(out, open(f"/tmp/x5/{mode}_{n_spots_mean}.json", "w"))
