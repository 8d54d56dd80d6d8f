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
    python benchmarks/resnet32_cifar10.py --device cuda --npz .data/cifar10_subset.npz --epochs 15 --models dense smh@46K

Writes benchmarks/results/resnet32_cifar10-<device>.json and .md, with wall time. A run on part of the data is
never taken for the protocol's result: ``--subset`` writes resnet32_cifar10-smoke-<device>.* (which git ignores),
``--npz`` (the packed subset scripts/gpu_check_prepare.py writes for ``make gpu-check``) resnet32_cifar10-short-<device>.*.
CIFAR-10 is read from ../shared/data/cifar10 (or ``--root``); without it the script says where it looked and exits 2.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from smhsearch import SMH, Dense, WidthMultiplier
from smhsearch.data import DatasetNotFound, dataset_from_arrays, load_dataset
from smhsearch.data._builtin import CIFAR10_MEAN, CIFAR10_STD
from smhsearch.job import JobSpec, run_job
from smhsearch.train import TrainConfig

from _common import add_device_argument, parse_device  # type: ignore[import-not-found]
from _harness import ResultsFile, data_dir, missing_data  # type: ignore[import-not-found]
PAPER = {"dense": 92.49, "smh@46K": 90.2, "smh@118K": 92.5, "width@29.4K": 84.4, "width@115.8K": 89.2}
TARGETS = {"dense": 92.4, "smh@118K": 92.3, "smh@46K": 90.0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(p)
    p.add_argument("--root", type=Path, default=data_dir("cifar10"), help="CIFAR-10's folder (default: %(default)s)")
    p.add_argument("--npz", type=Path, help="a packed CIFAR-10 subset (x_train, y_train, x_test, y_test) instead of --root")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--smh-lr-mult", type=float, default=1.0, help="x SMH's derived rates on U and V")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="the trainer's torch.compile (default auto)")
    p.add_argument("--subset", type=int, help="train on this many images only (smoke runs)")
    p.add_argument("--models", nargs="+", default=["dense", "smh@46K", "smh@118K", "width@46K", "width@118K"])
    a = p.parse_args()
    device = parse_device(a.device)
    if a.npz is not None:
        if not a.npz.is_file():
            missing_data("the packed CIFAR-10 subset", a.npz, "scripts/gpu_check_prepare.py writes it")
        z = np.load(a.npz)
        notes = f"{len(z['x_train'])} training and {len(z['x_test'])} test images of CIFAR-10"
        data = dataset_from_arrays("cifar10-subset", z["x_train"], z["y_train"], z["x_test"], z["y_test"], CIFAR10_MEAN,
                                   CIFAR10_STD, augment="crop_flip", notes=notes)
    else:
        try:
            data = load_dataset("cifar10", root=a.root)
        except DatasetNotFound as e:
            missing_data("CIFAR-10", a.root, f"{e}; or pass --root or --npz")
    if a.subset:
        data.train.x, data.train.y = data.train.x[: a.subset], data.train.y[: a.subset]
    results, md = {}, ["| model | stored params | test acc % | paper | target | wall s |", "|---|---|---|---|---|---|"]
    for name in a.models:
        kind, _, budget = name.partition("@")
        method = (
            Dense()
            if kind == "dense"
            else SMH(budget=budget, scale="learnable")
            if kind == "smh"
            else WidthMultiplier(budget=budget)
        )
        cfg = TrainConfig(
            epochs=a.epochs,
            batch_size=128,
            lr=0.1,
            weight_decay=5e-4,
            warmup_epochs=min(2, a.epochs - 1) if a.epochs > 2 else 0,
            variable_lr_mult=a.smh_lr_mult if kind == "smh" else 1.0,
            compile=a.compile,
        )
        t0 = time.perf_counter()
        job = run_job(
            JobSpec("resnet32", method, train=cfg), data=data, device=device, progress=None
        )  # as a search trial runs it
        r, wall = job.train, time.perf_counter() - t0
        stored = job.metrics["stored_params"]
        results[name] = {
            "stored": stored,
            "test_acc_pct": 100 * r.test_acc,
            "best_val_acc_pct": 100 * r.best_val_acc,
            "wall_s": wall,
            "history": [h.__dict__ for h in r.history],
        }
        paper = PAPER.get(name, float("nan"))
        md.append(f"| {name} | {stored} | {100 * r.test_acc:.2f} | {paper:.2f} | {TARGETS.get(name, '')} | {wall:.0f} |")
        print(md[-1], flush=True)
    # a run on part of the data is never taken for the protocol's result: a smoke run (git ignores it), or the packed subset's
    stem = "resnet32_cifar10-smoke" if a.subset else "resnet32_cifar10-short" if a.npz is not None else "resnet32_cifar10"
    out = ResultsFile(stem, device, read=False)
    out.trained = True
    path = out.write({"epochs": a.epochs, "subset": a.subset, "data": data.describe(), "results": results, "paper": PAPER,
                      "targets": TARGETS})
    out.write_md("\n".join(md) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
