"""Tests of the 2D XRD chain: detector images, background removal, libraries, PADNet,
baselines, readers and the CLI commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from matdisco import MatdiscoError
from matdisco.xrd.background import (
    cs_background,
    default_window,
    minimum_background,
    remove_background,
)
from matdisco.xrd.detector import DetectorGeometry, render_image, validate_image
from matdisco.xrd.library import (
    ImageLibrary,
    PhaseRegion,
    RegionMap,
    default_phase_names,
    default_region_map,
    lever_fractions,
    make_library,
    ternary_spread,
)

GEOM = DetectorGeometry(shape=(48, 48))


@pytest.fixture(scope="module")
def small_lib() -> ImageLibrary:
    """A tiny irregular-background library: 4 regions' worth of phases, 48×48 images."""
    return make_library(n_samples=40, shape=48, background="irregular", seed=1,
                        spottiness=0.2, counts=300)


# ------------------------------------------------------------------ detector
def test_geometry_angles_and_validation() -> None:
    lo, hi = GEOM.two_theta_range()
    assert 0 < lo < 10 < 40 < hi < 60
    big = GEOM.resized(96)
    # same physical detector: same angular coverage
    assert abs(big.two_theta_range()[1] - hi) < 1.0
    with pytest.raises(MatdiscoError, match="wavelength"):
        DetectorGeometry(wavelength=None)  # type: ignore[arg-type]
    with pytest.raises(MatdiscoError, match="distance"):
        DetectorGeometry(distance=0)
    assert DetectorGeometry.from_dict(GEOM.to_dict()) == GEOM


def test_render_image_ring_at_peak_angle() -> None:
    grid = np.linspace(5, 50, 901)
    pat = np.exp(-0.5 * ((grid - 20.0) / 0.2) ** 2)
    img = render_image(pat, grid, GEOM, counts=None)
    tth, _ = GEOM.angle_maps()
    on = np.abs(tth - 20.0) < 0.2
    off = np.abs(tth - 20.0) > 2.0
    assert img.shape == (48, 48) and img.dtype == np.float32
    assert img[on].mean() > 0.5 and img[off].max() < 1e-3
    noisy = render_image(pat, grid, GEOM, background="smooth", counts=100, rng=0)
    assert np.all(noisy == np.round(noisy)) and noisy[off].mean() > 0  # Poisson counts
    irr = [render_image(pat, grid, GEOM, background="irregular", counts=None, rng=s)
           for s in (0, 1)]
    # the irregular background is strong and differs between samples
    assert irr[0][off].mean() > 0.3 and not np.allclose(irr[0], irr[1])
    spotty = render_image(pat, grid, GEOM, spottiness=1.0, counts=None, rng=0)
    assert spotty[on].std() / spotty[on].mean() > 2 * img[on].std() / img[on].mean()
    with pytest.raises(MatdiscoError, match="unknown background"):
        render_image(pat, grid, GEOM, background="wavy")


def test_validate_image_errors() -> None:
    with pytest.raises(MatdiscoError, match="NaN"):
        validate_image(np.array([[1.0, np.nan], [0, 0]]))
    with pytest.raises(MatdiscoError, match="dtype"):
        validate_image(np.zeros((4, 4), bool))
    with pytest.raises(MatdiscoError, match="size"):
        validate_image(np.zeros((4, 4)), shape=(8, 8))


# ------------------------------------------------------------------ background
def test_background_matches_bruteforce_and_removes_smooth_background() -> None:
    from scipy.ndimage import generic_filter

    rng = np.random.default_rng(0)
    img = rng.random((20, 24)).astype(np.float32)
    brute = generic_filter(img, np.min, size=5, mode="nearest")
    np.testing.assert_allclose(minimum_background(img, 5), brute)
    brute_cs = generic_filter(brute, np.mean, size=5, mode="nearest")
    np.testing.assert_allclose(cs_background(img, 5), brute_cs, rtol=1e-5, atol=1e-6)
    # a linear ramp plus a thin ring: removal keeps the ring and flattens the ramp
    yy, xx = np.mgrid[0:64, 0:64]
    ramp = 5.0 + 0.05 * xx
    ring = (np.abs(np.hypot(yy - 32, xx - 32) - 20) < 1).astype(float)
    out = remove_background(ramp + ring, "cs", 9)
    assert np.ptp(out[ring == 0]) < 0.6 < out[ring == 1].mean()
    stack = remove_background(np.stack([ramp, ramp]), "mf", 9)
    assert stack.shape == (2, 64, 64)
    assert default_window((2048, 2048)) == 200 and default_window(512) == 50
    with pytest.raises(MatdiscoError, match="NaN"):
        remove_background(np.full((8, 8), np.nan), "mf", 3)
    with pytest.raises(MatdiscoError, match="unknown background method"):
        remove_background(ramp, "median")


