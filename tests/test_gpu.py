"""The same promises on a CUDA device: training under bf16 autocast and channels_last, equal
outputs on CPU and GPU, compact files across devices, throughput synchronised.

Marked ``gpu``: deselected by default, run with ``pytest -m gpu`` (``make test-gpu``);
skipped with the reason where no CUDA device is visible.
"""

from __future__ import annotations

import math

import pytest
import torch

import smhsearch
from smhsearch import SMH, HashedNets, LowRank, Prune
from smhsearch.data import load_dataset
from smhsearch.train import TrainConfig, train

from .conftest import perturb, tiny

pytestmark = pytest.mark.gpu

CUDA = "cuda"


@pytest.mark.parametrize("config", [SMH(budget=0.5, scale="learnable"), HashedNets(budget=0.5, hashes=2), LowRank(budget=0.5),
                                    Prune(budget=0.5)], ids=lambda c: c.method)
def test_compressed_model_on_gpu_equals_cpu_and_round_trips(config, tmp_path):
    base, shape = tiny("resnet8")
    m = perturb(smhsearch.compress(base, config)).eval()
    x = torch.randn(4, *shape)
    with torch.no_grad():
        on_cpu = m(x)
        on_gpu = m.to(CUDA)(x.to(CUDA))  # float32 throughout: TF32 off by default for matmuls
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, rtol=1e-4, atol=1e-4)
    path = smhsearch.save_compact(m.cpu(), tmp_path / "m.safetensors")
    loaded = smhsearch.load_compact(path, device=CUDA)
    assert all(p.device.type == "cuda" for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x.to(CUDA)).cpu(), on_cpu, rtol=1e-4, atol=1e-4)


def test_training_on_gpu_uses_bf16_autocast_and_learns():
    data = load_dataset("fashion-mnist-small")
    torch.manual_seed(0)
    m = smhsearch.compress(smhsearch.create_model("resnet8", in_channels=1, widths=(8, 8, 16)), SMH(budget="30%"))
    r = train(m, data, TrainConfig(epochs=1, batch_size=128, lr=0.05, variable_lr_mult=10.0), device=CUDA, progress=False)
    assert r.device.startswith("cuda") and math.isfinite(r.history[0].train_loss)
    assert r.test_acc > 0.6  # chance is 0.10
    assert next(m.parameters()).device.type == "cuda"


def test_throughput_on_gpu_is_synchronised():
    base, shape = tiny("resnet8")
    t = smhsearch.measure.throughput(smhsearch.compress(base, SMH(budget=0.5)), shape, batch_size=64, device=CUDA,
                                     warmup=2, repeats=5, amp_dtype=torch.bfloat16, channels_last=True)
    assert len(t.steps_s) == 5 and all(s > 0 for s in t.steps_s) and t.samples_per_s > 0
