"""The trainer on the embedded default: learns, is deterministic, resumes exactly, stops, diverges clearly."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import smhsearch
from smhsearch import SMH, Prune
from smhsearch.data import load_dataset
from smhsearch.device import backend
from smhsearch._compile import _self_check
from smhsearch.train import StopTraining, TrainConfig, TrainingDiverged, evaluate, lr_factor, param_groups, train

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
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(state["rng"]) >= {"cpu"} and all(t.dtype == torch.uint8 and t.device.type == "cpu" for t in state["rng"].values())


def test_resume_reads_checkpoints_written_before_the_device_layer(small, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05)
    straight = tiny_mlp()
    train(straight, small, cfg, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train(
            tiny_mlp(), small, cfg, checkpoint=ckpt, callback=lambda m: (_ for _ in ()).throw(KeyboardInterrupt), progress=False
        )
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["torch_rng"] = state.pop("rng")["cpu"]  # the old layout: the CPU state alone, under another key
    torch.save(state, ckpt)
    resumed = tiny_mlp()
    train(resumed, small, cfg, checkpoint=ckpt, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))


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


class NaNAt(torch.nn.Module):
    """``tiny_mlp`` whose forward number ``at`` (1-based) returns NaN; counts its training forwards."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.net, self.at, self.calls = tiny_mlp(), at, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                out = out * float("nan")
        return out


@pytest.mark.parametrize("every", [5, 1000])
def test_a_nan_loss_is_caught_within_the_window_and_named_exactly(small, every):
    m = NaNAt(3)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, step 3 \(lr=0.05; found checking steps 1-"):
        train(m, small, TrainConfig(epochs=2, batch_size=64, lr=0.05, check_every=every), progress=False)
    steps_per_epoch = len(small.train) // 64
    assert m.calls == min(every, steps_per_epoch)  # checked at the window's end, or at the epoch's end, not later


def test_train_stays_on_the_models_device_unless_asked(small):
    m = tiny_mlp()
    r = train(m, small, FAST, progress=False)
    assert r.device == "cpu" and next(m.parameters()).device.type == "cpu"
    assert r.settings["amp"] == "off" and r.settings["compile"] == "off" and r.settings["deterministic"] is True
    assert "threads" in r.settings["device_name"]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device='cuda' asks for a GPU, but CUDA is not available"):
            train(tiny_mlp(), small, FAST, device="cuda", progress=False)
    acc, loss = evaluate(m, small.test, 500)
    assert acc == r.test_acc and loss == pytest.approx(r.test_loss)


def test_channels_last_training_on_the_cpu():
    data = load_dataset("synthetic", n=512, in_channels=1, size=16)
    runs = {}
    for channels_last in (False, True):
        m = smhsearch.compress(tiny_cnn(), SMH(budget="30%", scale="learnable"))
        seen = []
        conv = next(mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3)
                    and mod.in_channels > 1)  # a 3x3 weight with one input channel is both layouts at once
        conv.register_forward_pre_hook(lambda mod, args: seen.append(mod.weight.is_contiguous(memory_format=torch.channels_last)))
        r = train(m, data, TrainConfig(epochs=2, batch_size=64, lr=0.05, channels_last=channels_last), progress=False)
        runs[channels_last] = (r, seen, m)
        assert r.settings["channels_last"] is channels_last and seen and all(w is channels_last for w in seen)
        assert m.memory_format == torch.contiguous_format  # the caller gets the standard layout back
        assert all(p.is_contiguous() for p in m.parameters())
    (a, _, ma), (b, _, mb) = runs[False], runs[True]
    assert [h.train_loss for h in b.history] == pytest.approx([h.train_loss for h in a.history], rel=1e-4)
    for p, q in zip(ma.parameters(), mb.parameters()):  # the same training, up to the kernels' rounding
        assert torch.allclose(p, q, atol=1e-4)


def test_bf16_autocast_on_the_cpu(small):
    r = train(tiny_mlp(), small, TrainConfig(epochs=1, batch_size=64, lr=0.05, amp="bf16"), progress=False)
    assert r.settings["amp"] == "bfloat16" and r.test_acc > 0.7


def test_compile_self_check_leaves_no_trace_and_refuses_a_wrong_graph():
    m = smhsearch.compress(tiny_cnn(), SMH(budget="30%"))
    m.train()
    x = torch.randn(8, 1, 28, 28)
    be = backend("cpu")
    before = {k: b.clone() for k, b in m.named_buffers()}
    rng = torch.get_rng_state()
    assert _self_check(m, torch.compile(m, backend="eager"), be, None, x) == "on"  # dynamo's graphs, run without inductor
    assert all(torch.equal(b, before[k]) for k, b in m.named_buffers())  # batch-norm statistics untouched
    assert all(p.grad is None for p in m.parameters()) and torch.equal(torch.get_rng_state(), rng) and m.training
    assert _self_check(m, lambda t: m(t) + 1.0, be, None, x) == "off: compiled outputs differ from eager ones"

    def broken(t):
        raise RuntimeError("inductor fell over")

    assert _self_check(m, broken, be, None, x) == "off: RuntimeError: inductor fell over"
    assert all(torch.equal(b, before[k]) for k, b in m.named_buffers())


