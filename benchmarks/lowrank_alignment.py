"""How far does SGD move low-rank's gain from its first step towards its operator norm? Measured on real gradients.

Low-rank's SGD step moves W = B A by dW = -eta_v (G A^T A + B B^T G). Its gain
||G A^T A + B B^T G|| / ||G|| lies between two bounds (smhsearch/methods/_lowrank.py):
the first step's e_1 (a gradient unrelated to the factors) and the operator norm e_op
(a gradient along the factors' top singular directions). Where training puts it decides
the right rate, and the rule takes the geometric middle because that place depends on
the data and the network. This script trains each setting as lr_fairness.py does (SGD,
Nesterov momentum 0.9, weight decay 5e-4, the dense model's best rate 0.15, batch 128,
linear warm-up over 10% of the epochs then cosine) at the rule's rates, and at step 0
and the end of every epoch records each factorised layer's realised gain on the batch's
gradient, as multiples of e_1 and of e_op.

    python benchmarks/lowrank_alignment.py            # MNIST MLP 1/8, 1/64; ResNet-8 Fashion-MNIST 10%, 25%
    python benchmarks/lowrank_alignment.py --smoke    # 1 epoch, 512 images: checks the script

Writes benchmarks/results/lowrank_alignment-cpu.json and .md (``--smoke``: lowrank_alignment-smoke-cpu.*,
which git ignores). The MNIST settings need ../shared/data/mnist (skipped, with the reason, without it).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

import smhsearch
from smhsearch import LowRank
from smhsearch.methods import param_groups
from smhsearch.methods._lowrank import _matrix

from _common import RESULTS, environment  # type: ignore[import-not-found]
from lr_fairness import SETTINGS, budget_value, dataset  # type: ignore[import-not-found]

LR, MOMENTUM, WEIGHT_DECAY, BATCH, WARMUP = 0.15, 0.9, 5e-4, 128, 0.1


def bounds(model) -> list[tuple[float, float]]:
    """(e_1, e_op) of each factorised layer at init, the formulas the rule is built from."""
    out = []
    for t, r, var in zip(model.targets, model.ranks, model._factor_var):
        rows, cols = _matrix(t)
        out.append((var * math.sqrt(r * (rows + cols)), var * ((math.sqrt(cols) + math.sqrt(r)) ** 2 + (math.sqrt(rows) + math.sqrt(r)) ** 2)))
    return out


def measure(setting: str, budget: str, epochs: int, n_train: int | None, seed: int = 0) -> dict:
    s = SETTINGS[setting]
    data = dataset(setting, n_train, n_train)
    torch.manual_seed(seed)
    model = smhsearch.compress(smhsearch.create_model(s["arch"], **s["kwargs"]), LowRank(budget=budget_value(budget), seed=seed))
    e = bounds(model)
    opt = torch.optim.SGD(param_groups(model, LR, WEIGHT_DECAY, "sgd"), lr=LR, momentum=MOMENTUM, nesterov=True)
    base = [g["lr"] for g in opt.param_groups]
    held: list[torch.Tensor] = []
    dense_weights = model.dense_weights

    def keep_grads() -> list[torch.Tensor]:  # the dense weights' own gradients, G, for the measurement
        held[:] = dense_weights()
        for w in held:
            w.retain_grad()
        return held

    model.dense_weights = keep_grads
    steps_per_epoch = math.ceil(len(data.train) / BATCH)
    total, warm = epochs * steps_per_epoch, max(1, round(WARMUP * epochs * steps_per_epoch))
    g = torch.Generator().manual_seed(seed)
    points, step = [], 0
    for epoch in range(epochs):
        model.train()
        for i, (x, y) in enumerate(data.train.batches(BATCH, shuffle=True, augment=True, generator=g)):
            f = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            for group, lr in zip(opt.param_groups, base):
                group["lr"] = lr * f
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"{setting} {budget}: diverged at step {step}")
            if step == 0 or i == steps_per_epoch - 1:
                layers = []
                with torch.no_grad():
                    for w, A, B, (e1, eop) in zip(held, model.A, model.B, e):
                        G = w.grad.reshape(B.shape[0], A.shape[1])
                        gain = float((G @ A.T @ A + B @ B.T @ G).norm() / G.norm())
                        layers.append({"over_first": gain / e1, "over_op": gain / eop})
                points.append({"step": step, "epoch": epoch + (i + 1) / steps_per_epoch if step else 0.0, "loss": loss.item(), "layers": layers})
            opt.step()
            step += 1
    later = [ly["over_first"] for p in points if p["epoch"] >= 1 for ly in p["layers"]]
    return {"setting": setting, "budget": budget, "epochs": epochs, "ranks": list(model.ranks),
            "op_over_first": [eop / e1 for e1, eop in e], "points": points,
            "after_epoch_1": {"min": min(later, default=math.nan), "median": statistics.median(later) if later else math.nan,
                              "max": max(later, default=math.nan)}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="1 epoch on 512 images, ResNet-8 at 10%% only")
    a = p.parse_args()
    torch.set_num_threads(1)
    runs = [("fashion-resnet8", "10%")] if a.smoke else [(st, b) for st in SETTINGS for b in SETTINGS[st]["budgets"]]
    results, skipped = [], []
    for st, b in runs:
        t0 = time.perf_counter()
        try:
            r = measure(st, b, 1 if a.smoke else SETTINGS[st]["epochs"], 512 if a.smoke else None)
        except SystemExit as err:  # MNIST lives in ../shared only (hashednets_mnist.mnist_17k says so)
            skipped.append(f"{st} {b}: {err}")
            print(f"skipped {st} {b}: {err}")
            continue
        r["seconds"] = time.perf_counter() - t0
        results.append(r)
        q = r["after_epoch_1"]
        print(f"{st} {b}: ranks {r['ranks']}, e_op / e_1 {min(r['op_over_first']):.1f}-{max(r['op_over_first']):.1f}; "
              f"realised gain after epoch 1: {q['min']:.2f}-{q['max']:.2f} x e_1 (median {q['median']:.2f})", flush=True)
    name = "lowrank_alignment-smoke" if a.smoke else "lowrank_alignment"
    payload = {**environment(torch.device("cpu")), "protocol": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY, "batch": BATCH,
                                             "warmup": WARMUP, "rule": "sqrt(e_1 e_op)"}, "results": results, "skipped": skipped}
    path = RESULTS / f"{name}-cpu.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    lines = ["Low-rank's realised SGD gain ||G A^T A + B B^T G|| / ||G|| on real gradients, as a multiple of the first step's "
             "gain e_1 (the operator norm e_op is the upper bound); over every factorised layer and every epoch end after the first.",
             "", "| setting | budget | ranks | e_op / e_1 | realised / e_1 (min-max, median) | rule sqrt(e_1 e_op) / e_1 |", "|---|---|---|---|---|---|"]
    for r in results:
        q, ratio = r["after_epoch_1"], r["op_over_first"]
        lines.append(f"| {r['setting']} | {r['budget']} | {', '.join(map(str, r['ranks']))} | {min(ratio):.1f}-{max(ratio):.1f} | "
                     f"{q['min']:.2f}-{q['max']:.2f} ({q['median']:.2f}) | {math.sqrt(min(ratio)):.1f}-{math.sqrt(max(ratio)):.1f} |")
    lines += [f"- skipped: {s}" for s in skipped]
    (RESULTS / f"{name}-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\nwrote {path}")


if __name__ == "__main__":
    main()
