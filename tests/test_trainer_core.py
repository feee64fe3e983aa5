"""The shared Trainer: exact resume per schedule, early stopping, refusals, validation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from matdisco import MatdiscoError
from matdisco.training import Trainer, TrainerConfig, resolve_device, set_seed

_TIMING = ("seconds", "samples_per_s")


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.randn(4, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def _net(dropout: float = 0.2) -> nn.Module:
    set_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(dropout), nn.ReLU(), nn.Linear(8, 1))


def _cfg(**kw: Any) -> TrainerConfig:
    base: dict[str, Any] = dict(epochs=6, batch_size=16, lr=0.05, progress=False,
                                device="cpu", patience=None)
    base.update(kw)
    return TrainerConfig(**base)


def _fit(run_dir: Path | None, cfg: TrainerConfig, stop_at: int | None = None,
         resume: bool = False, val_sign: float = 1.0, net: nn.Module | None = None,
         n: int = 64) -> Trainer:
    """Fit the small net; raise KeyboardInterrupt after epoch ``stop_at``."""
    x, y = _data(n)

    def boom(tr: Trainer, logs: dict) -> None:
        if tr.epoch == stop_at:
            raise KeyboardInterrupt

    tr = Trainer(net if net is not None else _net(), cfg, run_dir=run_dir, callbacks=[boom])
    tr.fit((x, y), (x[:16], val_sign * y[:16]), resume=resume)
    return tr


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _strip(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in _TIMING} for h in history]


def _interrupted_then_resumed(tmp_path: Path, cfg: TrainerConfig, stop_at: int,
                              **kw: Any) -> tuple[Trainer, Trainer]:
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path / "a", cfg, stop_at=stop_at, **kw)
    resumed = _fit(tmp_path / "a", cfg, resume=True, **kw)
    straight = _fit(tmp_path / "b", cfg, **kw)
    return resumed, straight


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle", "plateau", "step"])
@pytest.mark.parametrize("extra", [{}, {"ema": 0.9, "dropout_scale": 0.0},
                                   {"optimizer": "sgd", "grad_clip": 0.5, "patience": 3}])
def test_resume_is_bit_exact(tmp_path: Path, scheduler: str, extra: dict) -> None:
    cfg = _cfg(scheduler=scheduler, plateau_patience=0, step_epochs=2, **extra)
    resumed, straight = _interrupted_then_resumed(tmp_path, cfg, stop_at=4)
    assert 0 < resumed.resumed_epochs < 6 and straight.resumed_epochs == 0
    assert _same_weights(resumed.model, straight.model)
    assert _strip(resumed.history) == _strip(straight.history)
    assert len(straight.history) == 6
    assert (resumed.best_epoch, resumed.best_score) == (straight.best_epoch, straight.best_score)
    # the history file holds the same records
    lines = (tmp_path / "a" / "history.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_plateau_state_survives_resume(tmp_path: Path) -> None:
    # an unlearnable validation target: the plateau schedule halves the rate repeatedly,
    # also after the interruption
    cfg = _cfg(epochs=8, scheduler="plateau", plateau_patience=0, plateau_factor=0.5,
               optimizer="sgd")
    resumed, straight = _interrupted_then_resumed(tmp_path, cfg, stop_at=3, val_sign=-1.0)
    lrs = [h["lr"] for h in straight.history]
    assert lrs[-1] < lrs[3] < lrs[0]
    assert [h["lr"] for h in resumed.history] == lrs
    assert _same_weights(resumed.model, straight.model)


def test_resume_with_checkpoint_every_two(tmp_path: Path) -> None:
    cfg = _cfg(checkpoint_every=2)
    resumed, straight = _interrupted_then_resumed(tmp_path, cfg, stop_at=3)
    assert resumed.resumed_epochs == 2
    assert _same_weights(resumed.model, straight.model)
    assert _strip(resumed.history) == _strip(straight.history)


def test_early_stopping_restores_best_and_resumes(tmp_path: Path) -> None:
    x, y = _data()
    cfg = _cfg(epochs=40, scheduler="none", optimizer="sgd", patience=2)
    resumed, straight = _interrupted_then_resumed(tmp_path, cfg, stop_at=1, val_sign=-1.0)
    for tr in (resumed, straight):
        assert tr.stopped_early and len(tr.history) < 40
        losses = [h["val_loss"] for h in tr.history]
        assert tr.best_epoch == 1 + losses.index(min(losses))
        assert tr.best_score == min(losses)
        assert len(tr.history) == tr.best_epoch + 2  # stopped after 2 epochs of patience
        assert tr.evaluate((x[:16], -y[:16]))["loss"] == pytest.approx(tr.best_score)
    assert _same_weights(resumed.model, straight.model)
    # resuming a finished run only gives back the finished result
    again = _fit(tmp_path / "b", cfg, resume=True, val_sign=-1.0)
    assert again.resumed_epochs == len(straight.history)
    assert _same_weights(again.model, straight.model)


def test_finished_resume_returns_the_averaged_weights(tmp_path: Path) -> None:
    cfg = _cfg(epochs=3, ema=0.9, dropout_scale=0.0, restore_best=False)
    done = _fit(tmp_path, cfg)
    again = _fit(tmp_path, cfg, resume=True)
    assert again.resumed_epochs == 3
    assert _same_weights(again.model, done.model)


def test_resume_refuses_another_model_config_or_data(tmp_path: Path) -> None:
    cfg = _cfg()
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, cfg, stop_at=2)
    set_seed(0)
    with pytest.raises(MatdiscoError, match="does not match this model"):
        _fit(tmp_path, cfg, resume=True,
             net=nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1)))
    with pytest.raises(MatdiscoError, match=r"other settings \(lr: 0.05 in the checkpoint"):
        _fit(tmp_path, _cfg(lr=0.1), resume=True)
    with pytest.raises(MatdiscoError, match="optimizer: 'adamw' in the checkpoint, 'sgd'"):
        _fit(tmp_path, _cfg(optimizer="sgd"), resume=True)
    with pytest.raises(MatdiscoError, match="4 batches per epoch.* now gives 2"):
        _fit(tmp_path, cfg, resume=True, n=32)
    frozen = _net()
    frozen[0].bias.requires_grad_(False)
    with pytest.raises(MatdiscoError, match="optimizer state does not match"):
        _fit(tmp_path, cfg, resume=True, net=frozen)
    # bookkeeping settings may differ: progress, patience, evaluation batch size
    tr = _fit(tmp_path, _cfg(patience=50, eval_batch_size=7), resume=True)
    assert tr.resumed_epochs == 1 and len(tr.history) == 6  # epoch 2 was interrupted


def test_non_finite_losses_stop_with_a_clear_error() -> None:
    x, y = _data()
    bad = y.clone()
    bad[3] = float("nan")
    with pytest.raises(MatdiscoError, match="non-finite training loss at epoch 1"):
        Trainer(_net(), _cfg()).fit((x, bad))
    with pytest.raises(MatdiscoError, match="non-finite val loss at epoch 1"):
        Trainer(_net(), _cfg(patience=2)).fit((x, y), (x[:16], bad[:16]))


def test_gradient_clipping_bounds_the_step() -> None:
    x, y = _data()
    y = 1000 * y  # huge gradients
    steps = {}
    for clip in (None, 1e-3):
        net = _net(0.0)
        before = torch.cat([p.detach().flatten().clone() for p in net.parameters()])
        cfg = _cfg(epochs=1, batch_size=64, optimizer="sgd", scheduler="none", lr=0.1,
                   grad_clip=clip)
        Trainer(net, cfg).fit((x, y))
        after = torch.cat([p.detach().flatten() for p in net.parameters()])
        steps[clip] = float((after - before).norm())
    # one nesterov-SGD step from zero momentum moves by lr * 1.9 * |g| at most
    assert steps[1e-3] <= 0.1 * 1.9 * 1e-3 * (1 + 1e-5)
    assert steps[None] > 100 * steps[1e-3]


@pytest.mark.parametrize("kw, field", [
    ({"epochs": -1}, "epochs"), ({"lr": 0.0}, "lr"), ({"lr": -1e-3}, "lr"),
    ({"batch_size": 0}, "batch_size"), ({"eval_batch_size": 0}, "eval_batch_size"),
    ({"scheduler": "cosin"}, "scheduler"), ({"optimizer": "adamx"}, "optimizer"),
    ({"plateau_factor": 2.0}, "plateau_factor"), ({"step_epochs": 0}, "step_epochs"),
    ({"min_lr_ratio": 1.5}, "min_lr_ratio"), ({"min_delta": -1.0}, "min_delta"),
    ({"checkpoint_every": -1}, "checkpoint_every"), ({"ema": 1.0}, "ema"),
    ({"grad_clip": 0.0}, "grad_clip"), ({"patience": -1}, "patience"),
    ({"plateau_patience": -1}, "plateau_patience"),
])
def test_config_validation_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(MatdiscoError, match=f"trainer setting {field}="):
        TrainerConfig(**kw)


def test_device_errors_are_clear() -> None:
    with pytest.raises(MatdiscoError, match="device='gpu' is not a device"):
        resolve_device("gpu")
    with pytest.raises(MatdiscoError, match="is not a device"):
        Trainer(_net(), _cfg(device="tpu"))
    if not torch.cuda.is_available():
        with pytest.raises(MatdiscoError, match="CUDA is not available"):
            Trainer(_net(), _cfg(device="cuda"))
    else:
        with pytest.raises(MatdiscoError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    assert resolve_device("cpu") == torch.device("cpu")


def test_empty_data_is_refused_and_big_batches_work() -> None:
    x, y = _data()
    with pytest.raises(MatdiscoError, match="validation data is empty"):
        Trainer(_net(), _cfg()).fit((x, y), (x[:0], y[:0]))
    with pytest.raises(MatdiscoError, match="training data is empty"):
        Trainer(_net(), _cfg()).fit((x[:0], y[:0]))
    with pytest.raises(MatdiscoError, match="no rows to evaluate"):
        Trainer(_net(), _cfg()).evaluate((x[:0], y[:0]))
    hist = Trainer(_net(), _cfg(epochs=2, batch_size=1000)).fit((x, y), (x[:16], y[:16]))
    assert len(hist) == 2 and hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_evaluate_before_fit() -> None:
    x, y = _data()
    net = _net()
    loss = Trainer(net, _cfg()).evaluate((x, y))["loss"]
    with torch.no_grad():
        assert loss == pytest.approx(float(nn.L1Loss()(net.eval()(x), y)))


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, b = _fit(None, _cfg(seed=3)), _fit(None, _cfg(seed=3))
    c = _fit(None, _cfg(seed=4))
    assert _same_weights(a.model, b.model)
    assert not _same_weights(a.model, c.model)


def test_a_second_fit_starts_afresh() -> None:
    x, y = _data()
    tr = Trainer(_net(), _cfg(epochs=3, patience=1))
    tr.fit((x, y), (x[:16], y[:16]))
    hist = tr.fit((x, y), (x[:16], y[:16] + 5))  # a far worse validation loss
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert math.isfinite(tr.best_score) and tr.best_score > 1
    assert 1 <= tr.best_epoch <= 3 and tr._best_state is not None


def test_patience_zero_stops_at_the_first_epoch_without_improvement() -> None:
    tr = _fit(None, _cfg(epochs=6, patience=0, scheduler="none", lr=0.01))
    losses = [h["val_loss"] for h in tr.history]
    assert len(losses) > 1  # an improving first epoch does not stop the run
    improved = [losses[i] < min(losses[:i], default=math.inf) for i in range(len(losses))]
    assert all(improved[:-1])
    assert tr.stopped_early == (not improved[-1]) and (len(losses) == 6 or not improved[-1])