def test_compile_auto_keeps_the_compiled_step_only_where_it_measured_faster():
    import time

    m = smhsearch.compress(tiny_cnn(), SMH(budget="30%"))
    m.train()
    x, be = torch.randn(8, 1, 28, 28), backend("cpu")
    before = {k: b.clone() for k, b in m.named_buffers()}

    class Slow(torch.nn.Module):  # the same outputs, 20 ms later
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, t):
            time.sleep(0.02)
            return self.inner(t)

    slow = Slow(m)
    assert _self_check(m, slow, be, None, x, timed=True).startswith("off: not faster (compiled ")
    faster = _self_check(slow, m, be, None, x, timed=True)
    assert faster.startswith("on (compiled ") and faster.endswith(" ms a step)"), faster
    assert all(torch.equal(b, before[k]) for k, b in m.named_buffers()) and all(p.grad is None for p in m.parameters())


@pytest.mark.slow
def test_compile_on_trains_like_eager(small):
    """torch.compile on the CPU: minutes of compiling on 2 cores, hence slow."""
    eager, compiled = tiny_mlp(), tiny_mlp()
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.05)
    a = train(eager, small, cfg, progress=False)
    b = train(compiled, small, TrainConfig(**{**cfg.__dict__, "compile": "on"}), progress=False)
    assert b.settings["compile"] == "on" and abs(a.test_acc - b.test_acc) < 0.02


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
     ({"amp": "fp16"}, "amp in"), ({"compile": "yes"}, "compile in"), ({"check_every": 0}, "check_every >= 1"),
     ({"deterministic": "on"}, "deterministic is a bool")],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


# --- optimiser, label smoothing, gradient clipping: each checked where ignoring the option would show ---------------


class _WithIdleWeight(nn.Module):
    """The tiny MLP plus a weight matrix whose gradient is exactly zero at every step (it enters the output times 0)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mlp = smhsearch.create_model("mlp", hidden=[64])
        self.idle = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + 0.0 * self.idle.sum()


def test_adamw_trains_and_decays_decoupled(small):
    """AdamW: the loss falls, and a weight with zero gradient shrinks by exactly (1 - lr * wd) a step.

    Only decoupled decay does that: Adam with L2 would normalise wd * w into steps of about lr,
    SGD with momentum would shrink it faster, and no decay would leave it as it is.
    """
    lr, wd, bs = 1e-3, 0.05, 64
    model = _WithIdleWeight()
    idle0 = model.idle.detach().clone()
    _, loss0 = evaluate(model, small.val)
    cfg = TrainConfig(
        epochs=1, batch_size=bs, optimizer="adamw", lr=lr, weight_decay=wd, schedule="constant", eval_batch_size=2000
    )
    r = train(model, small, cfg, progress=False)
    assert r.history[0].val_loss < 0.6 * loss0 and r.test_acc > 0.7  # chance: 0.10, loss ln 10
    steps = len(small.train) // bs
    torch.testing.assert_close(model.idle.detach(), idle0 * (1 - lr * wd) ** steps, rtol=2e-5, atol=0)
    assert not torch.allclose(model.idle.detach(), idle0, rtol=1e-4, atol=0)  # the decay is visible at this tolerance


def _smoothed_loss(logits: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Label smoothing written out: (1 - eps) * NLL of the label + eps * mean over the K classes of their NLL."""
    logp = torch.log_softmax(logits.double(), 1)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    return float(((1 - eps) * nll + eps * -logp.mean(1)).mean())


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_label_smoothing_is_the_formula(small, eps):
    """With a learning rate too small to move the weights, the epoch's training loss is the loss at init."""
    torch.manual_seed(0)
    model = smhsearch.create_model("mlp", hidden=[32])
    with torch.no_grad():
        model.net[-1].weight.mul_(20.0)  # confident logits: near uniform ones make smoothing almost a no-op
        x, y = next(small.train.batches(len(small.train)))
        logits = model(x)
    cfg = TrainConfig(epochs=1, batch_size=80, lr=1e-12, momentum=0.0, weight_decay=0.0, schedule="constant", label_smoothing=eps)
    assert len(small.train) % cfg.batch_size == 0  # every sample is seen once
    r = train(model, small, cfg, progress=False)
    assert r.history[0].train_loss == pytest.approx(_smoothed_loss(logits, y, eps), rel=1e-4)
    assert abs(_smoothed_loss(logits, y, 0.3) - _smoothed_loss(logits, y, 0.0)) > 1e-2  # so ignoring eps would fail


@pytest.mark.parametrize("clip", [None, 0.01])
def test_grad_clipping_bounds_the_step(clip):
    """One plain SGD step (lr 1, no momentum, no decay) moves the weights by the gradient it used:
    its norm is the clip bound when clipping, the raw gradient's norm when not, in the raw gradient's direction."""
    data = load_dataset("synthetic", n=48, num_classes=3, in_channels=1, size=8)
    torch.manual_seed(0)
    model = smhsearch.create_model("mlp", num_classes=3, image_size=8, hidden=[16])
    before = [p.detach().clone() for p in model.parameters()]
    x, y = next(data.train.batches(len(data.train)))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    raw = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    assert raw.norm() > 10 * 0.01
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1.0, momentum=0.0, weight_decay=0.0, schedule="constant", grad_clip=clip)
    train(model, data, cfg, progress=False)  # 48 samples, batch 64: exactly one step
    step = torch.cat([(b - p.detach()).reshape(-1) for b, p in zip(before, model.parameters())])
    expected = raw.norm() if clip is None else torch.tensor(clip)
    torch.testing.assert_close(step.norm(), expected, rtol=1e-4, atol=0)
    assert torch.nn.functional.cosine_similarity(step, raw, dim=0) > 0.9999
