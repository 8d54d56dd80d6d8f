"""A small vision transformer on CIFAR-10 at 10% and 25% of its parameters, on the CPU.

Model: ``vit_cifar_tiny`` (torchvision's VisionTransformer: 32 px, patch 4, 4 layers,
3 heads, hidden 96, MLP 192; 311K parameters). Methods at each budget:
- SMH, learnable scale, ``scope="all"`` (attention's in_proj_weight, the positional
  embedding, the MLPs, the patch embedding, the head: everything but LayerNorm and
  the class token);
- HashedNets, one hash with a sign hash, its default per-layer pools (Chen et al.), same scope;
- the width multiplier (every head narrowed; the largest width within the budget);
- and the dense model.

Data: a CIFAR-10 subset sized for two CPU cores (``--train`` images of the 45,000
training images, ``--val`` of the 5,000 held out, the full 10,000 test images), with
random crop and flip. Training: AdamW, cosine schedule with warmup, label smoothing
0.1, batch 128. Every method's variables train at the rates it derives from the dense
model's (smhsearch/methods/_rates.py, for AdamW too); SMH and HashedNets each also try
x1/3 and x3 of them on seed 0 (the multiplier acts on the derived rates), the one with
the best final validation accuracy is trained again on the other seeds, and test
accuracy is reported for the chosen one: a check that the derived rates are right here.
Every run finished is written to the result file at once; a run interrupted is resumed with the same command (finished runs with
the same protocol and the same derived rates are reused: a method whose rule changed trains again).

    python benchmarks/vit_cifar.py            # the full run: 22 trainings, about 2.5 h on 2 idle cores
    python benchmarks/vit_cifar.py --smoke    # a pipeline check of about a minute; never a result

Writes benchmarks/results/vit_cifar-cpu.json and .md (a smoke run: vit_cifar-smoke-cpu.*,
which git ignores). Needs CIFAR-10 at ../shared/data/cifar10 (or ``--root``); without
it the script says where it looked and exits with status 2.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import smhsearch
from smhsearch import SMH, HashedNets, WidthMultiplier
from smhsearch.data import DatasetNotFound, load_dataset
from smhsearch.train import TrainConfig, TrainingDiverged, train

from _common import rate_fingerprint  # type: ignore[import-not-found]
from _harness import ResultsFile, data_dir, missing_data  # type: ignore[import-not-found]

ARCH = "vit_cifar_tiny"
METHODS = ("smh", "hashednets", "width")


@dataclass(frozen=True)
class Protocol:
    """Everything a run's result depends on besides method, budget, multiplier and seed."""

    train: int = 5000
    val: int = 2000
    test: int = 10000
    epochs: int = 15
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1


FULL = {"protocol": Protocol(), "budgets": ("10%", "25%"), "seeds": 2,
        "sweep": {"smh": (1 / 3, 1.0, 3.0), "hashednets": (1 / 3, 1.0, 3.0), "width": (1.0,), "dense": (1.0,)}}
SMOKE = {"protocol": Protocol(train=256, val=64, test=256, epochs=1, warmup_epochs=0.0), "budgets": ("10%", "25%"), "seeds": 1,
         "sweep": {"smh": (1.0,), "hashednets": (1.0,), "width": (1.0,), "dense": (1.0,)}}


def load(root: Path, p: Protocol):
    data = load_dataset("cifar10", root=root)
    for split, n in ((data.train, p.train), (data.val, p.val), (data.test, p.test)):
        split.x, split.y = split.x[:n], split.y[:n]  # the splits are already a fixed permutation's halves; the first n of each
    return data


