"""Every device path on a real GPU: bf16 and channels_last training, bit-for-bit resume, no host sync per step,
throughput on the device, export of a GPU-trained model, memory shares, and `smhsearch run` with half a GPU per trial.

Run with ``pytest -m gpu tests/test_gpu.py``; without CUDA every test skips and says why.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch

import smhsearch
from smhsearch import SMH, Prune, measure
from smhsearch.data import dataset_from_arrays, load_dataset
from smhsearch.device import backend, share_gpu
from smhsearch.export import export_model, load_trained, save_trained
from smhsearch.train import TrainConfig, evaluate, train

from .conftest import smhsearch_cli

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none is visible)")]

CUDA = torch.device("cuda")


def native_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def cifar_like(n: int = 1024):
    """Random uint8 images of CIFAR's shape with the crop-and-flip augmentation (its draws are on the GPU path too)."""
    g = torch.Generator().manual_seed(0)
    img = lambda m: torch.randint(0, 256, (m, 3, 32, 32), generator=g, dtype=torch.uint8).numpy()  # noqa: E731
    lab = lambda m: torch.randint(0, 10, (m,), generator=g).numpy()  # noqa: E731
    return dataset_from_arrays(
        "cifar-like", img(n), lab(n), img(n // 4), lab(n // 4), (0.5,) * 3, (0.25,) * 3, augment="crop_flip"
    )


def smh_resnet8(seed: int = 0):
    torch.manual_seed(seed)
    return smhsearch.compress(smhsearch.create_model("resnet8", widths=(16, 16, 32)), SMH(budget="30%", scale="learnable"))


def tiny_mlp():
    torch.manual_seed(0)
    return smhsearch.create_model("mlp", hidden=[64], dropout=0.1)  # dropout draws from the CUDA generator


def test_bf16_and_channels_last_training():
    m = smh_resnet8()
    seen = []
    conv = next(
        mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3) and mod.in_channels > 1
    )
    conv.register_forward_pre_hook(lambda mod, args: seen.append((mod.weight.is_contiguous(memory_format=torch.channels_last),
                                                                  args[0].is_contiguous(memory_format=torch.channels_last),
                                                                  torch.is_autocast_enabled("cuda"))))
    r = train(m, cifar_like(), TrainConfig(epochs=2, batch_size=128, lr=0.05, compile="off"), device="cuda", progress=False)
    assert r.device.startswith("cuda") and r.settings["channels_last"] is True
    assert r.settings["amp"] == ("bfloat16" if native_bf16() else "off")  # bf16 only where the GPU runs it natively
    assert seen and all(w and x for w, x, _ in seen)  # computed weights and inputs reach the conv in channels_last
    assert all(autocast is native_bf16() for _, _, autocast in seen)
    assert all(h.train_loss == h.train_loss for h in r.history)  # finite
    assert r.settings["peak_memory_bytes"] > 0
    assert next(m.parameters()).device.type == "cuda" and all(p.is_contiguous() for p in m.parameters())


@pytest.mark.parametrize("make", [tiny_mlp, smh_resnet8], ids=["mlp-dropout", "smh-resnet8"])
def test_resume_is_bit_for_bit_with_determinism(make, tmp_path):
    data = load_dataset("fashion-mnist-small") if make is tiny_mlp else cifar_like()
    cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, compile="off", deterministic=True)
    straight = make()
    r_straight = train(straight, data, cfg, device="cuda", progress=False)
    ckpt = tmp_path / "ckpt.pt"

    def crash(metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(make(), data, cfg, device="cuda", checkpoint=ckpt, callback=crash, progress=False)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(state["rng"]) == {"cpu", "cuda"}  # the CUDA generator is saved too
    resumed = make()
    r_resumed = train(resumed, data, cfg, device="cuda", checkpoint=ckpt, progress=False)
    for (n, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), n
    assert [h.val_acc for h in r_resumed.history] == [h.val_acc for h in r_straight.history]


def count_syncs(method: str, n: int, every: int) -> tuple[int, int, list[str]]:
    """(host syncs, steps, their messages) of one epoch on ``n`` images, from CUDA's sync debug mode."""
    torch.manual_seed(0)
    base = smhsearch.create_model("resnet8", widths=(16, 16, 32))
    m = smhsearch.compress(base, SMH(budget="30%") if method == "smh" else Prune(budget="30%", end=0.5))
    data = cifar_like(n)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train(
                m,
                data,
                TrainConfig(epochs=1, batch_size=16, lr=0.05, compile="off", check_every=every),
                device="cuda",
                progress=False,
            )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message)[:100] for w in caught if "synchroniz" in str(w.message)]
    return len(syncs), len(data.train) // 16, syncs


