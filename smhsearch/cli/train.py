"""``smhsearch train``: one job (build, compress, train, measure, save), the same one a search trial runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._errors import ConfigError
from ._common import (BadInput, add_method_flags, add_train_flags, add_weights_flags, arch_entry, config_flag, method_from_flags,
                      print_facts, refuse_overwrite, train_from_flags, weights_error, weights_from_flags)


def add(sub) -> None:
    s = sub.add_parser("train", help="compress (or not), train on a dataset and report one model")
    s.add_argument(
        "arch", metavar="ARCH", help="a name (see `smhsearch models`), timm/<name> or package.module:factory(key=value, ...)"
    )
    s.add_argument("--dataset", default="fashion-mnist-small", help="dataset name (default: the embedded fashion-mnist-small)")
    s.add_argument("--root", type=Path, help="dataset folder (datasets that read files)")
    add_method_flags(s, default_method="dense")
    add_train_flags(s)
    add_weights_flags(s, "the model starts from them (fine-tuned, or compressed with --init fit) and, with --distill, "
                         "teaches (the default teacher)")
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
    from ..models import WeightsError
    from ..train import TrainingDiverged

    method = method_from_flags(args, args.seed)
    tcfg = train_from_flags(args, args.seed)
    weights, head = weights_from_flags(args, method)
    arch_entry(args.arch)
    if args.dataset not in DATASETS:
        raise BadInput(f"--dataset: {DATASETS.unknown_message(args.dataset)}")
    try:
        device = resolve_device(args.device, flag="--device")
    except ValueError as e:
        raise BadInput(str(e)) from None
    refuse_overwrite(args.out, args.force)
    try:
        spec = JobSpec(arch=args.arch, method=method, dataset=args.dataset, root=args.root, train=tcfg, weights=weights,
                       head=head)
    except ConfigError as e:  # a rule between the weights and the method or distillation (teacher_epochs with weights)
        raise BadInput(f"{config_flag(e)}: {e}") from None
    record = args.out / "result.json" if args.out is not None else None
    try:
        result = run_job(spec, device=device, record_path=record, progress=None)
    except WeightsError as e:  # read before anything is written: missing, refused, another architecture's, a misfit head
        if record is not None and record.is_file():
            raise
        raise weights_error(e) from None
    except DatasetNotFound as e:
        raise BadInput(f"--dataset/--root: {e}") from None
    except TrainingDiverged as e:
        print(f"smhsearch train: training diverged: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:  # refused before anything was written (a budget the model cannot meet, a root that does not apply)
        if record is not None and record.is_file():
            raise
        raise BadInput(f"{config_flag(e)}: {e}") from None
    except ValueError as e:
        if record is not None and record.is_file():
            raise
        raise BadInput(str(e)) from None
    shown = {
        "arch": args.arch,
        "dataset": args.dataset,
        "method": result.record["spec"]["method"],
        "device": result.record["device"],
        **result.metrics,
    }
    if weights is not None:  # where it started: the file, and the method's start from it (its fit error before training)
        shown.update({"weights": result.record["weights"]["path"], "weights_sha256": result.record["weights"]["sha256"],
                      **{k: v for k, v in result.record["init"].items() if k != "fit_error_layers"}})
    if result.model_file is not None:
        shown["model_file"] = str(result.model_file)
    print_facts(result.record if args.as_json else shown, args.as_json)
    return 0
