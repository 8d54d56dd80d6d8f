"""Why did SMH's learnable scale diverge at the dense model's best SGD rate? Its gain, as shipped, frozen and in earlier forms.

In ``lr_fairness.py --epochs 10`` (ResNet-8 on the embedded Fashion-MNIST subset, SGD at the dense
model's best rate, 0.5) SMH with the learnable scale, as it was until 2026-12-05 (``plain``: W_l =
s_l g_l C_l trained by plain autograd, the gain at the dense rate with no decay), diverged at its
default on one seed of two at both budgets, and the fixed scale did not. Two things made the gain
push SMH over the edge: its own SGD step moved W_l along itself ||s_l C_l||^2 times as far as the
dense step would (3.5 for the classifier, 0.06 for its bias), and a gain g_l multiplied U and V's
step on W_l by g_l^2 (the classifier's grew to 2.8). The shipped form (``smhsearch/methods/_smh.py``)
fixes both in its backward. This script trains the setting on several seeds under each form:

- ``shipped``: as shipped; ``frozen``: the gain frozen at 1 (the fixed scale, seeded as the learnable one);
- ``plain``: the form before; ``plain-rate-rule``: plain, with each gain's gradient divided by
  ||W_l||^2 at init; ``plain-decayed``: plain, with a dense weight's decay on the gains;
- ``no-cap``: the shipped gain rate without the cap on U and V's step; ``no-rate-rule``: the cap
  without the gain rate.

It records, per seed, whether training diverged, the test error and the final gains.

    python benchmarks/scale_gain_divergence.py               # 10%, seeds 1-5, every form, 2 workers (about 17 minutes)
    python benchmarks/scale_gain_divergence.py --variants no-cap   # some forms; the file keeps the others' rows
    python benchmarks/scale_gain_divergence.py --reuse       # trains only the rows the file lacks
    python benchmarks/scale_gain_divergence.py --smoke       # 1 epoch, 512 images, 1 seed: checks the script

Writes benchmarks/results/scale_gain_divergence-cpu.json and .md (``--smoke`` writes nothing).
"""

from __future__ import annotations

import argparse
import time

import torch

from _harness import ResultsFile, pool, split  # type: ignore[import-not-found]
from lr_fairness import METHODS, SETTINGS, budget_value, dataset  # type: ignore[import-not-found]

LR, WEIGHT_DECAY, BATCH = 0.5, 5e-4, 128  # lr_fairness at 10 epochs: the dense model's best SGD rate there
VARIANTS = ("shipped", "frozen", "plain", "plain-rate-rule", "plain-decayed", "no-cap", "no-rate-rule")


class _Ablated(torch.autograd.Function):
    """W_l = s_l g_l C_l with either of the shipped backward's two rules left out (``_smh._Gained``)."""

    @staticmethod
    def forward(ctx, chunk, s, g, rate_rule: bool, cap: bool):
        ctx.save_for_backward(chunk, s, g)
        ctx.rules = (rate_rule, cap)
        return chunk * (s * g)

    @staticmethod
    def backward(ctx, grad):
        chunk, s, g = ctx.saved_tensors
        rate_rule, cap = ctx.rules
        g_gain = (grad * chunk).sum() * s / ((s * chunk).pow(2).sum() if rate_rule else 1.0)
        g_chunk = grad * s * (torch.where(g.abs() < 1, g, 1 / g) if cap else g)
        return g_chunk, None, g_gain, None, None


def set_form(model, rules: tuple[bool, bool] | None) -> None:
    """Replace the model's weights with an earlier or ablated form: ``None`` the plain product, else
    (rate_rule, cap). The forward value is the same in every form."""

    def dense_weights() -> list[torch.Tensor]:
        chunks = torch.split((model.U @ model.V).reshape(-1), model._split_sizes)
        s, g = model.scale_init.unbind(), model.scale_gain.unbind()
        return [(c * (s_l * g_l) if rules is None else _Ablated.apply(c, s_l, g_l, *rules)).view(t.shape)
                for c, t, s_l, g_l in zip(chunks, model.targets, s, g)]

    model.dense_weights = dense_weights