# ------------------------------------------------------------------ library
def test_region_map_default_and_errors() -> None:
    rm = default_region_map()
    assert len(rm.regions) == 8
    rm.validate(default_phase_names())
    lab = rm.label(ternary_spread(177))
    assert len(lab) == 177 and set(lab) == set(range(8))
    assert rm.label(np.array([[1.0, 0, 0]]))[0] == rm.names.index("SnO2")
    bad = RegionMap([PhaseRegion("A", ("SnO2_rutile",), [(1, 0, 0), (0, 1, 0), (0.5, 0, 0.5)])])
    with pytest.raises(MatdiscoError, match="does not cover"):
        bad.validate()
    unk = RegionMap([PhaseRegion("A", ("Unobtainium",), [(1, 0, 0), (0, 1, 0), (0, 0, 1)])])
    with pytest.raises(MatdiscoError, match="unknown phase 'Unobtainium'"):
        unk.validate(default_phase_names())
    f = lever_fractions(np.array([0.5, 0, 0.5]), np.array([[1, 0, 0], [1 / 3, 0, 2 / 3]]))
    assert abs(f.sum() - 1) < 1e-9 and f[1] > f[0] >= 0.15


def test_library_contents_and_roundtrip(small_lib: ImageLibrary, tmp_path) -> None:
    lib = small_lib
    assert lib.images.shape == (40, 1, 48, 48)
    assert lib.patterns.shape[0] == 40 and np.allclose(lib.patterns.max(1), 1)
    assert np.allclose(lib.fractions.sum(1), 1, atol=1e-5)
    # phases absent from a sample's region have zero fraction
    rm = default_region_map()
    for i in range(40):
        present = {lib.phase_names[j] for j in np.flatnonzero(lib.fractions[i])}
        assert present == set(rm.regions[lib.labels[i]].phases)
    path = lib.save(tmp_path / "lib.npz")
    back = ImageLibrary.load(path)
    np.testing.assert_array_equal(back.images, lib.images)
    assert back.region_names == lib.region_names and back.geometries == lib.geometries


def test_two_frame_library_and_errors() -> None:
    from matdisco.xrd.simulate import PeakList

    phases = {"SnO2_rutile": PeakList(np.array([17.2, 21.8]), np.array([100.0, 80.0])),
              "ZnO_wurtzite": PeakList(np.array([20.5, 29.0]), np.array([60.0, 100.0]))}
    rm = RegionMap([PhaseRegion("Sn", ("SnO2_rutile",), [(1, 0, 0), (0, 1, 0), (0.5, 0, 0.5)]),
                    PhaseRegion("Zn", ("ZnO_wurtzite", "SnO2_rutile"),
                                [(0.5, 0, 0.5), (0, 1, 0), (0, 0, 1)])])
    lib = make_library(phases, rm, n_samples=6, n_frames=2, shape=32, background="smooth")
    assert lib.images.shape == (6, 2, 32, 32)
    lo = [g.two_theta_range()[0] for g in lib.geometries]
    assert lo[1] > lo[0] + 10  # the second frame looks at higher angles
    with pytest.raises(MatdiscoError, match="unknown phase"):
        make_library({"X": phases["ZnO_wurtzite"]}, rm, n_samples=3, shape=32)
    with pytest.raises(MatdiscoError, match="n_frames"):
        make_library(phases, rm, n_samples=3, shape=32, n_frames=3)