def build(method: str, budget: str | None, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    base = smhsearch.create_model(ARCH)
    if method == "dense":
        return base
    config = {"smh": lambda: SMH(budget=budget, scale="learnable", scope="all", seed=seed),
              "hashednets": lambda: HashedNets(budget=budget, scope="all", seed=seed),
              "width": lambda: WidthMultiplier(budget=budget, seed=seed)}[method]()
    return smhsearch.compress(base, config)


def train_one(data, p: Protocol, method: str, budget: str | None, mult: float, seed: int) -> dict:
    model = build(method, budget, seed)
    cfg = TrainConfig(epochs=p.epochs, batch_size=p.batch_size, optimizer="adamw", lr=p.lr, weight_decay=p.weight_decay,
                      warmup_epochs=p.warmup_epochs, label_smoothing=p.label_smoothing, variable_lr_mult=mult, seed=seed)
    t0 = time.perf_counter()
    row = {
        "method": method,
        "budget": budget,
        "variable_lr_mult": mult,
        "seed": seed,
        "stored": smhsearch.measure.stored_parameters(model),
    }
    try:
        r = train(model, data, cfg, progress=False)
    except TrainingDiverged as e:
        return {**row, "diverged": str(e)}
    return {**row, "final_val_acc": r.history[-1].val_acc, "best_val_acc": r.best_val_acc, "test_acc": r.test_acc,
            "seconds": time.perf_counter() - t0}


def key(row: dict) -> tuple:
    return row["method"], row["budget"], row["variable_lr_mult"], row["seed"]


class Runs:
    """Finished runs, reused when the protocol and the method's derived rates are the same, and written after every new one."""

    def __init__(self, stem: str, device: torch.device, header: dict) -> None:
        self.file, self.header = ResultsFile(stem, device), header
        self.rows: dict[tuple, dict] = {}
        self.rates: dict[tuple, dict] = {}
        if self.file.old.get("protocol") == header["protocol"]:
            self.rows = {key(r): r for r in self.file.old.get("runs", [])}

    def get(self, data, p: Protocol, method: str, budget: str | None, mult: float, seed: int) -> dict:
        k = (method, budget, mult, seed)
        if (method, budget) not in self.rates:
            self.rates[method, budget] = rate_fingerprint(lambda: build(method, budget, 0), "adamw")
        rates = self.rates[method, budget]
        if k not in self.rows or self.rows[k].get("rates") != rates:  # a run is reused at the rates its method derives now
            self.rows[k] = {**train_one(data, p, method, budget, mult, seed), "rates": rates}
            self.file.trained = True
            self.save(complete=False)
            r = self.rows[k]
            print(
                f"  {method:10s} {budget or '':4s} x{mult:<5g} seed {seed}: "
                + (
                    f"val {100 * r['final_val_acc']:.2f}  test {100 * r['test_acc']:.2f}  ({r['seconds']:.0f} s)"
                    if "test_acc" in r
                    else "diverged"
                ),
                flush=True,
            )
        return self.rows[k]

    def save(self, complete: bool, summary: list | None = None) -> Path:
        return self.file.write({**self.header, "complete": complete, "summary": summary or [], "runs": list(self.rows.values())})


def setting(runs: Runs, data, plan: dict, method: str, budget: str | None) -> dict:
    """Sweep the multiplier on seed 0, then the chosen one on the other seeds."""
    p: Protocol = plan["protocol"]
    tried = [runs.get(data, p, method, budget, m, 0) for m in plan["sweep"][method]]
    ok = [r for r in tried if "final_val_acc" in r]
    if not ok:
        return {"method": method, "budget": budget, "chosen_mult": None, "test_acc": [], "stored": tried[0]["stored"]}
    best = max(ok, key=lambda r: r["final_val_acc"])
    seeds = [best] + [runs.get(data, p, method, budget, best["variable_lr_mult"], s) for s in range(1, plan["seeds"])]
    accs = [r["test_acc"] for r in seeds if "test_acc" in r]
    return {
        "method": method,
        "budget": budget,
        "stored": best["stored"],
        "chosen_mult": best["variable_lr_mult"],
        "test_acc": accs,
        "test_acc_mean": float(np.mean(accs)),
        "test_acc_sd": float(np.std(accs, ddof=1)) if len(accs) > 1 else None,
    }


def table(summary: list[dict]) -> str:
    lines = ["| budget | method | stored params | lr mult (val) | test acc % per seed | mean |", "|---|---|---|---|---|---|"]
    for s in summary:
        accs = " / ".join(f"{100 * a:.2f}" for a in s["test_acc"]) or "diverged"
        mean = f"{100 * s['test_acc_mean']:.2f}" if s.get("test_acc_mean") is not None else ""
        mult = "" if s["method"] in ("dense", "width") else f"{s['chosen_mult']:g}"
        lines.append(f"| {s['budget'] or 'dense'} | {s['method']} | {s['stored']:,} | {mult} | {accs} | {mean} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=data_dir("cifar10"), help="CIFAR-10's folder (default: %(default)s)")
    ap.add_argument(
        "--smoke", action="store_true", help="a tiny run that checks the pipeline (written as *-smoke-*, never a result)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, help=f"instead of the protocol's {FULL['protocol'].epochs}")
    ap.add_argument("--train", type=int, help=f"training images, instead of the protocol's {FULL['protocol'].train}")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    chosen = SMOKE if a.smoke else FULL
    overrides = {k: v for k, v in (("epochs", a.epochs), ("train", a.train)) if v}
    plan = {**chosen, "protocol": Protocol(**{**asdict(chosen["protocol"]), **overrides})}
    p: Protocol = plan["protocol"]
    try:
        data = load(a.root, p)
    except DatasetNotFound as e:
        missing_data("CIFAR-10", a.root, f"{e}; or pass --root")
    device = torch.device("cpu")
    stem = "vit_cifar-smoke" if a.smoke else "vit_cifar"
    header = {"arch": ARCH, "protocol": asdict(p), "budgets": list(plan["budgets"]), "seeds": plan["seeds"],
              "sweep": {k: list(v) for k, v in plan["sweep"].items()}, "threads": a.threads, "data": data.describe()}
    runs = Runs(stem, device, header)
    summary = [setting(runs, data, plan, "dense", None)]
    for budget in plan["budgets"]:
        summary += [setting(runs, data, plan, m, budget) for m in METHODS]
    path = runs.save(complete=True, summary=summary)
    md = table(summary)
    runs.file.write_md(md)
    print(md + f"wrote {path}")


if __name__ == "__main__":
    main()
