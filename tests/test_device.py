"""The device layer on the CPU: requests resolve or fail naming the flag, RNG states round-trip, switches restore."""

from __future__ import annotations

import os

import pytest
import torch

from smhsearch import device as dev
from smhsearch.models import create_model

NO_CUDA = not torch.cuda.is_available()


def test_cpu_and_auto_resolve():
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert dev.resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert dev.resolve_device(None) == dev.resolve_device("auto")
    assert dev.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(not NO_CUDA, reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("request_", ["cuda", "cuda:1", "CUDA"])
def test_cuda_without_cuda_names_the_flag(request_):
    with pytest.raises(ValueError, match=rf"--device='{request_.lower()}' asks for a GPU, but CUDA is not available here "
                                         r"\(torch .*0 GPUs visible.*\); use --device=cpu or auto"):
        dev.resolve_device(request_, flag="--device")


def test_unknown_request_lists_the_allowed():
    with pytest.raises(ValueError, match=r"device='gpu' is not a device; allowed: auto, cpu, cuda, cuda:N or xla"):
        dev.resolve_device("gpu")


def test_xla_without_torch_xla_says_what_to_install():
    try:
        import torch_xla  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"--device='xla' needs PyTorch/XLA \(pip install torch_xla\)"):
            dev.resolve_device("xla", flag="--device")
    else:  # pragma: no cover - only where torch_xla is installed
        pytest.skip("torch_xla is installed")


def test_trial_device_follows_gpus_per_trial():
    assert dev.trial_device(0) == torch.device("cpu")
    if NO_CUDA:
        with pytest.raises(ValueError, match=r"resources.gpus_per_trial=0.5 asks for a GPU, but this worker sees none .*"
                                             r"set resources.gpus_per_trial: 0 to train on the CPU"):
            dev.trial_device(0.5)
    else:
        assert dev.trial_device(0.5).type == "cuda"


def test_memory_fraction_leaves_room_for_each_context():
    total = 80 * 2**30
    assert dev.memory_fraction_for(1, total) is None and dev.memory_fraction_for(2, total) is None
    fractions = {k: dev.memory_fraction_for(1 / k, total) for k in (2, 4, 8)}
    for k, f in fractions.items():  # k trials' caps plus their contexts fit in the GPU
        assert k * (f * total + dev.CONTEXT_BYTES) == pytest.approx(total)
    assert dev.memory_fraction_for(0.001, total) == 0.01  # never a zero cap
    assert dev.share_gpu(torch.device("cpu"), 0.5) is None


def test_model_device():
    assert dev.model_device(create_model("mlp", hidden=[4])) == torch.device("cpu")
    assert dev.model_device(torch.nn.ReLU()) == torch.device("cpu")
    m = torch.nn.Linear(2, 2)
    m.register_buffer("elsewhere", torch.zeros(1, device="meta"))
    with pytest.raises(ValueError, match=r"several devices \(cpu, meta\)"):
        dev.model_device(m)


def test_rng_state_round_trips_as_cpu_bytes():
    be = dev.backend("cpu")
    torch.manual_seed(3)
    state = be.rng_state()
    assert all(t.device.type == "cpu" and t.dtype == torch.uint8 for t in state.values())
    first = torch.rand(5)
    torch.rand(7)
    be.set_rng_state(state)
    assert torch.equal(torch.rand(5), first)
    be.set_rng_state({**state, "cuda": torch.zeros(16, dtype=torch.uint8)})  # a GPU checkpoint resumed on the CPU: CPU part only
    assert torch.equal(torch.rand(5), first)


def test_autocast_dtype_on_the_cpu():
    be = dev.backend("cpu")
    assert be.autocast_dtype("auto") is None and be.autocast_dtype("off") is None
    assert be.autocast_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="amp must be one of"):
        be.autocast_dtype("fp16")  # type: ignore[arg-type]


def test_determinism_switches_and_restores():
    be = dev.backend("cpu")
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    with be.determinism(True):
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    assert (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    ) == before
    with be.determinism(False):
        assert not torch.backends.cudnn.deterministic and not torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark  # autotuning is a CUDA matter
    assert (
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    ) == before


def test_time_steps_and_memory():
    be = dev.backend("cpu")
    calls = []
    times = be.time_steps(lambda: calls.append(torch.ones(64, 64) @ torch.ones(64, 64)), warmup=2, repeats=4)
    assert len(calls) == 6 and len(times) == 4 and all(t > 0 for t in times)
    be.reset_peak_memory()
    assert be.peak_memory() is None and be.set_memory_fraction(0.5) is False and not be.pin_memory
    assert "threads" in dev.device_name("cpu")
    with pytest.raises(ValueError, match="device type 'meta' is not supported; allowed: cpu, cuda, xla"):
        dev.backend("meta")