# ------------------------------------------------------------------ PADNet
def test_slope_filters_cancel_linear_background() -> None:
    from matdisco.xrd.padnet import PADNet, PeakAreaDetection, count_parameters, slope_kernels

    k = slope_kernels(5)
    assert k.shape == (4, 1, 5, 5) and torch.allclose(k.sum((1, 2, 3)), torch.zeros(4))
    pad = PeakAreaDetection(5).eval()
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    ramp = (3 + 0.1 * xx + 0.05 * yy)[None, None]
    ring = ((torch.hypot(yy - 16, xx - 16) - 9).abs() < 1).float()[None, None]
    resp = pad.slope(ramp + ring).abs()[0, :, 4:-4, 4:-4]
    base = pad.slope(ramp).abs()[0, :, 4:-4, 4:-4]
    # a linear background gives a constant slope (removed by the batch norm), rings peaks
    assert float(base.std((1, 2)).max()) < 1e-4
    assert resp.max() > 3 * base.max()
    # replicate padding: a constant offset gives no response at the image border either
    assert float(pad.slope(torch.full((1, 1, 32, 32), 500.0)).abs().max()) < 1e-3
    # so on a raw-like image (large offset), borders included, the strongest response lies
    # on the ring and the spatial softmax concentrates there
    peak = pad(torch.sqrt(500 + 200 * ring + ramp))[0].sum(0)
    iy, ix = divmod(int(peak.argmax()), 32)
    assert abs(float(np.hypot(iy - 16, ix - 16)) - 9) < 3
    assert not pad.slope.weight.requires_grad
    assert PeakAreaDetection(5, trainable=True).slope.weight.requires_grad
    one, two = PADNet(8, n_frames=1), PADNet(8, n_frames=2)
    assert count_parameters(one) == count_parameters(two)
    assert two(torch.rand(3, 2, 32, 32)).shape == (3, 8)
    with pytest.raises(MatdiscoError, match="frame"):
        one(torch.rand(2, 2, 32, 32))
    assert PADNet(3, pool_grid=1, transform="log")(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    with pytest.raises(MatdiscoError, match="pool_grid"):
        PADNet(3, pool_grid=0)
    with pytest.raises(MatdiscoError, match="transform"):
        PADNet(3, transform="cube")
    # attention="none": the batch-normed maps themselves, no spatial softmax
    plain = PeakAreaDetection(5, attention="none").eval()
    img = torch.sqrt(500 + 200 * ring + ramp)
    y = plain(img)
    torch.testing.assert_close(y, plain.norm(plain.pool(plain.slope(img).abs())))
    sm = pad(img)
    torch.testing.assert_close(sm.mean((2, 3)), torch.ones(1, 4))  # softmax: mean 1 per map
    assert PADNet(3, attention="none")(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    with pytest.raises(MatdiscoError, match="attention"):
        PADNet(3, attention="sparse")


def test_padnet_learns_and_saves(small_lib: ImageLibrary, tmp_path) -> None:
    from matdisco.xrd.padnet import PADNetClassifier

    lib = small_lib
    # two well-separated classes: SnO2-rich vs ZnO-rich samples
    y = (lib.compositions[:, 2] > lib.compositions[:, 0]).astype(np.int64)
    clf = PADNetClassifier(f=3, channels=(8, 16), epochs=25, batch_size=8, lr=3e-3,
                           patience=None, val_fraction=0.0, device="cpu")
    clf.fit(lib.images, y, run_dir=tmp_path / "run")
    assert clf.history_[-1]["train_loss"] < clf.history_[0]["train_loss"]
    assert clf.score(lib.images, y) >= 0.8
    assert (tmp_path / "run" / "history.jsonl").exists()
    clf.save(tmp_path / "model")
    back = PADNetClassifier.load(tmp_path / "model")
    np.testing.assert_allclose(back.predict_proba(lib.images[:5]),
                               clf.predict_proba(lib.images[:5]), atol=1e-5)
    with pytest.raises(MatdiscoError, match="trained on"):
        back.predict(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(MatdiscoError, match="NaN"):
        back.predict(np.full((1, 1, 48, 48), np.nan, np.float32))
    flat = PADNetClassifier(f=3, channels=(8, 16), epochs=2, batch_size=8, patience=None,
                            val_fraction=0.0, device="cpu", attention="none")
    flat.fit(lib.images, y).save(tmp_path / "flat")
    again = PADNetClassifier.load(tmp_path / "flat")
    assert again.attention == "none" and again.model_.pad.attention == "none"
    np.testing.assert_allclose(again.predict_proba(lib.images[:5]),
                               flat.predict_proba(lib.images[:5]), atol=1e-5)
    # a PADNet cross-validation run in parts equals the whole one, fold by fold
    from matdisco.xrd.padnet import cross_validate_matrix

    kw = dict(train_on=("none",), test_on=("none",), n_splits=4, f=3, channels=(8, 16),
              epochs=2, batch_size=8, patience=None, device="cpu")
    whole = cross_validate_matrix(lib.images, y, **kw)["train-I_test-I"]["folds"]
    parts = [cross_validate_matrix(lib.images, y, first_fold=k, max_folds=n, **kw)
             ["train-I_test-I"]["folds"] for k, n in ((0, 1), (1, 3))]
    assert len(whole) == 4 and parts[0] + parts[1] == whole


def test_padnet_settings_refused_when_made() -> None:
    """Bad settings used to surface mid-training (or never: a negative lr trained)."""
    from matdisco.xrd.padnet import PADNetClassifier

    for kw, name in [({"f": 1}, "slope-filter"), ({"epochs": 0}, "epochs"),
                     ({"batch_size": 0}, "batch_size"), ({"lr": -1e-3}, "lr"),
                     ({"lr": float("nan")}, "lr"), ({"weight_decay": -1}, "weight_decay"),
                     ({"val_fraction": 1.0}, "val_fraction"), ({"dropout": 1.0}, "dropout"),
                     ({"patience": -1}, "patience"), ({"channels": ()}, "channels"),
                     ({"channels": (8, 0)}, "channel"), ({"attention": "max"}, "attention"),
                     ({"transform": "exp"}, "transform"), ({"device": "tpu"}, "device"),
                     ({"epochs": True}, "epochs")]:
        with pytest.raises(MatdiscoError, match=name):
            PADNetClassifier(**kw)
    PADNetClassifier(patience=None, val_fraction=0.0, device="cuda:1")  # all fine


def test_train_padnet_and_classify_images_api(small_lib: ImageLibrary, tmp_path) -> None:
    """The `xrd train` / `xrd classify` workflow from Python."""
    import json

    from matdisco.xrd.workflow import classify_images, train_padnet

    small_lib.save(tmp_path / "lib.npz")
    run = tmp_path / "run"
    with pytest.raises(MatdiscoError, match="preprocess"):
        train_padnet(tmp_path / "lib.npz", run, preprocess="gauss", epochs=1)
    with pytest.raises(MatdiscoError, match="cv"):
        train_padnet(tmp_path / "lib.npz", run, cv=1, epochs=1)
    with pytest.raises(MatdiscoError, match="epochs"):
        train_padnet(tmp_path / "lib.npz", run, epochs=0)
    assert not run.exists()
    m = train_padnet(tmp_path / "lib.npz", run, preprocess="cs", cv=2, f=3, epochs=1,
                     channels=(4, 8), device="cpu")
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert m["epochs_run"] == 1 and "train-I-CS_test-I-CS" in m["cv"]
    assert (run / "cv_predictions.csv").exists() and (run / "confusion_cv.png").exists()
    assert not list(run.rglob("*checkpoint*"))  # no resume: none kept
    with pytest.raises(MatdiscoError, match="overwrite"):
        train_padnet(tmp_path / "lib.npz", run, epochs=1, f=3, device="cpu")
    df = classify_images(run, [tmp_path / "lib.npz"])
    assert len(df) == len(small_lib) and list(df.columns) == [
        "path", "index", "name", "label", "region", "probability"]
    assert df["index"].tolist() == list(range(len(small_lib)))
    assert set(df["region"]) <= set(small_lib.region_names)
    assert ((df["probability"] > 0) & (df["probability"] <= 1)).all()


# ------------------------------------------------------------------ baselines + readers
def test_baselines_envelope_and_classifiers(small_lib: ImageLibrary) -> None:
    from matdisco.xrd.baselines import (
        PatternClassifier,
        envelope_background,
        integrate_images,
        subtract_envelope,
    )

    x = np.linspace(0, 1, 400)
    peak = np.exp(-0.5 * ((x - 0.5) / 0.005) ** 2)
    bg = 2 + np.sin(3 * x)
    env = envelope_background(bg + peak)[0]
    assert np.abs(env - bg)[50:-50].max() < 0.1 and env[200] < bg[200] + 0.1
    assert subtract_envelope(bg + peak)[0].argmax() == 200
    lib = small_lib
    P = integrate_images(lib.images, lib.geometries, npt=120)
    assert P.shape == (40, 120) and np.isfinite(P).all()
    y = (lib.compositions[:, 2] > lib.compositions[:, 0]).astype(np.int64)
    for method in ("logreg", "rf", "adaboost"):
        clf = PatternClassifier(method, use_composition=True).fit(P, y, lib.compositions)
        assert clf.score(P, y, lib.compositions) > 0.8
    with pytest.raises(MatdiscoError, match="needs compositions"):
        PatternClassifier("rf", use_composition=True).fit(P, y)
    with pytest.raises(MatdiscoError, match="frame"):
        integrate_images(lib.images, lib.geometries * 2)
    # a cross-validation run in parts equals the whole one, fold by fold
    from matdisco.xrd.baselines import cross_validate_baseline

    whole = cross_validate_baseline(P, y, n_splits=5, method="logreg")["folds"]
    parts = [cross_validate_baseline(P, y, n_splits=5, method="logreg", first_fold=k,
                                     max_folds=n)["folds"] for k, n in ((0, 2), (2, 3))]
    assert len(whole) == 5 and parts[0] + parts[1] == whole


def test_readers_roundtrip(tmp_path) -> None:
    from matdisco.xrd.readers import integrate, read_image, read_pattern, write_image

    img = render_image(np.exp(-0.5 * ((np.linspace(5, 50, 451) - 20) / 0.3) ** 2),
                       np.linspace(5, 50, 451), GEOM, counts=200, rng=0)
    for suffix in (".tif", ".edf", ".cbf"):
        p = write_image(tmp_path / f"img{suffix}", img)
        np.testing.assert_allclose(read_image(p, shape=(48, 48)), np.round(img)
                                   if suffix == ".cbf" else img)
    with pytest.raises(MatdiscoError, match="differs"):
        read_image(tmp_path / "img.tif", shape=(64, 64))
    with pytest.raises(MatdiscoError, match="not found"):
        read_image(tmp_path / "none.tif")
    ai = GEOM.integrator()
    ai.save(str(tmp_path / "g.poni"))
    tt, inten = integrate(img, tmp_path / "g.poni", npt=200)
    assert abs(tt[np.argmax(inten)] - 20) < 0.6
    assert DetectorGeometry.from_poni(tmp_path / "g.poni", shape=(48, 48)).shape == (48, 48)
    with pytest.raises(MatdiscoError, match="PONI file not found"):
        integrate(img, tmp_path / "missing.poni")
    (tmp_path / "nowl.poni").write_text(
        "\n".join(line for line in (tmp_path / "g.poni").read_text().splitlines()
                  if not line.startswith("Wavelength")))
    with pytest.raises(MatdiscoError, match="wavelength"):
        integrate(img, tmp_path / "nowl.poni")
    (tmp_path / "p.xy").write_text("# 2theta I\n10 1\n11 3\n12 2\n")
    (tmp_path / "p.csv").write_text("two_theta,intensity\n10,1\n11,3\n12,x\n")
    tt, inten = read_pattern(tmp_path / "p.xy")
    assert tt.tolist() == [10, 11, 12] and inten.tolist() == [1, 3, 2]
    with pytest.raises(MatdiscoError, match="p.csv"):
        read_pattern(tmp_path / "p.csv")


def test_load_images_from_files_and_npz(tmp_path) -> None:
    from matdisco.xrd import load_images
    from matdisco.xrd.readers import write_image

    a = np.arange(48 * 48, dtype=float).reshape(48, 48)
    write_image(tmp_path / "a.tif", a)
    write_image(tmp_path / "b.edf", a + 1)
    x, comp, names, sources = load_images([tmp_path / "a.tif", str(tmp_path / "b.edf")])
    assert x.shape == (2, 1, 48, 48) and comp is None and names == ["a.tif", "b.edf"]
    assert [s[1] for s in sources] == [0, 0]
    np.testing.assert_allclose(x[1, 0], a + 1)
    np.savez(tmp_path / "lib.npz", images=np.stack([a, a, a]), compositions=np.eye(3))
    x, comp, names, sources = load_images([tmp_path / "lib.npz"])
    assert x.shape == (3, 1, 48, 48) and comp.shape == (3, 3)
    assert names == ["lib[0]", "lib[1]", "lib[2]"] and sources[2][1] == 2
    write_image(tmp_path / "c.tif", np.zeros((32, 32)))
    with pytest.raises(MatdiscoError, match="different sizes"):
        load_images([tmp_path / "a.tif", tmp_path / "c.tif"])
    with pytest.raises(MatdiscoError, match="not several .npz"):
        load_images([tmp_path / "lib.npz", tmp_path / "a.tif"])
    np.savez(tmp_path / "noimg.npz", other=a)
    with pytest.raises(MatdiscoError, match="no 'images'"):
        load_images([tmp_path / "noimg.npz"])


# ------------------------------------------------------------------ CLI
def test_cli_library_background_train_classify(tmp_path) -> None:
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from matdisco.cli.xrd import app

    runner = CliRunner()
    lib = tmp_path / "lib.npz"
    r = runner.invoke(app, ["library", "--output", str(lib), "--images", "--n-samples", "16",
                            "--size", "32", "--background-kind", "smooth"])
    assert r.exit_code == 0, r.output
    assert ImageLibrary.load(lib).images.shape == (16, 1, 32, 32)
    r = runner.invoke(app, ["background", str(lib), "--output", str(tmp_path / "cs.npz"),
                            "--method", "cs", "--window", "5"])
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "cs.npz") as z:
        assert z["images"].shape == (16, 1, 32, 32) and "labels" in z.files
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", str(lib), "--out", str(run), "--epochs", "2",
                            "--f", "3", "--device", "cpu", "--preprocess", "mf",
                            "--attention", "none"])
    assert r.exit_code == 0, r.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and (run / "padnet.safetensors").exists()
    assert json.loads((run / "config.json").read_text())["params"]["attention"] == "none"
    # a second training into the same run directory is refused unless --overwrite
    args = ["train", str(lib), "--out", str(run), "--epochs", "1", "--f", "3", "--device",
            "cpu"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "already holds a finished run" in r.output
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2
    r = runner.invoke(app, [*args, "--overwrite", "--cv", "2"])
    assert r.exit_code == 0, r.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and "predictions" not in metrics["cv"]
    oof = pd.read_csv(run / "cv_predictions.csv")
    assert len(oof) == 16 and (oof["predicted"] >= 0).all()  # every sample tested once
    # the CSV's accuracy is the CV accuracy of the metrics
    assert (oof["predicted"] == oof["label"]).mean() == pytest.approx(
        np.mean(metrics["cv"]["train-I_test-I"]["folds"]), abs=0.07)
    for png in ("training_curve.png", "confusion_cv.png"):
        assert (run / png).stat().st_size > 1000
    r = runner.invoke(app, ["classify", str(run), str(lib), "--output",
                            str(tmp_path / "pred.csv")])
    assert r.exit_code == 0, r.output
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert len(pred) == 16 and set(pred["region"]) <= set(default_region_map().names)
    # bad input: a region map that leaves a hole in the triangle
    (tmp_path / "map.json").write_text(json.dumps({"regions": [
        {"name": "A", "phases": ["ZnO_wurtzite"], "polygon": [[1, 0, 0], [0, 1, 0], [0, 0.5, 0.5]]}
    ]}))
    r = runner.invoke(app, ["library", "--output", str(tmp_path / "x.npz"), "--images",
                            "--n-samples", "4", "--size", "32", "--region-map",
                            str(tmp_path / "map.json")])
    assert r.exit_code == 2 and "does not cover" in r.output
    # bad input: a NaN image file
    from matdisco.xrd.readers import write_image

    write_image(tmp_path / "ok.tif", np.ones((32, 32), np.float32))
    bad = np.ones((32, 32), np.float32)
    bad[3, 4] = np.nan
    import fabio.tifimage

    fabio.tifimage.TifImage(data=bad).write(str(tmp_path / "bad.tif"))
    r = runner.invoke(app, ["classify", str(run), str(tmp_path / "bad.tif"), "--output",
                            str(tmp_path / "p2.csv")])
    assert r.exit_code == 2 and "NaN" in r.output


def test_cli_train_overwrite_keeps_old_run_on_failure(tmp_path) -> None:
    """`train --overwrite` that fails leaves the old run whole (it used to delete it
    first), and a missing model directory is not created by `classify`."""
    import json

    from typer.testing import CliRunner

    from matdisco.cli.xrd import app

    runner = CliRunner()
    lib = tmp_path / "lib.npz"
    make_library(n_samples=8, shape=32, seed=0).save(lib)
    run = tmp_path / "run"
    args = ["train", str(lib), "--out", str(run), "--epochs", "1", "--f", "3", "--device",
            "cpu"]
    assert runner.invoke(app, args).exit_code == 0
    before = (run / "padnet.safetensors").read_bytes()
    r = runner.invoke(app, [*args, "--overwrite", "--lr", "-1"])
    assert r.exit_code == 2 and "lr" in r.output
    assert (run / "padnet.safetensors").read_bytes() == before
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    r = runner.invoke(app, ["classify", str(tmp_path / "nosuch"), str(lib), "-o",
                            str(tmp_path / "p.csv")])
    assert r.exit_code == 2 and "not found" in r.output
    assert not (tmp_path / "nosuch").exists()


def test_cli_bad_outputs_images_and_configs(tmp_path) -> None:
    """Directories or wrong suffixes as outputs, bad image arrays and edited run configs
    give one-line errors (exit 2) and no output."""
    import json
    import shutil

    from typer.testing import CliRunner

    from matdisco.cli.xrd import app

    runner = CliRunner()
    lib, run = _library_and_run(tmp_path, 6)
    (tmp_path / "dir").mkdir()

    def fails(args: list[str], text: str) -> None:
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and text in r.output, r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)

    out = str(tmp_path / "dir")
    fails(["classify", str(run), str(lib), "-o", out], "is a directory")
    fails(["classify", str(run), str(lib), "-o", str(tmp_path / "p.txt")], "'.txt'")
    fails(["library", "--images", "--size", "32", "--n-samples", "2", "-o", out],
          "is a directory")
    fails(["library", "--images", "--size", "0", "--n-samples", "2", "-o",
           str(tmp_path / "l.npz")], "≥ 8 pixels")
    fails(["background", str(lib), "-o", str(tmp_path / "b.txt")], "'.txt'")
    assert not (tmp_path / "b.txt").exists()
    # a corrupt .npz, object arrays and complex pixels are named, not a traceback
    (tmp_path / "cut.npz").write_bytes(lib.read_bytes()[:300])
    fails(["background", str(tmp_path / "cut.npz"), "-o", str(tmp_path / "b.npz")],
          "cut.npz")
    np.savez(tmp_path / "cx.npz", images=np.ones((2, 32, 32), complex))
    fails(["background", str(tmp_path / "cx.npz"), "-o", str(tmp_path / "b.npz")],
          "complex")
    fails(["classify", str(run), str(tmp_path / "cx.npz"), "-o", str(tmp_path / "p.csv")],
          "complex")
    assert not (tmp_path / "b.npz").exists() and not (tmp_path / "p.csv").exists()
    # a library with complex images is refused by train (it was cast silently)
    with np.load(lib) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "cxlib.npz", **{**arrays, "images": arrays["images"] + 0j})
    fails(["train", str(tmp_path / "cxlib.npz"), "--out", str(tmp_path / "r2"), "--epochs",
           "1"], "complex")
    assert not (tmp_path / "r2").exists()
    fails(["train", "--out", str(tmp_path / "r2")], "missing the image library")
    fails(["train", str(lib), "--data", str(tmp_path / "cxlib.npz"), "--out",
           str(tmp_path / "r2")], "not both")
    assert not (tmp_path / "r2").exists()
    # edited run configurations
    for i, edit in enumerate([lambda c: c["params"].update(bogus=1),
                              lambda c: c.pop("n_classes"),
                              lambda c: c.update(region_names=["a"]),
                              lambda c: c["params"].update(f="x")]):
        bad = tmp_path / f"bad{i}"
        shutil.copytree(run, bad)
        cfg = json.loads((bad / "config.json").read_text())
        edit(cfg)
        (bad / "config.json").write_text(json.dumps(cfg))
        fails(["classify", str(bad), str(lib), "-o", str(tmp_path / "p.csv")],
              f"bad{i}/config.json")
    assert not (tmp_path / "p.csv").exists()


