"""``smhsearch train``: one job (build, compress, train, measure, save), the same one a search trial runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._errors import ConfigError
from ._common import (BadInput, add_method_flags, add_train_flags, arch_entry, method_flag, method_from_flags, print_facts,
                      refuse_overwrite, train_flag, train_from_flags)


def add(sub) -> None:
    s = sub.add_parser("train", help="compress (or not), train on a dataset and report one model")
    s.add_argument("arch", metavar="ARCH", help="a name (see `smhsearch models`), timm/<name> or package.module:factory(key=value, ...)")
    s.add_argument("--dataset", default="fashion-mnist-small", help="dataset name (default: the embedded fashion-mnist-small)")
    s.add_argument("--root", type=Path, help="dataset folder (datasets that read files)")
    add_method_flags(s, default_method="dense")
    add_train_flags(s)
    s.add_argument("--seed", type=int, default=0, help="seed of the model, the method and training")
    s.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda, cuda:N")
    s.add_argument("--out", type=Path, help="folder for result.json and model.safetensors (new or empty)")
    s.add_argument("--force", action="store_true", help="write into --out even if it holds files")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Compress (or not), train on a dataset, measure, and report one model."""
    from ..data import DATASETS, DatasetNotFound
    from ..device import resolve_device
    from ..job import JobSpec, run_job
    from ..train import TrainingDiverged

    method = method_from_flags(args, args.seed)
    tcfg = train_from_flags(args, args.seed)
    arch_entry(args.arch)
    if args.dataset not in DATASETS:
        raise BadInput(f"--dataset: {DATASETS.unknown_message(args.dataset)}")
    try:
        device = resolve_device(args.device, flag="--device")
    except ValueError as e:
        raise BadInput(str(e)) from None
    refuse_overwrite(args.out, args.force)
    spec = JobSpec(arch=args.arch, method=method, dataset=args.dataset, root=args.root, train=tcfg)
    record = args.out / "result.json" if args.out is not None else None
    try:
        result = run_job(spec, device=device, record_path=record, progress=None)
    except DatasetNotFound as e:
        raise BadInput(f"--dataset/--root: {e}") from None
    except TrainingDiverged as e:
        print(f"smhsearch train: training diverged: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:  # refused before anything was written (a budget the model cannot meet, a root that does not apply)
        if record is not None and record.is_file():
            raise
        raise BadInput(f"{train_flag(e) if e.field.startswith('distill.') else method_flag(e)}: {e}") from None
    except ValueError as e:
        if record is not None and record.is_file():
            raise
        raise BadInput(str(e)) from None
    shown = {"arch": args.arch, "dataset": args.dataset, "method": result.record["spec"]["method"], "device": result.record["device"],
             **result.metrics}
    if result.model_file is not None:
        shown["model_file"] = str(result.model_file)
    print_facts(result.record if args.as_json else shown, args.as_json)
    return 0
