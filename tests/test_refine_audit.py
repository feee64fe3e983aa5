"""Audit tests of the imitation-refinement layer: frozen classifier, output bounds,
losses, save/load, signal I/O and metrics (tiny data, one or two epochs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import matdisco.refine.estimators as est
from matdisco import MatdiscoError
from matdisco.refine import (
    ImitationRefiner,
    SignalClassifier,
    UNet,
    compare_refinement,
    highpass,
    kl_discrepancy,
    regularization_loss,
    signal_distances,
    wavelet_denoise,
)
from matdisco.refine.io import class_labels, load_signals, save_signals, signal_ids

torch.set_num_threads(1)
L = 64


def _toy(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(L)
    y = rng.integers(0, 2, n)
    c = np.where(y == 0, 16, 48) + rng.integers(-2, 3, n)
    X = np.exp(-0.5 * ((t[None] - c[:, None]) / 2.0) ** 2)
    return X.astype(np.float32), y


def _clf(arch: str = "cnn1d", prototypical: bool = False, seed: int = 0,
         epochs: int = 1) -> SignalClassifier:
    kw = {"channels": (4, 8), "bins": 4, "embed_dim": 8} if arch == "cnn1d" else \
        {"n_segments": 8, "hidden": 8, "embed_dim": 8}
    X, y = _toy(48, seed=1)
    return SignalClassifier(arch, prototypical=prototypical, epochs=epochs, batch_size=16,
                            arch_kwargs=kw, seed=seed, device="cpu").fit(X, y)


@pytest.fixture(scope="module")
def clf() -> SignalClassifier:
    return _clf()


# --------------------------------------------------------------------- frozen classifier
@pytest.mark.parametrize("arch,proto", [("cnn1d", False), ("cnn1d", True), ("lstm", False)])
def test_classifier_frozen_during_refiner_training(arch: str, proto: bool) -> None:
    c = _clf(arch, proto)
    before = {k: v.clone() for k, v in c.model_.state_dict().items()}
    fp = c.fingerprint
    modes: list[bool] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: modes.append(mod.training))
             for m in c.model_.modules()]
    X, _ = _toy(32, seed=2)
    ImitationRefiner(c, channels=(4,), epochs=2, batch_size=8, lr=1e-2, psi="features",
                     gamma=0.5, alpha=1.0 if proto else 0.0, device="cpu").fit(X)
    for h in hooks:
        h.remove()
    assert modes and not any(modes)  # every classifier module ran in eval mode (dropout off)
    after = c.model_.state_dict()
    for k, v in before.items():  # weights, BatchNorm statistics and prototypes unchanged
        assert torch.equal(v, after[k]), k
    assert c.fingerprint == fp


def test_targeted_and_untargeted_losses_get_the_right_targets(clf, monkeypatch) -> None:
    seen: list[torch.Tensor | None] = []
    orig = est.prediction_loss

    def spy(logits: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        seen.append(None if target is None else target.clone())
        return orig(logits, target)

    monkeypatch.setattr(est, "prediction_loss", spy)
    X, _ = _toy(16, seed=3)
    kw = dict(channels=(4,), epochs=1, batch_size=16, device="cpu")
    ref = ImitationRefiner(clf, **kw).fit(X)  # type: ignore[arg-type]
    assert seen and all(s is None for s in seen) and ref.targeted_ is False
    seen.clear()
    y = np.array([0, 1] * 8)
    ref = ImitationRefiner(clf, **kw).fit(X, y)  # type: ignore[arg-type]
    assert ref.targeted_ is True
    assert len(seen) == 1 and seen[0] is not None
    # one batch of all 16 (shuffled): the targets are the given labels, as class indices
    assert sorted(seen[0].tolist()) == sorted(y.tolist()) and seen[0].dtype == torch.int64
    with pytest.raises(MatdiscoError, match="class indices"):
        ImitationRefiner(clf, **kw).fit(X, y + 0.5)  # type: ignore[arg-type]
    with pytest.raises(MatdiscoError, match="class indices"):
        ImitationRefiner(clf, **kw).fit(X, np.full(16, 2))  # type: ignore[arg-type]


def test_refiner_prior_is_validated(clf) -> None:
    X, _ = _toy(8)
    for bad in ([1.0], [0.5, 0.5, 0.0], [1.0, -0.5], [0.0, 0.0], [np.nan, 1.0]):
        with pytest.raises(MatdiscoError, match="prior"):
            ImitationRefiner(clf, gamma=1.0, prior=np.array(bad), channels=(4,), epochs=1,
                             device="cpu").fit(X)


def test_classifier_validation_labels_are_checked() -> None:
    X, y = _toy(20)
    c = SignalClassifier(epochs=1, arch_kwargs={"channels": (4,), "bins": 4}, device="cpu")
    with pytest.raises(MatdiscoError, match="validation labels"):
        c.fit(X, y, X_val=X[:4], y_val=np.array([0, 1, 5, 0]))
    with pytest.raises(MatdiscoError, match="validation labels"):
        c.fit(X, y, X_val=X[:4], y_val=np.array([0, 1]))
    with pytest.raises(MatdiscoError, match="no training"):
        c.fit(X[:0], y[:0])


# --------------------------------------------------------------------- output bounds
def _random_out(net: UNet, bias: float) -> UNet:
    torch.manual_seed(0)
    torch.nn.init.normal_(net.out.weight, std=3.0)
    torch.nn.init.constant_(net.out.bias, bias)
    return net


@pytest.mark.parametrize("bias", [2.0, -2.0, 0.0])
def test_mask_never_amplifies(bias: float) -> None:
    x = torch.rand(4, L)
    net = _random_out(UNet(1, (4, 8), output="mask"), bias)
    with torch.no_grad():
        r = net(x)
    assert (r <= x).all() and (r >= 0).all()
    # signed signals: attenuation towards 0, never beyond
    neg = _random_out(UNet(1, (4, 8), output="mask", nonneg=False), bias)
    xs = torch.randn(4, L)
    with torch.no_grad():
        rs = neg(xs)
    assert (rs.abs() <= xs.abs()).all() and (rs * xs >= 0).all()
    img = torch.rand(2, 784)
    with torch.no_grad():
        ri = _random_out(UNet(2, (4,), output="mask"), bias)(img)
    assert (ri <= img).all() and (ri >= 0).all()


def test_mask_learns_from_the_identity() -> None:
    """The cap at 1 must not kill the gradient of the zero-initialised refiner."""
    net = UNet(1, (4,), output="mask")
    x = torch.rand(2, L)
    net(x).sum().backward()
    assert net.out.bias.grad is not None and net.out.bias.grad.abs().item() > 0


def test_background_bounds_images_and_identity() -> None:
    img = 0.3 + torch.rand(2, 784)
    net = _random_out(UNet(2, (4,), output="background", smooth_window=7), -1.0)
    with torch.no_grad():
        r = net(img)
    assert (r >= 0).all() and (r <= img + 1e-6).all() and (r < img - 1e-3).any()
    for out in ("residual", "mask", "background"):
        for nonneg in (True, False):
            x = torch.rand(3, L) if nonneg else torch.randn(3, L)
            assert torch.equal(UNet(1, (4, 8), output=out, nonneg=nonneg,
                                    smooth_window=11)(x), x)


def test_refiner_starts_as_identity_through_transform(clf) -> None:
    X, _ = _toy(5)
    for out in ("residual", "mask", "background"):
        ref = ImitationRefiner(clf, channels=(4,), output=out, smooth_window=11, device="cpu")
        ref.model_ = ref._build()
        assert np.array_equal(ref.transform(X), X)


# --------------------------------------------------------------------- losses
def test_highpass_ignores_constant_and_linear_changes_edges_included() -> None:
    t = torch.arange(L, dtype=torch.float32)
    ramp = torch.stack([0.5 + 0.01 * t, 2.0 - 0.03 * t])
    assert highpass(ramp, 11)[0].abs().max() < 1e-5
    sig = torch.rand(2, L)
    assert regularization_loss(sig, sig + ramp, psi=lambda v: highpass(v, 21)) < 1e-5
    i, j = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    plane = (0.2 + 0.05 * i - 0.02 * j)[None]
    assert highpass(plane, 5)[0].abs().max() < 1e-5
    bump = sig.clone()
    bump[:, 2] += 1.0  # a peak, even at an edge, is not slow
    assert regularization_loss(sig, bump, psi=lambda v: highpass(v, 11)) > 1e-2


def test_highpass_window_wider_than_the_signal() -> None:
    img = torch.rand(2, 28, 28)
    assert highpass(img, 101)[0].shape == img.shape
    assert highpass(torch.rand(3, 20), 101)[0].shape == (3, 20)


def test_highpass_refiner_on_images_filters_images() -> None:
    """unet2d + psi='highpass' with the default window trains (28×28 images) and its Ψ
    treats a flattened image as an image: a planar background costs nothing."""
    side = 8
    i, j = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    plane = torch.tensor((0.1 * i + 0.05 * j).ravel(), dtype=torch.float32)[None]
    # flattened, a plane is not linear along the rows' concatenation
    assert highpass(plane, 5)[0].abs().max() > 1e-2
    assert est._highpass_image(plane, side, 5)[0].abs().max() < 1e-5
    rng = np.random.default_rng(0)
    X = rng.random((24, 784)).astype(np.float32)
    y = rng.integers(0, 2, 24)
    c = SignalClassifier("lenet", epochs=1, batch_size=12, device="cpu").fit(X, y)
    ImitationRefiner(c, arch="unet2d", psi="highpass", channels=(4,), epochs=1,
                     batch_size=12, device="cpu").fit(X[:12])


def test_kl_discrepancy_direction_and_zero_probabilities() -> None:
    # batch-mean q = (0.75, 0.25) against prior (0.5, 0.5): KL(q ‖ prior)
    logits = torch.log(torch.tensor([[0.75, 0.25]]))
    prior = torch.tensor([0.5, 0.5])
    expect = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)
    assert float(kl_discrepancy(logits, prior)) == pytest.approx(expect, rel=1e-5)
    reverse = 0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25)
    assert abs(expect - reverse) > 1e-3  # the documented direction, not the other one
    for lg, pr in (([[1e4, -1e4]], [0.0, 1.0]), ([[0.0, 0.0]], [1.0, 0.0]),
                   ([[-1e4, 1e4]], [0.0, 1.0])):
        lt = torch.tensor(lg, requires_grad=True)
        k = kl_discrepancy(lt, torch.tensor(pr))
        k.backward()
        assert torch.isfinite(k) and torch.isfinite(lt.grad).all()
    assert float(kl_discrepancy(torch.tensor([[-1e4, 1e4]]), torch.tensor([0.0, 1.0]))) < 1e-6


# --------------------------------------------------------------------- save / load
def test_save_load_round_trip_and_fingerprint(tmp_path: Path) -> None:
    c = _clf(prototypical=True)
    X, _ = _toy(12, seed=4)
    c.save(tmp_path / "clf")
    c2 = SignalClassifier.load(tmp_path / "clf", device="cpu")
    assert np.array_equal(c2.logits(X), c.logits(X)) and c2.fingerprint == c.fingerprint
    assert np.array_equal(c2.embed(X), c.embed(X))
    ref = ImitationRefiner(c, channels=(4,), epochs=1, batch_size=6, lr=1e-2, alpha=1.0,
                           device="cpu").fit(X)
    R = ref.transform(X)
    assert not np.array_equal(R, X)  # it did train
    ref.save(tmp_path / "ref")
    r2 = ImitationRefiner.load(tmp_path / "ref", device="cpu")
    assert np.array_equal(r2.transform(X), R)
    assert np.array_equal(ImitationRefiner.load(tmp_path / "ref", classifier=c2,
                                                device="cpu").transform(X), R)
    other = _clf(prototypical=True, seed=1)
    assert other.fingerprint != c.fingerprint
    with pytest.raises(MatdiscoError, match="different classifier"):
        ImitationRefiner.load(tmp_path / "ref", classifier=other, device="cpu")


# --------------------------------------------------------------------- signal I/O
def test_signal_io_formats_ids_and_order(tmp_path: Path) -> None:
    X = np.arange(12, dtype=float).reshape(4, 3)
    df = pd.DataFrame(X, columns=["10.0", "10.5", "11.0"])
    df.insert(0, "sample", ["d", "a", "c", "b"])
    df["label"] = [1, 0, 1, 0]
    for suf in ("csv", "parquet"):
        p = tmp_path / f"s.{suf}"
        df.to_csv(p, index=False) if suf == "csv" else df.to_parquet(p)
        d = load_signals(p)
        assert np.array_equal(d["X"], X)
        assert class_labels(d["y"], p).tolist() == [1, 0, 1, 0]
        ids = signal_ids(d)
        assert ids["sample"].tolist() == ["d", "a", "c", "b"]
        out = tmp_path / f"o.{suf}"
        save_signals(out, X + 1, d, p)
        back = load_signals(out)
        assert np.array_equal(back["X"], X + 1)
        assert signal_ids(back)["sample"].tolist() == ["d", "a", "c", "b"]
    np.savez(tmp_path / "s.npz", X=X, y=np.array([1, 0, 1, 0]), names=np.array(list("dacb")))
    d = load_signals(tmp_path / "s.npz")
    assert signal_ids(d)["name"].tolist() == list("dacb")
    np.save(tmp_path / "s.npy", X)
    assert np.array_equal(load_signals(tmp_path / "s.npy")["X"], X)


def test_signal_io_bad_inputs_name_file_and_row(tmp_path: Path) -> None:
    p = tmp_path / "ragged.csv"
    p.write_text("name,a,b,c\ns1,1,2,3\ns2,1,2\n")
    with pytest.raises(MatdiscoError, match=r"ragged\.csv: row 2: .*'c'"):
        load_signals(p)
    p = tmp_path / "nan.npz"
    np.savez(p, X=np.array([[1.0, 2.0], [3.0, np.nan]]))
    with pytest.raises(MatdiscoError, match=r"nan\.npz: row 2"):
        load_signals(p)
    p = tmp_path / "labels.npz"
    np.savez(p, X=np.ones((3, 4)), y=np.array([0, 1]))
    with pytest.raises(MatdiscoError,
                       match=r"labels\.npz: labels y have shape \(2,\), expected \(3,\)"):
        load_signals(p)
    p = tmp_path / "grid.npz"
    np.savez(p, X=np.ones((3, 4)), two_theta=np.arange(5.0))
    with pytest.raises(MatdiscoError, match=r"grid\.npz: 2θ grid"):
        load_signals(p)
    p = tmp_path / "true.npz"
    np.savez(p, X=np.ones((3, 4)), true=np.ones((2, 4)))
    with pytest.raises(MatdiscoError, match=r"true\.npz: true signals"):
        load_signals(p)
    p = tmp_path / "lab.csv"
    p.write_text("label,a,b\n0,1,2\n1.5,1,2\n")
    d = load_signals(p)
    with pytest.raises(MatdiscoError, match=r"lab\.csv: row 2: label 1\.5"):
        class_labels(d["y"], p)
    p.write_text("label,a,b\n0,1,2\ncat,1,2\n")
    with pytest.raises(MatdiscoError, match=r"lab\.csv: labels 'y' must be integer"):
        class_labels(load_signals(p)["y"], p)
    p.write_text("label,a,b\n0,1,2\n,1,2\n")
    with pytest.raises(MatdiscoError, match=r"lab\.csv: row 2"):
        class_labels(load_signals(p)["y"], p)
    p = tmp_path / "obj.npy"
    np.save(p, np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)
    with pytest.raises(MatdiscoError, match=r"obj\.npy: unreadable"):
        load_signals(p)


# --------------------------------------------------------------------- metrics, denoise
def test_signal_distances_hand_computed() -> None:
    pred = np.array([[0.0, 2.0, 0.0, 0.0]])  # scaled to max 1 first
    true = np.array([[0.0, 0.5, 1.0, 0.0]])
    d = signal_distances(pred, true, eps=0.0 + 1e-6)
    assert d["l1"][0] == pytest.approx((0.5 + 1.0) / 4)
    assert d["l2"][0] == pytest.approx(np.sqrt((0.25 + 1.0) / 4))
    assert d["ncc"][0] == pytest.approx(0.125 / np.sqrt(0.75 * 0.6875))
    p = (np.array([0, 1, 0, 0]) + 1e-6) / (1 + 4e-6)
    t = (np.array([0, 0.5, 1, 0]) + 1e-6) / (1.5 + 4e-6)
    assert d["kl"][0] == pytest.approx(float((t * np.log(t / p)).sum()))  # KL(true ‖ pred)
    same = signal_distances(true, 3 * true)
    assert same["l1"][0] == 0 and same["kl"][0] == pytest.approx(0, abs=1e-12)
    with pytest.raises(MatdiscoError, match="shape"):
        signal_distances(pred, np.ones((1, 5)))


def test_compare_refinement_fields(clf) -> None:
    X, y = _toy(10, seed=5)
    res = compare_refinement(clf, X, X, y, X)
    assert set(res) == {"raw", "refined"}
    for m in res.values():
        assert set(m["class_fraction"]) == {"0", "1"}
        assert sum(m["class_fraction"].values()) == pytest.approx(1.0)
        assert m["accuracy"] == pytest.approx(clf.score(X, y))
        assert m["l1_sum"] == 0 and m["ncc_median"] == pytest.approx(1.0)
    assert "accuracy" not in compare_refinement(clf, X, X)["raw"]
    with pytest.raises(MatdiscoError, match="labels"):
        compare_refinement(clf, X, X, y[:3])
    bad = X.copy()
    bad[2, 0] = np.nan
    with pytest.raises(MatdiscoError, match="row 3"):
        compare_refinement(clf, X, X, true=bad)


@pytest.mark.parametrize("n", [7, 33, 101, 257])
def test_wavelet_denoise_keeps_odd_lengths(n: int) -> None:
    x = np.random.default_rng(0).random((3, n))
    assert wavelet_denoise(x).shape == (3, n)
    assert wavelet_denoise(x[0]).shape == (n,)
    assert (wavelet_denoise(x - 0.5) >= 0).all()
    assert wavelet_denoise(x - 0.5, clip_negative=False).min() < 0