def one(job: tuple) -> dict:
    variant, budget, seed, epochs, n = job
    import smhsearch
    from smhsearch.train import TrainConfig, TrainingDiverged, train

    torch.set_num_threads(1)
    s = SETTINGS["fashion-resnet8"]
    data = dataset("fashion-resnet8", n, n)
    torch.manual_seed(seed)  # as lr_fairness.run_cell: the seed sets the init, the method's seed and the data order
    model = smhsearch.compress(
        smhsearch.create_model(s["arch"], **s["kwargs"]), METHODS["smh_learnable"](budget_value(budget), seed)
    )
    if variant == "frozen":
        model.scale_gain.requires_grad_(False)
    elif variant in ("no-cap", "no-rate-rule"):
        set_form(model, (variant == "no-cap", variant == "no-rate-rule"))
    elif variant.startswith("plain"):
        set_form(model, None)
        gain = model.scale_gain
        if variant == "plain-rate-rule":  # SGD moves each W_l along itself as the dense step would, at init
            with torch.no_grad():
                norm2 = torch.stack([w.pow(2).sum() for w in model.dense_weights()])  # ||W_l||^2 at init
            gain.register_hook(lambda g: g / norm2.to(g.dtype))
        elif variant == "plain-decayed":  # the gain decays as a dense weight does (lr * wd a step)
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
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep the rows the file holds for these variants and seeds under the same "
        "protocol, training only the missing ones (a rerun that finds them all trains nothing)",
    )
    p.add_argument("--smoke", action="store_true", help="1 epoch, 512 images, the first seed; writes nothing")
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
    results = ResultsFile("scale_gain_divergence", torch.device("cpu"), read=not a.smoke)
    stored = {(r["variant"], r["seed"]): r for r in results.old.get("rows", [])
              if results.old.get("protocol") == protocol and r["variant"] in VARIANTS and r["seed"] in seeds}
    kept = [r for k, r in stored.items() if k[0] not in a.variants]  # the other variants' rows stay
    reused, jobs = split(jobs, stored if a.reuse else {}, lambda j: (j[0], j[2]), lambda old, j: True)
    results.trained = bool(jobs)
    print(f"{len(jobs)} runs to train, {len(reused)} reused from {results.path}", flush=True)
    rows = sorted(kept + list(reused.values()) + list(pool(one, jobs, a.workers, check=lambda: dataset("fashion-resnet8", n, n))),
                  key=lambda r: (VARIANTS.index(r["variant"]), r["seed"]))
    md = [
        f"SMH, learnable scale, ResNet-8 on the embedded Fashion-MNIST subset at {a.budget}, SGD lr {LR} "
        "(the dense model's best at "
        f"10 epochs), {epochs} epochs; the per-layer gain as shipped, frozen at 1, in the plain form before 2026-12-05 (alone, "
        "at lr / ||W_l||^2 at init, or with a dense weight's decay), and the shipped form without either rule "
        "(benchmarks/scale_gain_divergence.py says what each is).",
        "",
        "| gain | seed | test error % | classifier's gains (weight, bias) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        fc = [g for g, name in zip(r["gains"], r["layers"]) if name.startswith("fc.")]
        md.append(f"| {r['variant']} | {r['seed']} | {'diverged' if 'diverged' in r else format(r['test_error_pct'], '.2f')} | "
                  f"{', '.join(f'{g:.2f}' for g in fc)} |")
    for v in VARIANTS:
        mine = [r for r in rows if r["variant"] == v]
        if mine:
            md.append(f"- {v}: {sum('diverged' in r for r in mine)} of {len(mine)} diverged")
    print("\n".join(md))
    if a.smoke:
        print(f"smoke: nothing written (the full run writes {results.path})")
        return
    results.write({"protocol": protocol, "rows": rows})
    results.write_md("\n".join(md) + "\n")
    print(f"wrote {results.path} and its .md")


if __name__ == "__main__":
    main()