def test_cli_classify_and_background_name_every_input(tmp_path) -> None:
    """`classify` writes path and index (position in that file) before the name, in input
    order: two image files with the same name stay apart (they used to be both
    'img.tif'). `background` into a directory refuses inputs that would overwrite each
    other's output, and a .npz written from image files records their paths."""
    import pandas as pd
    from typer.testing import CliRunner

    from matdisco.cli.xrd import app
    from matdisco.xrd.readers import write_image

    runner = CliRunner()
    lib, run = _library_and_run(tmp_path, 4)
    r = runner.invoke(app, ["classify", str(run), str(lib), "-o", str(tmp_path / "l.csv")])
    assert r.exit_code == 0, r.output
    p = pd.read_csv(tmp_path / "l.csv")
    assert list(p.columns) == ["path", "index", "name", "label", "region", "probability"]
    assert p["path"].tolist() == [str(lib)] * 4 and p["index"].tolist() == [0, 1, 2, 3]
    assert p["name"].tolist() == [f"lib[{i}]" for i in range(4)]
    with np.load(lib) as z:
        images = z["images"]
    files = [tmp_path / "b" / "img.tif", tmp_path / "a" / "img.tif", tmp_path / "c.tif"]
    for f, im in zip(files, images, strict=False):
        f.parent.mkdir(exist_ok=True)
        write_image(f, im[0])
    r = runner.invoke(app, ["classify", str(run), *map(str, files), "-o",
                            str(tmp_path / "f.parquet")])
    assert r.exit_code == 0, r.output
    q = pd.read_parquet(tmp_path / "f.parquet")
    assert q["path"].tolist() == [str(f) for f in files] and q["index"].tolist() == [0, 0, 0]
    assert q["name"].tolist() == ["img.tif", "img.tif", "c.tif"]
    # the same library image gives the same prediction as its file
    assert q["probability"].iloc[0] == pytest.approx(p["probability"].iloc[0], rel=1e-4)
    r = runner.invoke(app, ["background", *map(str, files), "-o", str(tmp_path / "bg"),
                            "--window", "3"])
    assert r.exit_code == 2 and "would both be written as img_f*_cs.tif" in r.output, r.output
    assert not (tmp_path / "bg").exists()
    r = runner.invoke(app, ["background", *map(str, files), "-o", str(tmp_path / "bg.npz"),
                            "--window", "3"])
    assert r.exit_code == 0, r.output
    with np.load(tmp_path / "bg.npz") as z:
        assert z["paths"].tolist() == [str(f) for f in files] and len(z["images"]) == 3


def _library_and_run(tmp_path: Path, n_samples: int) -> tuple[Path, Path]:
    """A tiny 32² library saved as ``lib.npz`` and a PADNet trained on it for one epoch."""
    from typer.testing import CliRunner

    from matdisco.cli.xrd import app

    lib = tmp_path / "lib.npz"
    make_library(n_samples=n_samples, shape=32, seed=0).save(lib)
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--data", str(lib), "--out", str(run), "--epochs",
                                 "1", "--f", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return lib, run
