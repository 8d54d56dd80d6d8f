"""The SMH paper's Table 1 speed comparison, measured here.

EfficientNet-B2 compressed to 5.3M and 7.9M: training samples per second of the dense
model, SMH and HashedNets with 1, 2 and 10 hashes (one pool over all weights, sum
reducer, as the paper's baseline), all in one run with the methods interleaved per
round. The ratios are reported beside the paper's (TPU v3: SMH/1X = 1.5, SMH/2X = 2.2,
SMH/10X = 7.7). A gather is cheaper on CPUs and GPUs than on a TPU, so the figures here
need not match; the honest figure is the goal.

    python benchmarks/hashing_speed.py                 # CPU: 64 px, batch 16
    python benchmarks/hashing_speed.py --device cuda   # GPU: 224 px, batch 128, bf16

Writes benchmarks/results/hashing_speed-<device>.json.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import smhsearch
from smhsearch import SMH, HashedNets, measure
from smhsearch.models import create_model

from _common import add_device_argument, parse_device, write_result  # type: ignore[import-not-found]

PAPER = {"5.3M": {"smh": 6060, "hashed1": 4000, "hashed2": 2800, "hashed10": 790},
         "7.9M": {"smh": 6040, "hashed1": 3900, "hashed2": 2500, "hashed10": 760}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(p)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budgets", nargs="+", default=["5.3M", "7.9M"])
    a = p.parse_args()
    device = parse_device(a.device)
    gpu = device.type == "cuda"
    side, batch = (224, 128) if gpu else (64, 16)
    amp = torch.bfloat16 if gpu else None
    torch.manual_seed(0)
    base = create_model("efficientnet_b2")
    shape = (3, side, side)
    kw = dict(batch_size=batch, device=device, amp_dtype=amp, channels_last=gpu, warmup=2, repeats=a.repeats)
    out = []
    for budget in a.budgets:
        models = {"dense": base, "smh": smhsearch.compress(base, SMH(budget=budget))}
        for k in (1, 2, 10):
            models[f"hashed{k}"] = smhsearch.compress(base, HashedNets.table1(budget, hashes=k))  # one pool, as Table 1
        steps: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(a.rounds):
            for name, m in models.items():
                steps[name] += measure.throughput(m, shape, mode="train", **kw).steps_s
        sps = {name: batch / statistics.median(v) for name, v in steps.items()}
        ratios = {f"smh_over_{n}": sps["smh"] / sps[n] for n in ("hashed1", "hashed2", "hashed10", "dense")}
        paper = PAPER.get(budget, {})
        paper_ratios = {f"smh_over_{n}": paper["smh"] / paper[n] for n in ("hashed1", "hashed2", "hashed10")} if paper else {}
        row = {"budget": budget, "stored": {n: measure.stored_parameters(m) for n, m in models.items()},
               "train_samples_per_s": sps, "ratios": ratios, "paper_samples_per_s_tpu": paper, "paper_ratios": paper_ratios,
               "step_s_all": steps}
        out.append(row)
        print(f"B2 -> {budget}: " + "  ".join(f"{n} {v:.1f}/s" for n, v in sps.items()))
        print("   ratios here: " + "  ".join(f"{k} {v:.2f}" for k, v in ratios.items())
              + " | paper: " + "  ".join(f"{k} {v:.1f}" for k, v in paper_ratios.items()), flush=True)
    path = write_result("hashing_speed", device, {"input": list(shape), "batch": batch,
                                                   "amp": "bfloat16" if amp else "float32", "cases": out})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
