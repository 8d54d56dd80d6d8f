"""Counts, FLOPs, throughput and the compact file, each against an independent count."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from torch import nn

import smhsearch
from smhsearch import SMH, measure
from smhsearch.models import create_model

from .conftest import UserNet, assert_same_state, perturb, tiny


def test_flops_closed_form():
    # fvcore counts one multiply-add as one flop
    assert measure.flops(create_model("mlp_1x1000"), (1, 28, 28)) == 784 * 1000 + 1000 * 10
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    assert measure.flops(conv, (3, 16, 16)) == 16 * 16 * 8 * 3 * 9


def test_attention_is_counted_on_both_of_torchs_paths():
    """fvcore counts no attention kernel. nn.MultiheadAttention's eval fast path (ViT-B/16: one fused op, projections
    included) would count zero for the whole block, and the SDPA path (3 heads of 32: not fast-path) its QK^T and AV."""
    import warnings

    from fvcore.nn import FlopCountAnalysis

    from smhsearch._fvcore import ATTENTION_HANDLES

    # torchvision documents 17.56 GFLOPS (multiply-adds) for ViT-B/16 at 224 px; without the handles: 11.29
    assert abs(measure.flops(create_model("vit_b_16"), (3, 224, 224)) / 17.56e9 - 1) < 0.005
    tiny = create_model("vit_cifar_tiny").eval()  # 64 patches + the class token, width 96, 4 layers
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(tiny, torch.zeros(1, 3, 32, 32)).set_op_handle(**ATTENTION_HANDLES)
        by_op, unsupported = analysis.by_operator(), analysis.unsupported_ops()
    assert by_op["scaled_dot_product_attention"] == 4 * 2 * 65 * 65 * 96  # QK^T and AV per layer
    assert not [op for op in unsupported if "attention" in op]


def test_flops_of_compressed_equal_base():
    base = create_model("resnet20")
    m = smhsearch.compress(base, SMH(budget="30%"))
    assert measure.flops(m, (3, 32, 32)) == measure.flops(base, (3, 32, 32)) > 40_000_000


def test_virtual_and_stored_counts():
    base = create_model("resnet20")
    m = smhsearch.compress(base, SMH(budget="30%", scope="conv"))
    assert measure.virtual_parameters(m) == sum(p.numel() for p in base.parameters())
    bn_and_fc = sum(p.numel() for mod in base.modules() if isinstance(mod, (nn.BatchNorm2d, nn.Linear)) for p in mod.parameters())
    assert measure.stored_parameters(m) == 2 * m.shape.n * m.shape.M + bn_and_fc
    assert measure.stored_parameters(base) == measure.virtual_parameters(base)


@pytest.mark.parametrize("mode", ["train", "infer"])
def test_throughput_is_measured_and_leaves_model_alone(mode):
    base, shape = tiny("resnet8")
    m = smhsearch.compress(base, SMH(budget=0.5))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    t = measure.throughput(m, shape, batch_size=4, mode=mode, warmup=1, repeats=3)
    assert len(t.steps_s) == 3 and all(s > 0 for s in t.steps_s)
    assert t.samples_per_s == pytest.approx(4 / t.step_s)
    assert "threads" in t.device  # the CPU measured, named
    assert (t.latency_s is not None and t.latency_s > 0) if mode == "infer" else t.latency_s is None
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(ValueError, match="mode must be"):
        measure.throughput(m, shape, mode="fast")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' asks for a GPU"):
            measure.throughput(m, shape, device="cuda")


def test_compact_file_holds_only_stored_variables(tmp_path):
    base = create_model("resnet20")
    m = smhsearch.compress(base, SMH(budget="25%", scale="learnable"))
    path = smhsearch.save_compact(m, tmp_path / "sub" / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        meta = f.metadata()
        stored_in_file = sum(f.get_tensor(k).numel() for k in keys)
    hashed = {t.name for t in m.targets}
    assert {"U", "V", "scale_init", "scale_gain"} <= keys
    assert not any(k.removeprefix("base.") in hashed for k in keys)
    buffers = sum(b.numel() for b in m.buffers())
    assert stored_in_file == measure.stored_parameters(m) + buffers
    assert json.loads(meta["method"]) == m.config.to_dict()
    assert json.loads(meta["arch"])["name"] == "resnet20"
    # bytes: float32 tensors plus a small header
    assert stored_in_file * 4 < measure.file_bytes(path) < stored_in_file * 4 + 64_000
    assert smhsearch.export.compact_bytes(m) == measure.file_bytes(path)
    assert measure.file_bytes(path) < 0.3 * 4 * sum(p.numel() for p in base.parameters())


def test_load_compact_of_user_model_needs_the_module(tmp_path):
    torch.manual_seed(0)
    m = perturb(smhsearch.compress(UserNet(), SMH(budget=0.5))).eval()
    path = smhsearch.save_compact(m, tmp_path / "u.safetensors")
    with pytest.raises(ValueError, match="pass that module"):
        smhsearch.load_compact(path)
    with pytest.raises(ValueError, match="does not fit the rebuilt model"):
        smhsearch.load_compact(path, model=UserNet(num_classes=7))
    torch.manual_seed(3)  # another initialisation of the same module: only the file can make it equal
    loaded = smhsearch.load_compact(path, model=UserNet())
    assert_same_state(loaded.state_dict(), m.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))


def test_bad_compact_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no compact file"):
        smhsearch.load_compact(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        smhsearch.load_compact(junk)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not an smhsearch compact file"):
        smhsearch.load_compact(other)


def test_save_is_atomic_and_a_plain_module_saves_as_the_dense_model(tmp_path):
    with pytest.raises(ValueError, match="not quantised yet"):  # refused before anything is written
        smhsearch.save_compact(smhsearch.compress(create_model("resnet8"), smhsearch.Dense(bits=8)), tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []
    plain = create_model("resnet8").eval()
    loaded = smhsearch.load_compact(smhsearch.save_compact(plain, tmp_path / "p.safetensors"))
    assert loaded.config == smhsearch.Dense()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, smhsearch; print([m for m in ('torchvision','fvcore','ray','optuna','plotly') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_final_stored_parameters_is_the_count_after_training():
    from smhsearch import Prune

    base = create_model("resnet20")
    pruned = smhsearch.compress(base, Prune(budget="10%"))
    assert measure.final_stored_parameters(pruned) == int(0.1 * 269_722)  # before any training
    assert measure.stored_parameters(pruned) == 269_722  # still dense now
    m = smhsearch.compress(base, SMH(budget="10%"))
    assert measure.final_stored_parameters(m) == measure.stored_parameters(m)
    assert measure.final_stored_parameters(base) == 269_722
