"""SMH's training and inference overhead against the uncompressed model, in one run.

For EfficientNet-B2 -> 5.3M and ResNet-32 -> 46K:
- train-step throughput of SMH and of the dense base model, interleaved over rounds
  (so drifting load hits both) and reported as a ratio;
- the matmul floor: the three U/V matmuls of a step (forward U @ V, backward G @ V^T
  and U^T @ G, 3 * 2 n^2 M FLOPs) timed on their own at the same shapes, dtype and
  device. SMH's extra time per step is compared with it (target <= 1.2x). That extra
  time is measured directly (every weight computed from U, V and the scales and a
  gradient pushed back), because the difference of two noisy step times is dominated
  by noise when the extra is small; the difference is reported too, as a cross-check;
- inference throughput of the materialised model against the dense base (target >= 0.98x).

    python benchmarks/smh_overhead.py                 # CPU: 64 px, batch 32 (B2); 32 px, batch 128 (R32)
    python benchmarks/smh_overhead.py --device cuda   # GPU: 224 px, batch 256, bf16 autocast, channels_last

Writes benchmarks/results/smh_overhead-<device>.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import smhsearch
from smhsearch import SMH, measure
from smhsearch.models import create_model

from _common import add_device_argument, device_name, parse_device, write_result  # type: ignore[import-not-found]


def matmul_floor(n: int, M: int, device: torch.device, dtype: torch.dtype, repeats: int) -> dict[str, float]:
    """Seconds for the three matmuls of one SMH step at these shapes, and the rate seen."""
    U = torch.randn(n, M, device=device, dtype=dtype)
    V = torch.randn(M, n, device=device, dtype=dtype)
    G = torch.randn(n, n, device=device, dtype=dtype)

    def three() -> None:
        U @ V
        G @ V.T
        U.T @ G

    three()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        three()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    return {"floor_s": t, "matmul_flops_per_step": 3 * 2 * n * n * M, "matmul_rate_flops_per_s": 3 * 2 * n * n * M / t}


def own_ops(m, device: torch.device, amp: torch.dtype | None, repeats: int) -> float:
    """Seconds for SMH's own work in a step: compute every weight from U, V and the
    scales, and push a gradient of the same shapes back into U, V (what the step adds)."""
    m = m.to(device).train()
    autocast = torch.autocast(device.type, dtype=amp, enabled=amp is not None)
    with autocast:
        grads = [torch.randn_like(w) for w in m.dense_weights()]

    def f() -> None:
        m.zero_grad(set_to_none=True)
        with autocast:
            w = m.dense_weights()
        torch.autograd.backward(w, grads)

    f()
    times = []
    for _ in range(max(5, repeats)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        f()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def iqr(xs: list[float]) -> list[float]:
    """25th and 75th percentiles: the noise a difference of medians must beat."""
    q = statistics.quantiles(xs, n=4)
    return [q[0], q[2]]


def case(arch: str, budget: str, side: int, batch: int, device: torch.device, amp: torch.dtype | None,
         rounds: int, repeats: int, num_classes: int) -> dict:
    torch.manual_seed(0)
    base = create_model(arch, num_classes=num_classes)
    m = smhsearch.compress(base, SMH(budget=budget))
    shape = (3, side, side)
    kw = dict(batch_size=batch, device=device, amp_dtype=amp, channels_last=device.type == "cuda", warmup=2, repeats=repeats)
    train_dense, train_smh, infer_dense, infer_mat = [], [], [], []
    dense_mat = smhsearch.materialize(m)
    for _ in range(rounds):  # interleaved: dense, smh, dense, smh, ... ; every timed step pooled
        train_dense += measure.throughput(base, shape, mode="train", **kw).steps_s
        train_smh += measure.throughput(m, shape, mode="train", **kw).steps_s
        infer_dense += measure.throughput(base, shape, mode="infer", **{**kw, "repeats": 3 * repeats}).steps_s
        infer_mat += measure.throughput(dense_mat, shape, mode="infer", **{**kw, "repeats": 3 * repeats}).steps_s
    td, ts = statistics.median(train_dense), statistics.median(train_smh)
    idn, im = statistics.median(infer_dense), statistics.median(infer_mat)
    sh = m.shape
    floor = matmul_floor(sh.n, sh.M, device, amp or torch.float32, repeats=max(5, repeats))
    own = own_ops(m, device, amp, repeats)
    extra = ts - td
    return {
        "arch": arch,
        "budget": budget,
        "input": list(shape),
        "batch": batch,
        "amp": str(amp).replace("torch.", "") if amp else "float32",
        "stored": m.stored_count(),
        "base": measure.stored_parameters(base),
        "n": sh.n,
        "M": sh.M,
        "train_step_s": {"dense": td, "smh": ts},
        "train_step_iqr_s": {"dense": iqr(train_dense), "smh": iqr(train_smh)},
        "infer_step_iqr_s": {"dense": iqr(infer_dense), "materialized": iqr(infer_mat)},
        "train_samples_per_s": {"dense": batch / td, "smh": batch / ts},
        "train_ratio_smh_over_dense": td / ts,
        "smh_extra_s_per_step_by_difference": extra,
        "smh_own_ops_s_per_step": own,
        **floor,
        "own_ops_over_floor": own / floor["floor_s"],
        "own_ops_share_of_smh_step": own / ts,
        "infer_samples_per_s": {"dense": batch / idn, "materialized": batch / im},
        "infer_ratio_materialized_over_dense": idn / im,
        "targets": {
            "own_ops_over_floor_max": 1.2,
            "infer_ratio_min": 0.98,
            **({"train_ratio_min_gpu_b2": 0.9} if device.type == "cuda" else {}),
        },
        "rounds": rounds,
        "repeats": repeats,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(p)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--only", choices=["b2", "r32"], help="run one case")
    a = p.parse_args()
    device = parse_device(a.device)
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    cases = {
        "b2": ("efficientnet_b2", "5.3M", 224 if gpu else 64, 256 if gpu else 32, 1000),
        "r32": ("resnet32", "46K", 32, 512 if gpu else 128, 10),
    }
    results = []
    for key, (arch, budget, side, batch, classes) in cases.items():
        if a.only and key != a.only:
            continue
        r = case(arch, budget, side, batch, device, torch.bfloat16 if gpu else None, a.rounds, a.repeats, classes)
        print(
            f"{arch} -> {budget}: train SMH/dense {r['train_ratio_smh_over_dense']:.3f}  "
            f"SMH's own ops {r['smh_own_ops_s_per_step'] * 1e3:.1f} ms vs floor {r['floor_s'] * 1e3:.1f} ms "
            f"({r['own_ops_over_floor']:.2f}x, {r['own_ops_share_of_smh_step']:.1%} of the step; "
            f"difference of medians {r['smh_extra_s_per_step_by_difference'] * 1e3:.0f} ms)  "
            f"infer materialized/dense {r['infer_ratio_materialized_over_dense']:.3f}",
            flush=True,
        )
        results.append(r)
    path = write_result("smh_overhead", device, {"device_full": device_name(device), "cases": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
