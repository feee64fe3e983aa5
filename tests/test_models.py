"""Network shapes, the trainer (loss goes down, checkpoint/resume), estimators."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from matdisco import MatdiscoError
from matdisco.models import ForestRegressor, NeuralRegressor, build_network, count_parameters
from matdisco.training import Trainer, TrainerConfig, load_state_checked, set_seed


@pytest.mark.parametrize(("arch", "n_linear"), [
    ("elemnet", 17), ("irnet17", 17), ("irnet24", 24), ("irnet48", 48),
    ("plain17", 17), ("srnet17", 17),
])
def test_architecture_depth_and_shape(arch: str, n_linear: int) -> None:
    net = build_network(arch, 86)
    # linear layers of the main path (projections excluded)
    main = [m for name, m in net.named_modules()
            if isinstance(m, torch.nn.Linear) and not name.endswith("proj")]
    assert len(main) == n_linear
    net.eval()
    assert net(torch.rand(5, 86)).shape == (5,)


def test_elemnet_exact_layout() -> None:
    net = build_network("elemnet", 86)
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [1024] * 4 + [512] * 3 + [256] * 3 + [128] * 3 + [64] * 2 + [32, 1]
    drops = [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == pytest.approx([0.2, 0.1, 0.3, 0.2])
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules())


def test_irnet_has_shortcut_per_layer_and_projection() -> None:
    net = build_network("irnet17", 145)
    res = [m for m in net.modules() if type(m).__name__ == "_Residual"]
    assert len(res) == 16
    projs = [m.proj for m in res if isinstance(m.proj, torch.nn.Linear)]
    assert len(projs) == 6  # 145->1024, 1024->512, ..., 64->32
    srnet = build_network("srnet17", 145)
    assert len([m for m in srnet.modules() if type(m).__name__ == "_Residual"]) == 6
    assert count_parameters(net) > count_parameters(build_network("plain17", 145))


def _small_resnet() -> torch.nn.Module:
    """A tiny residual network with batch norm (same code paths as IRNet, fast)."""
    return build_network("mlp", 8, widths=[32, 32, 16], residual="layer", batchnorm=True)


def _toy(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 8, generator=g)
    return x, (x * torch.arange(8)).sum(1) / 8


def test_trainer_lowers_loss_and_writes_history(tmp_path) -> None:
    x, y = _toy()
    set_seed(0)
    net = _small_resnet()
    cfg = TrainerConfig(epochs=6, batch_size=32, lr=1e-3, progress=False, patience=None)
    hist = Trainer(net, cfg, run_dir=tmp_path).fit((x, y), (x[:64], y[:64]))
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 6
    from matdisco.training import RunDir

    assert RunDir(tmp_path).read_history() == json.loads(json.dumps(hist))
    assert RunDir(tmp_path / "empty").read_history() == []
    (tmp_path / "history.jsonl").write_text('{"epoch": 1}\n{broken\n')
    with pytest.raises(MatdiscoError, match="line 2"):
        RunDir(tmp_path).read_history()


def test_early_stopping_restores_best() -> None:
    x, y = _toy()
    set_seed(0)
    net = build_network("mlp", 8, widths=[16])
    cfg = TrainerConfig(epochs=200, batch_size=64, lr=0.05, progress=False, patience=3,
                        scheduler="none", optimizer="sgd")
    tr = Trainer(net, cfg)
    hist = tr.fit((x, y), (x[:32], -y[:32]))  # validation target unlearnable: stops early
    assert tr.stopped_early and len(hist) < 200
    assert tr.evaluate((x[:32], -y[:32]))["loss"] == pytest.approx(tr.best_score, rel=1e-5)


def _run_interruptible(d, cfg: dict, stop_at: int | None = None,
                       resume: bool = False) -> Trainer:
    """Train the small resnet on the toy data; raise KeyboardInterrupt at ``stop_at``."""
    x, y = _toy()
    set_seed(0)
    net = _small_resnet()

    def boom(tr, logs):
        if tr.epoch == stop_at:
            raise KeyboardInterrupt

    tr = Trainer(net, TrainerConfig(**cfg), run_dir=d, callbacks=[boom])
    tr.fit((x, y), (x[:64], y[:64]), resume=resume)
    return tr


def test_checkpoint_resume_is_exact(tmp_path) -> None:
    cfg = dict(epochs=6, batch_size=32, progress=False, patience=None)

    def run(d, stop_at=None, resume=False):
        return _run_interruptible(d, cfg, stop_at, resume)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "a", stop_at=3)
    resumed = run(tmp_path / "a", resume=True)
    straight = run(tmp_path / "b")
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    # the epochs read back from the checkpoint are reported (for honest timings)
    assert len(resumed.history) == 6 and straight.resumed_epochs == 0
    assert 0 < resumed.resumed_epochs < 6


def test_weights_roundtrip_and_mismatch(tmp_path) -> None:
    from matdisco.training import RunDir

    x, y = _toy(64)
    est = NeuralRegressor(arch="mlp", arch_kwargs={"widths": [16]}, epochs=3, batch_size=16,
                          device="cpu").fit(x.numpy(), y.numpy())
    run = RunDir(tmp_path)
    path = run.save_weights("m", est.state_tensors())
    from matdisco.training import load_weights

    est2 = NeuralRegressor(arch="mlp", arch_kwargs={"widths": [16]}).load_state_tensors(
        load_weights(path))
    np.testing.assert_allclose(est.predict(x.numpy()), est2.predict(x.numpy()), rtol=1e-6)
    with pytest.raises(MatdiscoError, match="architecture"):
        NeuralRegressor(arch="elemnet").load_state_tensors(load_weights(path))
    with pytest.raises(MatdiscoError, match="input features"):
        est2.load_state_tensors(load_weights(path), expected_features=9)
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(MatdiscoError, match="corrupt"):
        load_weights(path)
    with pytest.raises(MatdiscoError, match="shape"):
        load_state_checked(build_network("mlp", 8, widths=[32]),
                           run.save_weights("n", est.network_.state_dict()))


def test_forest_export_matches_sklearn(tmp_path) -> None:
    from sklearn.ensemble import RandomForestRegressor

    x, y = _toy(200)
    X, Y = x.numpy(), y.numpy()
    f = ForestRegressor(n_estimators=5, n_jobs=1, seed=3).fit(X, Y)
    ref = RandomForestRegressor(n_estimators=5, max_features=1.0, random_state=3).fit(X, Y)
    np.testing.assert_allclose(f.predict(X), ref.predict(X), rtol=1e-5)
    g = ForestRegressor().load_state_tensors(f.state_tensors())
    np.testing.assert_allclose(g.predict(X), f.predict(X))
    bad = f.state_tensors()
    bad["rf.left"] = bad["rf.left"] + 10**6
    with pytest.raises(MatdiscoError, match="corrupt"):
        ForestRegressor().load_state_tensors(bad)


def test_estimator_rejects_nan() -> None:
    with pytest.raises(MatdiscoError, match="X row 2, column 0"):
        NeuralRegressor().fit(np.array([[0.0], [np.nan]]), np.array([1.0, 2.0]))
    with pytest.raises(MatdiscoError, match="target row 1 "):
        NeuralRegressor().fit(np.array([[0.0], [1.0]]), np.array([np.inf, 2.0]))


def test_ema_weights_and_resume(tmp_path) -> None:
    x, y = _toy()
    cfg = dict(epochs=4, batch_size=32, progress=False, patience=None, ema=0.9)

    def run(d, stop_at=None, resume=False):
        return _run_interruptible(d, cfg, stop_at, resume)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "a", stop_at=2)
    resumed = run(tmp_path / "a", resume=True)
    straight = run(tmp_path / "b")
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    # the restored weights are the averaged ones: they score the best validation loss
    assert straight.evaluate((x[:64], y[:64]))["loss"] == pytest.approx(straight.best_score,
                                                                        rel=1e-5)


def test_ema_with_dropout_on_to_the_end_warns() -> None:
    import warnings

    x, y = _toy(128)

    def fit(**kw) -> list[warnings.WarningMessage]:
        set_seed(0)
        m = build_network("mlp", 8, widths=[16], dropout=0.5)
        cfg = TrainerConfig(epochs=1, batch_size=64, progress=False, patience=None, **kw)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Trainer(m, cfg).fit((x, y))
        return [w for w in caught if "dropout" in str(w.message)]

    msg = fit(ema=0.9)
    assert len(msg) == 1 and "ema=0.9" in str(msg[0].message)
    assert "[0.5]" in str(msg[0].message)
    assert fit(ema=0.9, dropout_anneal_epochs=1) == []
    assert fit(ema=0.9, dropout_scale=0.0) == []
    assert fit() == []


def test_dropout_anneal_schedule_patience_and_resume(tmp_path) -> None:
    x, y = _toy()

    def net() -> torch.nn.Module:
        set_seed(0)
        return build_network("mlp", 8, widths=[32, 16], dropout=0.5)

    # the last 3 of 6 epochs run with dropout scaled 2/3, 1/3, 0; p is restored afterwards
    m = net()
    cfg = TrainerConfig(epochs=6, batch_size=32, progress=False, patience=None,
                        dropout_anneal_epochs=3)
    hist = Trainer(m, cfg).fit((x, y), (x[:64], y[:64]))
    assert [h["dropout_scale"] for h in hist] == pytest.approx([1, 1, 1, 2 / 3, 1 / 3, 0])
    assert {d.p for d in m.modules() if isinstance(d, torch.nn.Dropout)} == {0.5}
    # running out of patience with dropout on starts the annealing instead of stopping
    m = net()
    cfg = TrainerConfig(epochs=100, batch_size=64, lr=0.05, progress=False, patience=2,
                        scheduler="none", optimizer="sgd", dropout_anneal_epochs=2)
    tr = Trainer(m, cfg)
    hist = tr.fit((x, y), (x[:32], -y[:32]))  # unlearnable validation: patience runs out
    assert tr.stopped_early and len(hist) < 100
    assert [h["dropout_scale"] for h in hist[-2:]] == [0.5, 0.0]
    assert all(h["dropout_scale"] == 1.0 for h in hist[:-2])
    # dropout_scale=0 switches dropout off for the whole fit (patience then just stops)
    m = net()
    seen: list[float] = []
    cfg = TrainerConfig(epochs=100, batch_size=64, lr=0.05, progress=False, patience=2,
                        scheduler="none", optimizer="sgd", dropout_anneal_epochs=2,
                        dropout_scale=0.0)
    tr = Trainer(m, cfg, callbacks=[lambda t, logs: seen.extend(
        d.p for d in t.model.modules() if isinstance(d, torch.nn.Dropout))])
    hist = tr.fit((x, y), (x[:32], -y[:32]))
    assert tr.stopped_early and len(hist) == 3 and set(seen) == {0.0}
    assert all(h["dropout_scale"] == 0.0 for h in hist)
    assert {d.p for d in m.modules() if isinstance(d, torch.nn.Dropout)} == {0.5}
    with pytest.raises(MatdiscoError, match="outside"):
        Trainer(net(), TrainerConfig(epochs=1, progress=False, dropout_scale=3.0)).fit((x, y))
    # interrupted during the annealing and resumed: identical to a straight run
    base = dict(epochs=5, batch_size=32, progress=False, patience=None, dropout_anneal_epochs=3)

    def run(d, stop_at=None, resume=False):
        def boom(tr, logs):
            if tr.epoch == stop_at:
                raise KeyboardInterrupt

        tr = Trainer(net(), TrainerConfig(**base), run_dir=d, callbacks=[boom])
        tr.fit((x, y), (x[:64], y[:64]), resume=resume)
        return tr

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "a", stop_at=3)
    resumed, straight = run(tmp_path / "a", resume=True), run(tmp_path / "b")
    assert [h["dropout_scale"] for h in resumed.history] == pytest.approx([1, 1, 2 / 3, 1 / 3, 0])
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_roost_masks_padding_and_reads_raw_fractions() -> None:
    from matdisco.data.composition import encode_fractions

    set_seed(0)
    net = build_network("roost", 86, d=16, n_layers=2, n_heads=2, hidden=16,
                        head_widths=[32, 16]).eval()
    assert net.element_features.shape == (86, 22)  # the Magpie prior, saved with the weights
    formulas = ["Fe2O3", "NaCl", "Li7La3Zr2O12", "Cu", "BaTiO3"]
    x = torch.from_numpy(encode_fractions(formulas))
    batch = net(x)
    # each composition alone (no padding) gives the same output as inside the padded batch
    alone = torch.cat([net(x[i:i + 1]) for i in range(len(formulas))])
    torch.testing.assert_close(batch, alone, rtol=1e-5, atol=1e-5)
    # the whole batch padded to its largest composition (4 elements; the forward groups rows
    # by their element count), or cut into chunks of a few element pairs: the same outputs
    torch.testing.assert_close(net._forward_k(x, 4), batch, rtol=1e-5, atol=1e-5)
    net.max_pairs = 4
    torch.testing.assert_close(net(x), batch, rtol=1e-5, atol=1e-5)
    net.max_pairs = 1 << 14
    # the output depends on the fractions, not only on which elements are present
    assert not torch.allclose(net(torch.from_numpy(encode_fractions(["FeO", "Fe2O3"])))[0:1],
                              net(torch.from_numpy(encode_fractions(["Fe2O3"]))))
    with pytest.raises(MatdiscoError, match="raw"):
        net(x - 0.5)
    with pytest.raises(MatdiscoError, match="145 features"):
        build_network("roost", 145)
    with pytest.raises(MatdiscoError, match="unknown roost parameters"):
        build_network("roost", 86, widths=[3])
    # gradients are finite despite the masked (-inf) attention logits
    net.train()
    net(x).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_l2sp_keeps_fine_tuned_weights_near_the_source() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((120, 6)).astype(np.float32)
    y = X @ rng.normal(size=6) + 0.1 * rng.normal(size=120)
    kw = dict(arch="mlp", arch_kwargs={"widths": [16, 16]}, batch_size=16, lr=1e-2,
              patience=None, device="cpu", val_fraction=0.2)
    src = NeuralRegressor(epochs=3, **kw).fit(X, y)
    init = src.state_tensors()
    y2 = -2.0 * y + 1.0  # a different task: fine-tuning moves the weights far

    def drift(est: NeuralRegressor) -> float:
        new = est.state_tensors()
        return sum(float(((new[k] - init[k]) ** 2).sum()) for k in init
                   if k.startswith("net.") and new[k].is_floating_point())

    free = NeuralRegressor(epochs=5, **kw).fit(X, y2, init=init)
    tied = NeuralRegressor(epochs=5, l2sp=1.0, **kw).fit(X, y2, init=init)
    assert drift(tied) < 0.2 * drift(free)
    logs = tied.history_[-1]
    # the training loss carries the penalty; it is logged apart from the fit term
    assert logs["train_l2sp"] > 0
    assert logs["train_loss"] > logs["train_fit_loss"]
    np.testing.assert_allclose(logs["train_loss"],
                               logs["train_fit_loss"] + logs["train_l2sp"], rtol=1e-3)
    with pytest.raises(MatdiscoError, match="L2-SP"):
        NeuralRegressor(epochs=1, l2sp=1.0, **kw).fit(X, y)  # no source weights


def test_freeze_layers_keeps_the_first_layers_at_the_source() -> None:
    rng = np.random.default_rng(1)
    X = rng.random((80, 5)).astype(np.float32)
    y = X.sum(1)
    kw = dict(arch="mlp", arch_kwargs={"widths": [12, 8]}, batch_size=16, lr=1e-2,
              patience=None, device="cpu")
    init = NeuralRegressor(epochs=2, **kw).fit(X, y).state_tensors()
    tl = NeuralRegressor(epochs=3, freeze_layers=1, **kw).fit(X, -y, init=init)
    new = tl.state_tensors()
    linear = sorted(k for k in init if k.startswith("net.") and k.endswith(".weight")
                    and init[k].ndim == 2)
    assert torch.equal(new[linear[0]], init[linear[0]])  # the input layer is frozen
    assert not torch.equal(new[linear[-1]], init[linear[-1]])  # later ones train
    with pytest.raises(MatdiscoError, match="at least one must train"):
        NeuralRegressor(epochs=1, freeze_layers=3, **kw).fit(X, y, init=init)
    with pytest.raises(MatdiscoError, match="freezing needs"):
        NeuralRegressor(epochs=1, freeze_layers=1, **kw).fit(X, y)


def test_probe_head_refits_the_last_layer_before_fine_tuning() -> None:
    rng = np.random.default_rng(2)
    X = rng.random((96, 5)).astype(np.float32)
    y = X @ rng.normal(size=5)
    kw = dict(arch="mlp", arch_kwargs={"widths": [12, 8]}, batch_size=16, lr=1e-2,
              patience=None, device="cpu", val_fraction=0.0)
    init = NeuralRegressor(epochs=3, **kw).fit(X, y).state_tensors()
    y2 = 3.0 * y + 2.0  # the same features serve, the output must rescale
    mae = {}
    for probe in (False, True):  # no fine-tuning epochs: only the probe (if any) acts
        est = NeuralRegressor(epochs=0, probe_head=probe, **kw).fit(X, y2, init=init)
        mae[probe] = float(np.abs(est.predict(X) - y2).mean())
    new = est.state_tensors()
    linear = sorted(k for k in init if k.startswith("net.") and k.endswith(".weight")
                    and init[k].ndim == 2)
    for k in linear[:-1]:
        assert torch.equal(new[k], init[k])  # the body is untouched by the probe
    assert not torch.equal(new[linear[-1]], init[linear[-1]])
    assert mae[True] < 0.5 * mae[False]
    assert est.probe_["l1_after"] < est.probe_["l1_before"]
    # the probe is followed by ordinary fine-tuning of every layer
    both = NeuralRegressor(epochs=2, probe_head=True, **kw).fit(X, y2, init=init)
    assert not torch.equal(both.state_tensors()[linear[0]], init[linear[0]])
    with pytest.raises(MatdiscoError, match="probe_head=True needs"):
        NeuralRegressor(epochs=1, probe_head=True, **kw).fit(X, y)


def test_no_validation_rows_runs_the_whole_schedule() -> None:
    x, y = _toy(200)
    # a noisy training loss (dropout 0.5, high lr) would exhaust a patience of 1 at once
    kw = dict(arch="mlp", arch_kwargs={"widths": [32], "dropout": 0.5}, epochs=12,
              batch_size=32, lr=0.05, patience=1, progress=False, device="cpu")
    full = NeuralRegressor(val_fraction=0.0, **kw).fit(x.numpy(), y.numpy())
    assert len(full.history_) == 12
    held = NeuralRegressor(val_fraction=0.2, **kw).fit(x.numpy(), y.numpy())
    assert len(held.history_) < 12  # with validation rows, patience still applies


def test_auxiliary_fidelity_rows_train_a_second_head_that_is_dropped() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=6)
    X = rng.random((48, 6)).astype(np.float32)  # few target rows ...
    Xa = rng.random((400, 6)).astype(np.float32)  # ... many rows of the other fidelity
    y_lo = lambda a: a @ w  # noqa: E731  the cheap fidelity
    y, ya = y_lo(X) + 0.5 * X[:, 0] + 0.3, y_lo(Xa)  # the target: a smooth correction
    kw = dict(arch="mlp", arch_kwargs={"widths": [16, 16]}, batch_size=16, lr=1e-2,
              patience=None, device="cpu", val_fraction=0.0, progress=False)
    init = NeuralRegressor(epochs=20, **kw).fit(Xa, ya).state_tensors()
    plain = NeuralRegressor(epochs=4, **kw).fit(X, y, init=init)
    multi = NeuralRegressor(epochs=4, aux_weight=1.0, **kw).fit(X, y, init=init, X_aux=Xa,
                                                               y_aux=ya)
    # the fitted network is the original architecture: the auxiliary head is gone
    assert set(multi.state_tensors()) == set(plain.state_tensors())
    assert [type(m) for m in multi.network_.modules()] == \
        [type(m) for m in plain.network_.modules()]
    assert multi.predict(X).shape == (48,)
    h = multi.history_
    # every epoch sees both fidelities, and each head's loss is logged apart
    assert all("train_target_loss" in e and "train_aux_loss" in e for e in h)
    assert h[-1]["train_target_loss"] < h[0]["train_target_loss"]
    # the target head fits the target, not the auxiliary fidelity
    assert np.abs(multi.predict(X) - y).mean() < np.abs(multi.predict(X) - y_lo(X)).mean()
    # with zero weight the auxiliary rows do not change the target head's training data
    zero = NeuralRegressor(epochs=2, aux_weight=0.0, **kw).fit(X, y, init=init, X_aux=Xa,
                                                              y_aux=ya)
    assert zero.history_[-1]["train_fit_loss"] < zero.history_[-1]["train_target_loss"]
    with pytest.raises(MatdiscoError, match="aux_weight"):
        NeuralRegressor(epochs=1, aux_weight=-1.0, **kw).fit(X, y, X_aux=Xa, y_aux=ya)
    with pytest.raises(MatdiscoError, match="auxiliary-fidelity rows need"):
        NeuralRegressor(epochs=1, **kw).fit(X, y, X_aux=Xa[:, :3], y_aux=ya)
    with pytest.raises(MatdiscoError, match="auxiliary-fidelity rows need"):
        NeuralRegressor(epochs=1, **kw).fit(X, y, X_aux=Xa, y_aux=None)


def test_bad_device_and_forest_settings_raise_clear_errors() -> None:
    with pytest.raises(MatdiscoError, match="device='tpu' is not a device"):
        NeuralRegressor(device="tpu").trainer_config()
    X, y = np.random.default_rng(0).random((10, 3)), np.arange(10.0)
    for kwargs, match in ((dict(n_estimators=0), "n_estimators=0"),
                          (dict(min_samples_leaf=0), "min_samples_leaf=0"),
                          (dict(max_features=0.0), "max_features=0.0")):
        with pytest.raises(MatdiscoError, match=match):
            ForestRegressor(**kwargs).fit(X, y)
    assert ForestRegressor(n_estimators=2, max_features="sqrt", n_jobs=1).fit(X, y)


def test_weights_with_nan_values_are_refused() -> None:
    x, y = _toy(32)
    est = NeuralRegressor(arch="mlp", arch_kwargs={"widths": [8]}, epochs=1, batch_size=16,
                          device="cpu").fit(x.numpy(), y.numpy())
    for key in ("scaler.y", "net." + next(iter(est.network_.state_dict()))):
        bad = est.state_tensors()
        bad[key] = bad[key].clone().fill_(float("nan"))  # predictions would all be NaN
        with pytest.raises(MatdiscoError, match=f"tensor '{key}' holds NaN"):
            NeuralRegressor(arch="mlp", arch_kwargs={"widths": [8]}).load_state_tensors(bad)
    f = ForestRegressor(n_estimators=2, n_jobs=1).fit(x.numpy(), y.numpy())
    bad = f.state_tensors()
    bad["rf.value"] = bad["rf.value"].clone().fill_(float("inf"))
    with pytest.raises(MatdiscoError, match="corrupt"):
        ForestRegressor().load_state_tensors(bad)
