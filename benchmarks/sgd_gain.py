"""How fast does one SGD step move the weights of a product of variables (low-rank's B A, SMH's U V), on real gradients?

A method whose weights are a product of two variables moves them, under SGD, by a gain
times the dense step, and the gain depends on the gradient: for one unrelated to the
variables it is the first step's e_1 (the norm rule of smhsearch/methods/_rates.py), for
one along the variables' top singular directions their operator norm e_op, and each step
writes the gradient's own directions into the variables. Where training puts it decides
the right rate. Low-rank's rule is the geometric middle sqrt(e_1 e_op) (_lowrank.py), SMH's
is e_1 (_smh.py: the middle, tried, trained it 3-5x too slowly). This script trains each
lr_fairness.py setting as that benchmark does (SGD, Nesterov momentum 0.9, weight decay
5e-4, the dense model's best rate 0.15, batch 128, linear warm-up over 10% of the epochs
then cosine) at the method's shipped rates, and at step 0 and the end of every epoch
records each layer's realised gain on the batch's gradient, ||dW_l|| / (eta_v ||g_l||), as
a multiple of e_1; layers of two or more dimensions only.

    python benchmarks/sgd_gain.py            # low-rank and SMH; MNIST MLP 1/8, 1/64; ResNet-8 Fashion-MNIST 10%, 25%
    python benchmarks/sgd_gain.py --smoke    # 1 epoch, 512 images: checks the script

Writes benchmarks/results/sgd_gain-cpu.json and .md (``--smoke``: sgd_gain-smoke-cpu.*, which git
ignores). The MNIST settings need ../shared/data/mnist (skipped, with the reason, without it).
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
from smhsearch import SMH, LowRank
from smhsearch.methods import param_groups

from _common import RESULTS, environment  # type: ignore[import-not-found]
from _harness import data_dir  # type: ignore[import-not-found]
from lr_fairness import SETTINGS, budget_value, dataset  # type: ignore[import-not-found]

LR, MOMENTUM, WEIGHT_DECAY, BATCH, WARMUP = 0.15, 0.9, 5e-4, 128, 0.1
METHODS = {"lowrank": lambda b, seed: LowRank(budget=b, seed=seed), "smh": lambda b, seed: SMH(budget=b, seed=seed)}


def bounds(model) -> list[tuple[float, float, float]]:
    """(e_1, e_op, the rule's e) of each measured layer at init."""
    rule = model.effective_rates("sgd").tolist()
    return [(e1, eop, e) for (e1, eop), e, t in zip(model.sgd_bounds(), rule, model.targets, strict=True) if len(t.shape) >= 2]


@torch.no_grad()
def gains(model, weights: list[torch.Tensor]) -> list[float]:
    """||dW_l|| / (eta_v ||g_l||) of one SGD step on the batch's gradient, each measured layer."""
    if isinstance(model.config, LowRank):
        out = []
        for w, A, B in zip(weights, model.A, model.B):
            G = w.grad.reshape(B.shape[0], A.shape[1])
            out.append(float((G @ A.T @ A + B @ B.T @ G).norm() / G.norm()))
        return out
    step = (model.U.grad @ model.V + model.U @ model.V.grad).reshape(-1)  # d(U V) per unit rate
    chunks = torch.split(step, model._split_sizes)[:-1]
    return [
        float(s_l * c.norm() / w.grad.norm())
        for c, w, s_l, t in zip(chunks, weights, model.scale_init.tolist(), model.targets)
        if len(t.shape) >= 2
    ]


def measure(method: str, setting: str, budget: str, epochs: int, n_train: int | None, seed: int = 0) -> dict:
    s = SETTINGS[setting]
    data = dataset(setting, n_train, n_train)
    torch.manual_seed(seed)
    model = smhsearch.compress(smhsearch.create_model(s["arch"], **s["kwargs"]), METHODS[method](budget_value(budget), seed))
    e = bounds(model)
    opt = torch.optim.SGD(param_groups(model, LR, WEIGHT_DECAY, "sgd"), lr=LR, momentum=MOMENTUM, nesterov=True)
    base = [g["lr"] for g in opt.param_groups]
    held: list[torch.Tensor] = []
    dense_weights = model.dense_weights

    def keep_grads() -> list[torch.Tensor]:  # the dense weights' own gradients, g_l, for the measurement
        held[:] = dense_weights()
        for w in held:
            w.retain_grad()
        return held

    model.dense_weights = keep_grads
    steps_per_epoch = math.ceil(len(data.train) / BATCH)
    total, warm = epochs * steps_per_epoch, max(1, round(WARMUP * epochs * steps_per_epoch))
    g = torch.Generator().manual_seed(seed)
    points, step, diverged = [], 0, None
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
                diverged = step
                break
            if step == 0 or i == steps_per_epoch - 1:
                got = gains(model, held)
                points.append({"step": step, "epoch": epoch + (i + 1) / steps_per_epoch if step else 0.0, "loss": loss.item(),
                               "over_first": [x / e1 for x, (e1, _, _) in zip(got, e)]})
            opt.step()
            step += 1
        if diverged is not None:
            break
    later = [r for p in points if p["epoch"] >= 1 for r in p["over_first"]]
    return {
        "method": method,
        "setting": setting,
        "budget": budget,
        "epochs": epochs,
        "diverged_at_step": diverged,
        "op_over_first": [eop / e1 for e1, eop, _ in e],
        "rule_over_first": [rule / e1 for e1, _, rule in e],
        "points": points,
        "after_epoch_1": {
            "min": min(later, default=math.nan),
            "median": statistics.median(later) if later else math.nan,
            "max": max(later, default=math.nan),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--smoke", action="store_true", help="1 epoch on 512 images, ResNet-8 at 10%% only")
    a = p.parse_args()
    torch.set_num_threads(1)
    runs = [(st, b) for st in SETTINGS for b in SETTINGS[st]["budgets"]]
    runs = [("fashion-resnet8", "10%")] if a.smoke else runs
    results, skipped = [], []
    for method in a.methods:
        for st, b in runs:
            t0 = time.perf_counter()
            if st == "mnist-mlp" and not data_dir("mnist").is_dir():  # MNIST lives in ../shared only
                why = f"MNIST not found at {data_dir('mnist')}"
                skipped.append(f"{method} {st} {b}: {why}")
                print(f"skipped {method} {st} {b}: {why}")
                continue
            r = measure(method, st, b, 1 if a.smoke else SETTINGS[st]["epochs"], 512 if a.smoke else None)
            r["seconds"] = time.perf_counter() - t0
            results.append(r)
            q = r["after_epoch_1"]
            print(
                f"{method} {st} {b}: e_op / e_1 {min(r['op_over_first']):.1f}-{max(r['op_over_first']):.1f}; realised gain after "
                f"epoch 1: {q['min']:.2f}-{q['max']:.2f} x e_1 (median {q['median']:.2f})"
                + (f"; diverged at step {r['diverged_at_step']}" if r["diverged_at_step"] is not None else ""),
                flush=True,
            )
    name = "sgd_gain-smoke" if a.smoke else "sgd_gain"
    payload = {**environment(torch.device("cpu")), "protocol": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY,
               "batch": BATCH, "warmup": WARMUP}, "results": results, "skipped": skipped}
    path = RESULTS / f"{name}-cpu.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    span = lambda v: f"{min(v):.1f}" if f"{min(v):.1f}" == f"{max(v):.1f}" else f"{min(v):.1f}-{max(v):.1f}"  # noqa: E731
    lines = ["One SGD step's realised gain ||dW_l|| / (eta_v ||g_l||) on real gradients, as a multiple of the first step's gain "
             "e_1, over every layer of two or more dimensions and every epoch end after the first; e_op, the variables' operator "
             "norm, bounds it. Trained at the method's shipped rates (SGD, dense best rate 0.15).",
             "", "| method | setting | budget | e_op / e_1 | realised / e_1 (min-max, median) | the rule's e / e_1 | diverged |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        q = r["after_epoch_1"]
        lines.append(f"| {r['method']} | {r['setting']} | {r['budget']} | {span(r['op_over_first'])} | "
                     f"{q['min']:.2f}-{q['max']:.2f} ({q['median']:.2f}) | {span(r['rule_over_first'])} | "
                     f"{'' if r['diverged_at_step'] is None else 'at step ' + str(r['diverged_at_step'])} |")
    lines += [f"- skipped: {s}" for s in skipped]
    (RESULTS / f"{name}-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines) + f"\nwrote {path}")


if __name__ == "__main__":
    main()
