"""The SMH paper's Figure 6 on a GPU: ResNet-32 on CIFAR-10, dense, SMH and width multiplier.

Models: dense (He et al. 92.49%), SMH at 46K and 118K parameters (paper 90.2 / 92.5),
width multiplier at comparable sizes (paper 84.4 @ 29.4K, 89.2 @ 115.8K).
Targets: dense >= 92.4, SMH @ 118K >= 92.3, SMH @ 46K >= 90.0, SMH above the width
multiplier at equal size.

Recipe (He et al.'s, on a cosine schedule): SGD with Nesterov momentum 0.9, lr 0.1,
batch 128, weight decay 5e-4, random crop + flip, bf16 autocast, 200 epochs. SMH uses
the learnable scale; U and V train at the rates SMH derives (``--smh-lr-mult``
multiplies them, 1 by default).

    python benchmarks/resnet32_cifar10.py --device cuda [--root ../shared/data/cifar10] [--epochs 200]
    python benchmarks/resnet32_cifar10.py --device cpu --epochs 1 --subset 2000   # a smoke run, not a result

Writes benchmarks/results/resnet32_cifar10-<device>.json and .md, with wall time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


from smhsearch import SMH, Dense, WidthMultiplier
from smhsearch.data import load_dataset
from smhsearch.job import JobSpec, run_job
from smhsearch.train import TrainConfig

from _common import RESULTS, add_device_argument, device_slug, parse_device, write_result  # type: ignore[import-not-found]

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
PAPER = {"dense": 92.49, "smh@46K": 90.2, "smh@118K": 92.5, "width@29.4K": 84.4, "width@115.8K": 89.2}
TARGETS = {"dense": 92.4, "smh@118K": 92.3, "smh@46K": 90.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(p)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--smh-lr-mult", type=float, default=1.0, help="x SMH's derived rates on U and V")
    p.add_argument("--subset", type=int, help="train on this many images only (smoke runs)")
    p.add_argument("--models", nargs="+", default=["dense", "smh@46K", "smh@118K", "width@46K", "width@118K"])
    a = p.parse_args()
    device = parse_device(a.device)
    data = load_dataset("cifar10", root=a.root)
    if a.subset:
        data.train.x, data.train.y = data.train.x[: a.subset], data.train.y[: a.subset]
    results, md = {}, ["| model | stored params | test acc % | paper | target | wall s |", "|---|---|---|---|---|---|"]
    for name in a.models:
        kind, _, budget = name.partition("@")
        method = Dense() if kind == "dense" else SMH(budget=budget, scale="learnable") if kind == "smh" else WidthMultiplier(budget=budget)
        cfg = TrainConfig(epochs=a.epochs, batch_size=128, lr=0.1, weight_decay=5e-4, warmup_epochs=min(2, a.epochs - 1) if a.epochs > 2 else 0,
                          variable_lr_mult=a.smh_lr_mult if kind == "smh" else 1.0)
        t0 = time.perf_counter()
        job = run_job(JobSpec("resnet32", method, train=cfg), data=data, device=device, progress=None)  # as a search trial runs it
        r, wall = job.train, time.perf_counter() - t0
        stored = job.metrics["stored_params"]
        results[name] = {"stored": stored, "test_acc_pct": 100 * r.test_acc, "best_val_acc_pct": 100 * r.best_val_acc, "wall_s": wall,
                         "history": [h.__dict__ for h in r.history]}
        paper = PAPER.get(name, float("nan"))
        md.append(f"| {name} | {stored} | {100 * r.test_acc:.2f} | {paper:.2f} | {TARGETS.get(name, '')} | {wall:.0f} |")
        print(md[-1], flush=True)
    stem = "resnet32_cifar10-smoke" if a.subset else "resnet32_cifar10"  # a smoke run is never taken for a result
    write_result(stem, device, {"epochs": a.epochs, "subset": a.subset, "results": results, "paper": PAPER, "targets": TARGETS})
    (RESULTS / f"{stem}-{device_slug(device)}.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
