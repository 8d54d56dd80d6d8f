"""``smhsearch compress``: compress an architecture to a budget and report its sizes (optionally save it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import ConfigError
from ._common import BadInput, add_method_flags, arch_entry, method_flag, method_from_flags, print_facts, refuse_overwrite


def add(sub) -> None:
    s = sub.add_parser("compress", help="compress an architecture to a budget and report its sizes")
    s.add_argument("arch", metavar="ARCH", help="architecture: a name (see `smhsearch models`), timm/<name> (pip install "
                   "'smhsearch[timm]') or package.module:factory(key=value, ...)")
    add_method_flags(s, default_method="smh")
    s.add_argument("--seed", type=int, default=0, help="seed of the model and the method")
    s.add_argument("--num-classes", type=int)
    s.add_argument("--in-channels", type=int)
    s.add_argument("--input-size", type=int, help="input side in pixels for FLOPs (default: the architecture's)")
    s.add_argument("--out", type=Path, help="write the compact file here")
    s.add_argument("--force", action="store_true", help="replace --out if it exists")
    s.add_argument("--dry-run", action="store_true", help="only print what the method would compress and what stays dense")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=main)


def build(arch: str, config, seed: int, **model_kwargs):
    """(base, compressed) for ``arch``."""
    import torch

    from ..methods import compress
    from ..models import create_model

    arch_entry(arch)
    try:
        torch.manual_seed(seed)
        base = create_model(arch, **model_kwargs)
        return base, compress(base, config)
    except ConfigError as e:  # a budget this model cannot meet, a scope that selects nothing in it
        raise BadInput(f"{method_flag(e)}: {e}") from None
    except ValueError as e:  # a model the method cannot take (the width multiplier needs a registry architecture)
        raise BadInput(f"ARCH: {e}") from None


def model_facts(base, model, input_shape: tuple[int, int, int]) -> dict:
    """Sizes and costs of a compressed model, as compress reports them (its compact file's bytes among them)."""
    from .. import measure
    from ..export import compact_bytes

    base_count = measure.stored_parameters(base)
    stored = measure.stored_parameters(model)
    facts = {"base_parameters": base_count, "stored_parameters": stored, "virtual_parameters": measure.virtual_parameters(model),
             "compression": base_count / stored, "flops_per_sample": measure.flops(model, input_shape), "input_shape": list(input_shape),
             "compact_bytes": compact_bytes(model), "bits": model.config.bits}
    facts["bytes_per_stored_parameter"] = facts["compact_bytes"] / stored
    facts.update({f"{model.config.method}_{k}": v for k, v in model.describe().items() if not isinstance(v, (list, dict))})
    return facts


def main(args: argparse.Namespace) -> int:
    """Compress an architecture to a budget and print its sizes and costs; optionally save the compact file."""
    from ..export import quantize, save_compact

    config = method_from_flags(args, args.seed)
    if config.uncompressed:
        raise BadInput("--method: compress needs a compression method, not dense")
    if args.dry_run:
        return dry_run(args, config)
    refuse_overwrite(args.out, args.force)
    # bounds that keep a typo from asking for gigabytes (a 4096 px side is already 200 MB a sample)
    for name, top in (("num_classes", 1_000_000), ("in_channels", 1_000_000), ("input_size", 4096)):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= top:
            raise BadInput(f"--{name.replace('_', '-')}: must lie in 1..{top}, but got {value}")
    entry = arch_entry(args.arch)
    side = args.input_size or entry.default_input_size
    if side is None:
        raise BadInput(f"--input-size: {args.arch} declares no input size (no image_size default); give the side in pixels")
    base, model = build(args.arch, config, args.seed, num_classes=args.num_classes, in_channels=args.in_channels)
    model.set_progress(1.0)  # report the model as it stands after training (gradual pruning finishes)
    quantize(model)  # and its variables at --bits (post-training quantisation of the initial values: what the file stores)
    try:
        facts = {"arch": args.arch, "method": config.to_dict(),
                 **model_facts(base, model, (base.smhsearch_arch["kwargs"]["in_channels"], side, side))}
    except RuntimeError as e:  # an input the architecture cannot take (an MLP built for 28 px fed 64 px)
        raise BadInput(f"--input-size: {args.arch} cannot take {side} px inputs: {str(e).splitlines()[0]}") from None
    if args.out is not None:
        facts["saved"] = str(save_compact(model, args.out))
    print_facts(facts, args.as_json)
    return 0


def dry_run(args: argparse.Namespace, config) -> int:
    """What ``config`` would compress in ``ARCH`` and what stays dense (count and share), from a meta-device build."""
    import json


    from ..methods import selection_summary
    from ..methods._selection import format_selection
    from ..models import create_model, on_meta

    if args.out is not None:
        raise BadInput("--out: --dry-run writes nothing; drop one of them")
    arch_entry(args.arch)
    with on_meta():
        base = create_model(args.arch, num_classes=args.num_classes, in_channels=args.in_channels)
    try:
        summary = selection_summary(base, config)
    except ConfigError as e:
        raise BadInput(f"{method_flag(e)}: {e}") from None
    except ValueError as e:  # a method that rebuilds the architecture chooses no tensors
        raise BadInput(f"--method: {e}") from None
    if args.as_json:
        print(json.dumps({"method": summary.method, "scope": summary.scope, "total": summary.total, "compressed": summary.compressed,
                          "share_compressed": summary.share_compressed, "tensors": [t.__dict__ for t in summary.tensors]}, indent=2, default=str))
    else:
        print(format_selection(summary))
    return 0
