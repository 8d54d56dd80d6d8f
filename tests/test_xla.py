"""PyTorch/XLA: training compiles once and matches CPU eager (``make test-xla``: .venv-xla, ``PJRT_DEVICE=CPU``).

Each test needs torch_xla and skips, saying so, where it is not importable (the default
environment's newer torch has none). XLA's CPU backend compiles slowly (tens of seconds
per graph on a loaded 2-core machine), so the models are small MLPs and most tests are
also marked slow.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.xla


@pytest.fixture(scope="module")
def xla():
    """The XLA device, created before any CPU backward of this process: autograd sizes its per-device queues at its
    first backward, so an XLA device that appears later crashes its backward (pytorch/xla#4174)."""
    from smhsearch.device import resolve_device

    return resolve_device("xla")


def _data():
    from smhsearch.data import load_dataset

    return load_dataset("synthetic", n=64, size=8, in_channels=1)


def _model(kind: str, data):
    import smhsearch
    from smhsearch import SMH, HashedNets

    torch.manual_seed(0)
    base = smhsearch.create_model("mlp", hidden=[32], num_classes=data.num_classes, in_channels=data.in_channels,
                                  image_size=data.input_size)
    if kind == "dense":
        return base
    return smhsearch.compress(base, SMH(budget="25%") if kind == "smh" else HashedNets(budget="25%"))


def _compiles() -> int:
    import torch_xla.debug.metrics as met

    data = met.metric_data("CompileTime")
    return 0 if data is None else int(data[0])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["smh", "hashednets", "dense"])
def test_ten_steps_on_xla_match_cpu_eager(xla, kind):
    """10 training steps (one-step epochs: the whole 64-sample split is one batch) give the CPU's losses within 1e-3
    relative, and the model trained on XLA evaluates as the CPU one does."""
    from smhsearch.train import TrainConfig, train

    data = _data()
    cfg = TrainConfig(epochs=10, batch_size=len(data.train), amp="off", lr=0.1)
    losses = {}
    for device in ("cpu", xla):
        r = train(_model(kind, data), data, cfg, device=device, progress=False)
        losses[str(device)] = [h.train_loss for h in r.history]
        assert r.device == str(device)
    cpu, on_xla = losses["cpu"], losses[str(xla)]
    assert len(cpu) == len(on_xla) == 10
    assert cpu[-1] < cpu[0]  # it trained
    worst = max(abs(a - b) / abs(a) for a, b in zip(cpu, on_xla))
    assert worst < 1e-3, (cpu, on_xla)


@pytest.mark.slow
def test_compilations_stay_bounded_per_epoch(xla):
    """Eight steps an epoch: the first epoch compiles a few graphs (fewer than its steps: a graph per step index would
    be one each), and every later epoch at most 2, as torch_xla's metrics count them."""
    from smhsearch.train import TrainConfig, train

    data = _data()
    counts = [_compiles()]
    r = train(_model("smh", data), data, TrainConfig(epochs=3, batch_size=8, amp="off", check_every=3), device=xla,
              progress=False, callback=lambda m: counts.append(_compiles()))
    per_epoch = [b - a for a, b in zip(counts, counts[1:])]
    assert r.epochs_run == 3 and len(per_epoch) == 3
    assert per_epoch[0] < 8, per_epoch
    assert all(n <= 2 for n in per_epoch[1:]), per_epoch


TPU_SPACE = """name: tpu2
dataset: {name: fashion-mnist-small}
train: {epochs: 1, batch_size: 512, lr: 0.05}
space: {arch: [mlp], budget: ["30%"], method: [dense, smh]}
search: {sampler: grid}
scheduler: {kind: none}
resources: {cpus_per_trial: 1, tpus_per_trial: 1}
"""


@pytest.mark.slow
def test_two_trials_each_on_its_own_chip(tmp_path, monkeypatch):
    """A 2-trial `smhsearch run` joins a Ray that has 2 TPU chips (XLA's CPU backend stands in for them): Ray gives each
    trial its own chip (TPU_VISIBLE_CHIPS), each trains on an XLA device, and both finish."""
    import json

    import ray

    from .conftest import smhsearch_cli

    monkeypatch.setenv("PJRT_DEVICE", "CPU")  # Ray's workers inherit it: the "chips" are XLA's CPU backend
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    (tmp_path / "tpu2.yaml").write_text(TPU_SPACE)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",
        num_cpus=2,
        resources={"TPU": 2},
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    try:
        address = ray.get_runtime_context().gcs_address
        r = smhsearch_cli("run", str(tmp_path / "tpu2.yaml"), "--out", str(tmp_path / "run"), "--address", address, timeout=900)
    finally:
        ray.shutdown()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "trials").glob("*/trial.json"))]
    assert len(records) == 2 and all(rec["status"] == "complete" for rec in records), records
    assert sorted(rec["tpu_visible_chips"] for rec in records) == ["0", "1"], [rec.get("tpu_visible_chips") for rec in records]
    assert all(rec["device"].startswith("XLA CPU") for rec in records), [rec["device"] for rec in records]


def test_rng_state_round_trips_past_the_int64_range(xla):
    """XLA's RNG state is an unsigned 64-bit number: a state over 2**63 (as a run reaches) is kept and restored whole."""
    import torch_xla.core.xla_model as xm

    from smhsearch.device import backend

    be = backend(xla)
    xm.set_rng_state(2**64 - 5, xla)
    state = be.rng_state()
    assert all(t.device.type == "cpu" for t in state.values())
    xm.set_rng_state(7, xla)
    be.set_rng_state(state)
    assert int(xm.get_rng_state(xla)) == 2**64 - 5
