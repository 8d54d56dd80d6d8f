"""Why does SMH's learnable scale diverge at the dense model's best SGD rate? Its gain, trained and frozen.

In ``lr_fairness.py --epochs 10`` (ResNet-8 on the embedded Fashion-MNIST subset, SGD at the dense
model's best rate, 0.5) SMH with the learnable scale diverged at its default on one seed of two at
both budgets, and the fixed scale did not. The two differ only in the per-layer gain, which trains at
the dense rate with no weight decay (``smhsearch/methods/_smh.py``). This script trains the same
setting on several seeds: as shipped; with the gain frozen at 1 (the fixed scale, seeded as the
learnable one); and under two candidates, neither shipped: ``rate-rule`` trains each layer's gain
at lr / ||W_l||^2 under SGD (its gradient divided by ||W_l||^2 at init: the gain moves W_l only
along itself, by ||W_l||^2 times the dense step's component there), and ``decayed`` gives the gain the
weight decay a dense weight gets. It records, per seed, whether training diverged, the test error
and the final gains.

    python benchmarks/scale_gain_divergence.py               # 10%, seeds 1-5, four variants, 2 workers (about 15 minutes)
    python benchmarks/scale_gain_divergence.py --variants decayed   # one variant; the file keeps the others' rows
    python benchmarks/scale_gain_divergence.py --smoke       # 1 epoch, 512 images, 1 seed: checks the script

Writes benchmarks/results/scale_gain_divergence-cpu.json and .md (``--smoke`` writes nothing).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

import torch

from _common import RESULTS, device_slug, write_or_say  # type: ignore[import-not-found]
from lr_fairness import METHODS, SETTINGS, budget_value, dataset  # type: ignore[import-not-found]

LR, WEIGHT_DECAY, BATCH = 0.5, 5e-4, 128  # lr_fairness at 10 epochs: the dense model's best SGD rate there
VARIANTS = ("trained", "frozen", "rate-rule", "decayed")


def one(job: tuple) -> dict:
    variant, budget, seed, epochs, n = job
    import smhsearch
    from smhsearch.train import TrainConfig, TrainingDiverged, train

    torch.set_num_threads(1)
    s = SETTINGS["fashion-resnet8"]
    data = dataset("fashion-resnet8", n, n)
    torch.manual_seed(seed)  # as lr_fairness.run_cell: the seed sets the init, the method's seed and the data order
    model = smhsearch.compress(smhsearch.create_model(s["arch"], **s["kwargs"]), METHODS["smh_learnable"](budget_value(budget), seed))
    if variant == "frozen":
        model.scale_gain.requires_grad_(False)
    elif variant == "rate-rule":  # the candidate, not shipped: SGD moves each W_l along itself as the dense step would
        with torch.no_grad():
            norm2 = torch.stack([w.pow(2).sum() for w in model.dense_weights()])  # ||W_l||^2 at init
        model.scale_gain.register_hook(lambda g: g / norm2.to(g.dtype))
    elif variant == "decayed":  # the other candidate, not shipped: the gain decays as a dense weight does (lr * wd a step)
        gain = model.scale_gain
        gain.register_hook(lambda g: g + WEIGHT_DECAY * gain.detach())  # SGD's own weight decay, on the no-decay group
    cfg = TrainConfig(epochs=epochs, batch_size=BATCH, optimizer="sgd", lr=LR, weight_decay=WEIGHT_DECAY,
                      warmup_epochs=0.1 * epochs, seed=seed)
    t0 = time.perf_counter()
    row = {"variant": variant, "budget": budget, "seed": seed, "epochs": epochs,
           "layers": [t.name for t in model.targets]}
    try:
        r = train(model, data, cfg, progress=False)
        row |= {"test_error_pct": 100 * (1 - r.test_acc)}
    except TrainingDiverged as e:
        row |= {"diverged": str(e)}
    return row | {"gains": [round(float(g), 3) for g in model.scale_gain.detach()], "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", default="10%")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS,
                   help="the file keeps the other variants' rows from an earlier run of the same protocol")
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args()
    try:
        METHODS["smh_learnable"](budget_value(a.budget), 0)
    except ValueError as e:
        p.error(f"--budget: {e}")
    for flag, v in (("--epochs", a.epochs), ("--workers", a.workers)):
        if v < 1:
            p.error(f"{flag} must be >= 1, but got {v}")
    if min(a.seeds) < 0:
        p.error(f"--seeds must be >= 0, but got {min(a.seeds)}")
    n = 512 if a.smoke else None
    seeds, epochs = (a.seeds[:1], 1) if a.smoke else (a.seeds, a.epochs)
    jobs = [(v, a.budget, s, epochs, n) for s in seeds for v in a.variants]
    protocol = {"lr": LR, "weight_decay": WEIGHT_DECAY, "batch": BATCH, "epochs": epochs, "budget": a.budget}
    path = RESULTS / f"scale_gain_divergence-{device_slug(torch.device('cpu'))}.json"
    old = json.loads(path.read_text()) if path.is_file() and not a.smoke else {}
    kept = [r for r in old.get("rows", []) if old.get("protocol") == protocol and r["variant"] not in a.variants and r["seed"] in seeds]
    with mp.get_context("spawn").Pool(a.workers) as pool:
        rows = sorted(kept + pool.map(one, jobs), key=lambda r: (VARIANTS.index(r["variant"]), r["seed"]))
    md = [f"SMH, learnable scale, ResNet-8 on the embedded Fashion-MNIST subset at {a.budget}, SGD lr {LR} (the dense model's best at "
          f"10 epochs), {epochs} epochs; the per-layer gain trained (as shipped), frozen at 1, trained at lr / ||W_l||^2 "
          "(rate-rule) or with a dense weight's decay (decayed); the last two are candidates, not shipped.", "",
          "| gain | seed | test error % | classifier's gains (weight, bias) |", "|---|---|---|---|"]
    for r in rows:
        fc = [g for g, name in zip(r["gains"], r["layers"]) if name.startswith("fc.")]
        md.append(f"| {r['variant']} | {r['seed']} | {'diverged' if 'diverged' in r else format(r['test_error_pct'], '.2f')} | "
                  f"{', '.join(f'{g:.2f}' for g in fc)} |")
    for v in VARIANTS:
        mine = [r for r in rows if r["variant"] == v]
        if mine:
            md.append(f"- {v}: {sum('diverged' in r for r in mine)} of {len(mine)} diverged")
    write_or_say("scale_gain_divergence", torch.device("cpu"), {"protocol": protocol, "rows": rows}, md, a.smoke)


if __name__ == "__main__":
    main()
