"""torchvision's classification zoo at 10%: how much of each model is hashed and what the compact file weighs.

For every model ``torchvision.models.list_models(module=torchvision.models)`` lists,
built with ``weights=None`` (no download): its trainable parameters, the share SMH
hashes under ``scope="all"`` and the largest tensor left dense, and for SMH and
HashedNets at a 10% budget the stored count and the compact file's size on disk
(float32; the file also holds the batch-norm statistics, which are buffers, not
counted parameters). Sizes only, no timing. Models over ``--max-params`` are listed
as skipped. tests/test_zoo.py checks the same models' outputs.

    python benchmarks/zoo.py                 # every model up to 100M parameters (CPU, ~20 min)
    python benchmarks/zoo.py --models resnet18 vit_b_32

Writes benchmarks/results/zoo-cpu.json (only for the full list).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from pathlib import Path

import torch
import torchvision
from torchvision.models import get_model_weights

import smhsearch
from smhsearch import SMH, Budget, HashedNets
from smhsearch.methods import selection_summary

from _common import write_result  # type: ignore[import-not-found]

BUDGET = 0.10


def declared_params(name: str) -> int:
    return next(iter(get_model_weights(name))).meta["num_params"]


def measure(name: str, folder: Path) -> dict:
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}
    base = torchvision.models.get_model(name, weights=None, **kwargs)
    total = sum(p.numel() for p in base.parameters() if p.requires_grad)
    sel = selection_summary(base, SMH(budget=BUDGET, scope="all"))
    largest = max((t for t in sel.tensors if not t.compressed), key=lambda t: t.numel, default=None)
    row = {"parameters": total, "hashed": sel.compressed, "share_hashed": sel.compressed / total,
           "largest_dense": None if largest is None else {"name": largest.name, "numel": largest.numel, "why": largest.reason}}
    for key, config in (("smh", SMH(budget=BUDGET, scope="all")), ("hashednets", HashedNets(budget=BUDGET, scope="all"))):
        model = smhsearch.compress(base, config)
        path = smhsearch.save_compact(model, folder / f"{name}-{key}.safetensors")
        row[key] = {"stored": model.stored_count(), "compact_bytes": path.stat().st_size}
        path.unlink()
        del model
        gc.collect()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help="these models only (the result file is written for the full list only)")
    p.add_argument("--max-params", type=int, default=100_000_000)
    a = p.parse_args()
    names = a.models or sorted(torchvision.models.list_models(module=torchvision.models))
    models: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if declared_params(name) > a.max_params:
                models[name] = {"skipped": f"{declared_params(name)} parameters > {a.max_params}"}
                print(f"{name:20s} skipped ({declared_params(name) / 1e6:.0f}M parameters)", flush=True)
                continue
            models[name] = row = measure(name, Path(tmp))
            print(
                f"{name:20s} {row['parameters'] / 1e6:7.2f}M  hashed {100 * row['share_hashed']:6.2f}%  "
                f"SMH {row['smh']['compact_bytes'] / 2**20:6.2f} MiB  "
                f"HashedNets {row['hashednets']['compact_bytes'] / 2**20:6.2f} MiB",
                flush=True,
            )
    measured = [r for r in models.values() if "skipped" not in r]
    summary = {
        "models": len(measured),
        "skipped": len(models) - len(measured),
        "min_share_hashed": min(r["share_hashed"] for r in measured),
        "within_budget": all(
            r[k]["stored"] <= Budget.parse(BUDGET).resolve(r["parameters"]) for r in measured for k in ("smh", "hashednets")
        ),
    }
    print(summary)
    if a.models is None:
        path = write_result("zoo", torch.device("cpu"), {"budget": BUDGET, "scope": "all", "torchvision": torchvision.__version__,
                                                          "summary": summary, "results": models})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
