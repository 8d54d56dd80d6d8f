"""Search throughput when trials share a GPU: trials per GPU-hour at 1, 2, 4 and 8 trials per GPU.

Each trial is ``spaces/resnet_cifar.yaml``-sized: ResNet-32 (SMH at 46.2K, learnable
scale; ``--method dense`` for the dense model) on CIFAR-10-shaped data (45,000 training
and 5,000 validation images of 3x32x32 with crop and flip, batch 128, SGD lr 0.1, weight
decay 5e-4), trained by smhsearch's own trainer. k trials run at once, each in its own
process with its GPU memory capped at its share (``smhsearch.device.share_gpu``), as
Ray workers with ``gpus_per_trial: 1/k`` are; they start training together (a barrier
after set-up).

A real trial runs 200 epochs; this runs ``--epochs`` (3) and extrapolates from its own
epochs: trial time = first epoch (compiling, autotuning) + 199 x the mean of the later
epochs, taken while the k trials shared the GPU; trials per GPU-hour = k x 3600 / the
slowest trial's time. The measured wall time of the k short trials is recorded too.

    python benchmarks/gpu_share.py --device cuda [--shares 1 2 4 8] [--epochs 3] [--root ../shared/data/cifar10]
    python benchmarks/gpu_share.py --device cpu --smoke    # the machinery on tiny data; no result written

Without a GPU it says so and exits with status 2. Writes
benchmarks/results/gpu_share-cuda-<gpu name>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

import smhsearch
from smhsearch import SMH
from smhsearch.data import load_dataset
from smhsearch.data._builtin import CIFAR10_MEAN, CIFAR10_STD, dataset_from_arrays
from smhsearch.device import resolve_device, share_gpu
from smhsearch.train import TrainConfig, train

from _common import add_device_argument, parse_device, write_result  # type: ignore[import-not-found]

FULL_EPOCHS = 200  # spaces/resnet_cifar.yaml


def cifar_shaped(root: Path | None, n_train: int, n_test: int):
    """CIFAR-10 itself under ``root``, else random images of its shape (a step's speed does not depend on the pixels)."""
    if root is not None:
        return load_dataset("cifar10", root=root)
    g = np.random.default_rng(0)
    img = lambda n: g.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)  # noqa: E731
    return dataset_from_arrays("cifar10-shaped", img(n_train), g.integers(0, 10, n_train), img(n_test), g.integers(0, 10, n_test),
                               CIFAR10_MEAN, CIFAR10_STD, augment="crop_flip", notes="random images of CIFAR-10's shape")


def trial(rank: int, k: int, a: argparse.Namespace, barrier, results) -> None:
    """One trial process: cap its memory at 1/k of the GPU, build, wait for the others, train, report."""
    device = resolve_device(a.device, flag="--device")
    fraction = share_gpu(device, 1.0 / k)
    data = cifar_shaped(a.root, a.n_train, a.n_test)
    torch.manual_seed(rank)
    base = smhsearch.create_model("resnet32" if not a.smoke else "resnet8")
    model = smhsearch.compress(base, SMH(budget=a.budget, scale="learnable")) if a.method == "smh" else base
    cfg = TrainConfig(
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=0.1,
        weight_decay=5e-4,
        variable_lr_mult=10.0 if a.method == "smh" else 1.0,
        compile=a.compile,
        deterministic=a.deterministic == "on",
        seed=rank,
    )
    barrier.wait()
    start = time.time()
    r = train(model, data, cfg, device=device, progress=False)
    results.put({"rank": rank, "start": start, "end": time.time(), "epoch_s": [h.seconds for h in r.history],
                 "memory_fraction": fraction, "peak_memory_bytes": r.extra["peak_memory_bytes"], "compile": r.extra["compile"],
                 "amp": r.extra["amp"], "channels_last": r.extra["channels_last"]})


def share(k: int, a: argparse.Namespace) -> dict:
    """k trials at once on one GPU; their epochs and the extrapolated trials per GPU-hour."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    barrier, results = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=trial, args=(rank, k, a, barrier, results)) for rank in range(k)]
    for p in procs:
        p.start()
    rows = [results.get(timeout=a.timeout) for _ in procs]
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"a trial process failed at {k} trials per GPU (exit codes {[p.exitcode for p in procs]})")
    for row in rows:
        later = row["epoch_s"][1:] or row["epoch_s"]
        row["trial_s_extrapolated"] = row["epoch_s"][0] + (FULL_EPOCHS - 1) * statistics.mean(later)
    slowest = max(r["trial_s_extrapolated"] for r in rows)
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return {"trials_per_gpu": k, "trials_per_gpu_hour": k * 3600 / slowest, "trial_minutes_extrapolated": slowest / 60,
            "wall_s_measured": wall, "trials": sorted(rows, key=lambda r: r["rank"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_argument(p, default="cuda")
    p.add_argument("--shares", type=int, nargs="+", default=[1, 2, 4, 8], help="trials per GPU")
    p.add_argument("--epochs", type=int, default=3, help="epochs measured per trial (>= 2: the first includes compiling)")
    p.add_argument("--method", choices=["smh", "dense"], default="smh")
    p.add_argument("--budget", default="46.2K")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--deterministic", choices=["on", "off"], default="on", help="the trainer's default is on")
    p.add_argument("--root", type=Path, help="a folder holding cifar-10-batches-py/ (default: random images of its shape)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one trial")
    p.add_argument("--smoke", action="store_true", help="tiny data and model, any device, nothing written")
    a = p.parse_args()
    a.batch_size, a.n_train, a.n_test = (32, 256, 64) if a.smoke else (128, 50_000, 10_000)
    device = parse_device(a.device)
    if device.type != "cuda" and not a.smoke:
        print(
            f"error: gpu_share measures trials sharing a GPU; --device={a.device!r} is not one (use --device cuda)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    rows = []
    for k in a.shares:
        row = share(k, a)
        rows.append(row)
        print(f"{k} trials per GPU: {row['trials_per_gpu_hour']:.1f} trials per GPU-hour, "
              f"{row['trial_minutes_extrapolated']:.1f} min per {FULL_EPOCHS}-epoch trial", flush=True)
    if a.smoke:
        print("smoke run: nothing written")
        return
    path = write_result("gpu_share", device, {
        "setting": f"resnet32 {a.method}{'@' + a.budget if a.method == 'smh' else ''}, CIFAR-10 "
                   f"{'(' + str(a.root) + ')' if a.root else 'shaped random images'}, batch {a.batch_size}",
        "epochs_measured": a.epochs, "full_epochs": FULL_EPOCHS, "compile": a.compile, "deterministic": a.deterministic,
        "target": "<= 5 min per trial with 4 trials sharing one H100", "shares": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
