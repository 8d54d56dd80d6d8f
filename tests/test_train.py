"""The trainer on the embedded default: learns, is deterministic, resumes exactly, stops, diverges clearly."""

from __future__ import annotations

import math

import pytest
import torch

import smhsearch
from smhsearch import SMH, Prune
from smhsearch.data import load_dataset
from smhsearch.train import StopTraining, TrainConfig, TrainingDiverged, lr_factor, param_groups, train

FAST = TrainConfig(epochs=1, batch_size=64, lr=0.05, eval_batch_size=2000)


@pytest.fixture(scope="module")
def small():
    return load_dataset("fashion-mnist-small")


def tiny_mlp():
    """Small enough for an epoch in about a second on 2 cores; dropout exercises the global RNG."""
    torch.manual_seed(0)
    return smhsearch.create_model("mlp", hidden=[64], dropout=0.1)


def tiny_cnn():
    torch.manual_seed(0)
    return smhsearch.create_model("resnet8", in_channels=1, widths=(8, 8, 16))


def test_one_epoch_beats_chance_by_a_margin(small):
    r = train(tiny_mlp(), small, FAST, progress=False)
    assert r.test_acc > 0.70  # chance is 0.10; measured 0.83 at seed 0
    assert r.epochs_run == 1 and len(r.history) == 1 and r.history[0].val_acc > 0.70


def test_smh_model_trains_too(small):
    m = smhsearch.compress(tiny_mlp(), SMH(budget="30%", scale="learnable"))
    r = train(m, small, TrainConfig(epochs=1, batch_size=64, lr=0.05), progress=False)  # its own rates, no override
    assert r.test_acc > 0.65  # measured 0.81


def test_the_trainer_applies_the_methods_rates(small):
    """Undoing SMH's derived multiplier (the plain rate on U and V, as before the rule) trains far worse."""
    m = smhsearch.compress(tiny_mlp(), SMH(budget="30%"))
    undo = 1.0 / m.variable_rates("sgd")["U"].lr_mult
    r = train(m, small, TrainConfig(epochs=1, batch_size=64, lr=0.05, variable_lr_mult=undo), progress=False)
    assert r.test_acc < 0.65  # 0.82 at the derived rates (test_smh_model_trains_too)


def test_same_seed_same_weights(small):
    a, b = tiny_mlp(), tiny_mlp()
    train(a, small, FAST, progress=False)
    train(b, small, FAST, progress=False)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def test_resume_reproduces_the_uninterrupted_run(small, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    straight = tiny_mlp()
    r_straight = train(straight, small, cfg, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    def crash(metrics):  # the process dies after epoch 1, once its checkpoint is written
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_mlp(), small, cfg, checkpoint=ckpt, callback=crash, progress=False)
    assert ckpt.is_file()
    resumed = tiny_mlp()  # a fresh process would build a fresh model
    r_resumed = train(resumed, small, cfg, checkpoint=ckpt, progress=False)
    for (n, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), n
    assert r_resumed.test_acc == r_straight.test_acc
    assert [h.val_acc for h in r_resumed.history] == [h.val_acc for h in r_straight.history]


def test_callback_stops_early(small):
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.05)
    seen = []
    r = train(tiny_mlp(), small, cfg, callback=lambda m: seen.append(m.epoch) or False, progress=False)
    assert seen == [1] and r.stopped_early and r.epochs_run == 1

    def stop_at_two(m):
        if m.epoch == 2:
            raise StopTraining

    r = train(tiny_mlp(), small, cfg, callback=stop_at_two, progress=False)
    assert r.stopped_early and r.epochs_run == 2


def test_nan_loss_raises_training_diverged(small):
    m = tiny_mlp()
    with torch.no_grad():
        m.net[-1].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 1 \(lr="):
        train(m, small, FAST, progress=False)


def test_pruning_reaches_its_budget_during_training(small):
    m = smhsearch.compress(tiny_mlp(), Prune(budget="30%", end=0.5))
    train(m, small, FAST, progress=False)
    total = sum(p.numel() for p in tiny_mlp().parameters())
    assert m.describe()["level"] == 20
    assert m.stored_count() == int(0.3 * total)


def test_weight_decay_groups():
    m = smhsearch.compress(tiny_cnn(), SMH(budget="30%", scale="learnable"))
    groups = {g["name"]: g for g in param_groups(m, TrainConfig(weight_decay=1e-4, variable_lr_mult=3.0, lr=0.1))}
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    rate = m.variable_rates("sgd")["U"].lr_mult  # the method's own multiplier; the override multiplies it
    variables = groups["variables:U,V"]
    assert ids(variables) == {id(m.U), id(m.V)} and variables["lr"] == pytest.approx(0.1 * rate * 3.0)
    assert variables["weight_decay"] == pytest.approx(1e-4 / (2 * rate))  # U V shrinks as a dense weight would
    assert id(m.scale_gain) in ids(groups["no_decay"]) and groups["no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim == 1 for p in groups["no_decay"]["params"])  # BN and scales


def test_schedules():
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(0, 100, 0, "onecycle") == pytest.approx(1 / 25)
    assert lr_factor(30, 100, 0, "onecycle") == pytest.approx(1.0)
    assert lr_factor(50, 100, 0, "constant") == 1.0
    assert math.isclose(lr_factor(99, 100, 0, "cosine"), 0.5 * (1 + math.cos(math.pi * 0.99)))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"epochs": 0}, r"epochs >= 1 must hold, but got \(epochs=0\)"), ({"optimizer": "adam"}, "optimizer in"),
     ({"lr": -1.0}, "lr > 0"), ({"warmup_epochs": 20.0}, "warmup_epochs < epochs"), ({"schedule": "step"}, "schedule in"),
     ({"amp": "fp16"}, "amp in")],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)