@pytest.mark.parametrize("method", ["smh", "prune"])
def test_no_host_sync_per_step(method):
    """Four times the steps add only the divergence checks' syncs (one per ``check_every`` steps), not one a step."""
    count_syncs(method, 512, 64)  # warm-up: CUDA's own first-use syncs
    few, steps_few, _ = count_syncs(method, 1024, 64)
    many, steps_many, messages = count_syncs(method, 4096, 64)
    assert many - few <= (steps_many - steps_few) / 64 + 4, (few, many, steps_few, steps_many, sorted(set(messages)))


def test_throughput_and_latency_on_the_gpu():
    m = smh_resnet8()
    amp = torch.bfloat16 if native_bf16() else None
    infer = measure.throughput(
        m, (3, 32, 32), batch_size=64, device="cuda", amp_dtype=amp, channels_last=True, warmup=2, repeats=5
    )
    assert infer.device == torch.cuda.get_device_name() and infer.samples_per_s > 0 and 0 < infer.latency_s < infer.step_s * 64
    step = measure.throughput(m, (3, 32, 32), batch_size=64, mode="train", device="cuda", amp_dtype=amp, channels_last=True,
                              warmup=2, repeats=5)
    assert step.latency_s is None and step.samples_per_s > 0 and len(step.steps_s) == 5
    assert next(m.parameters()).device.type == "cpu"  # measured on a copy


def test_export_from_a_gpu_trained_model(tmp_path):
    m = smh_resnet8()
    train(m, cifar_like(), TrainConfig(epochs=1, batch_size=128, lr=0.05), device="cuda", progress=False)
    path = save_trained(m, tmp_path / "trial" / "model.safetensors")  # straight from the GPU, as a trial saves it
    x = torch.randn(4, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        reference = m(x.to(CUDA)).float().cpu()
        # cuDNN runs float32 convolutions in TF32 by default: the GPU's outputs differ from the CPU's at 1e-3
        torch.testing.assert_close(load_trained(path)(x), reference, rtol=2e-2, atol=2e-2)
    records = export_model(m, tmp_path / "out", (3, 32, 32), ("safetensors", "compact", "onnx"))
    assert all(r["ok"] for r in records), records


def test_a_cpu_model_stays_on_the_cpu_beside_a_gpu():
    m = tiny_mlp()
    data = load_dataset("fashion-mnist-small")
    r = train(m, data, TrainConfig(epochs=1, batch_size=256, lr=0.05), progress=False)
    assert r.device == "cpu" and next(m.parameters()).device.type == "cpu"
    assert evaluate(m, data.test, 500)[0] == r.test_acc and next(m.parameters()).device.type == "cpu"


def test_memory_share_caps_the_allocator():
    code = (
        "import torch; from smhsearch.device import share_gpu\n"
        "total = torch.cuda.get_device_properties(0).total_memory\n"
        "f = share_gpu(torch.device('cuda'), 0.25)\n"
        "a = torch.empty(int(0.8 * f * total), dtype=torch.uint8, device='cuda')\n"
        "try:\n    torch.empty(int(0.5 * total), dtype=torch.uint8, device='cuda')\n"
        "except torch.OutOfMemoryError:\n    print('capped', f)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("capped 0.2"), out.stdout + out.stderr
    assert share_gpu(CUDA, 1) is None  # a whole GPU: no cap
    assert backend(CUDA).pin_memory


def test_compile_auto_is_on_where_its_self_check_passes():
    m = smh_resnet8()
    r = train(m, cifar_like(), TrainConfig(epochs=2, batch_size=128, lr=0.05, compile="auto"), device="cuda", progress=False)
    assert r.settings["compile"].startswith(("on (compiled", "off: not faster")), r.settings["compile"]  # measured, both ways
    assert all(h.train_loss == h.train_loss for h in r.history)


SPACE = """name: halfgpu
dataset: {name: fashion-mnist-small}
train: {epochs: 1, batch_size: 256, lr: 0.05}
space: {arch: [resnet8], budget: ["25%"], method: [dense, smh], scale: [learnable]}
search: {sampler: grid}
scheduler: {kind: none}
resources: {cpus_per_trial: 1, gpus_per_trial: 0.5}
"""


def test_run_with_half_a_gpu_per_trial(tmp_path):
    (tmp_path / "halfgpu.yaml").write_text(SPACE)
    r = smhsearch_cli("run", str(tmp_path / "halfgpu.yaml"), "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "run" / "trials").glob("*/trial.json"))]
    assert len(records) == 2 and all(rec["status"] == "complete" for rec in records), records
    assert all(torch.cuda.get_device_name() in rec["device"] for rec in records)
