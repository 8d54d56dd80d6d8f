"""Every method on a CUDA device: equal outputs on CPU and GPU, and compact files across devices.
(Training, resume, throughput and sharing a GPU: test_gpu.py.)

Marked ``gpu``: deselected by default, run with ``pytest -m gpu`` (``make test-gpu``);
skipped with the reason where no CUDA device is visible.
"""

from __future__ import annotations

import pytest
import torch

import smhsearch
from smhsearch import SMH, HashedNets, LowRank, Prune

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
