"""``smhsearch compress``: compress an architecture to a budget and report its sizes (optionally save it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import ConfigError
from ._common import (BadInput, add_method_flags, add_weights_flags, arch_entry, method_flag, method_from_flags, print_facts,
                      refuse_overwrite, weights_error, weights_from_flags)

START_KEYS = ("init", "fit_error", "fit_error_max")
"""How the method's variables started, shown once for every method (not under the method's name)."""


def add(sub) -> None:
    s = sub.add_parser("compress", help="compress an architecture to a budget and report its sizes")
    s.add_argument("arch", metavar="ARCH", help="architecture: a name (see `smhsearch models`), timm/<name> (pip install "
                   "'smhsearch[timm]') or package.module:factory(key=value, ...)")
    add_method_flags(s, default_method="smh")
    s.add_argument("--seed", type=int, default=0, help="seed of the model and the method")
    s.add_argument("--num-classes", type=int)
    s.add_argument("--in-channels", type=int)
    s.add_argument("--input-size", type=int, help="input side in pixels for FLOPs (default: the architecture's)")
    add_weights_flags(s, "the model starts from them, and the method fits its variables to them (--init fit)")
    s.add_argument("--out", type=Path, help="write the compact file here")
    s.add_argument("--force", action="store_true", help="replace --out if it exists")
    s.add_argument("--dry-run", action="store_true", help="only print what the method would compress and what stays dense")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=main)


def build(arch: str, config, seed: int, weights: str | None = None, head: str = "keep", **model_kwargs):
    """(base, compressed) for ``arch``, its base built from the trained ``weights`` where given."""
    import torch

    from ..methods import compress
    from ..models import WeightsError, create_model

    arch_entry(arch)
    try:
        torch.manual_seed(seed)
        base = create_model(arch, **model_kwargs, weights=weights, head=head)
        return base, compress(base, config)
    except WeightsError as e:  # missing, refused, another architecture's, a head that does not fit without --reinit-head
        raise weights_error(e) from None
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
    facts = {
        "base_parameters": base_count,
        "stored_parameters": stored,
        "virtual_parameters": measure.virtual_parameters(model),
        "compression": base_count / stored,
        "flops_per_sample": measure.flops(model, input_shape),
        "input_shape": list(input_shape),
        "compact_bytes": compact_bytes(model),
        "bits": model.config.bits,
    }
    facts["bytes_per_stored_parameter"] = facts["compact_bytes"] / stored
    described = model.describe()
    facts.update({k: described[k] for k in START_KEYS if k in described})
    facts.update({f"{model.config.method}_{k}": v for k, v in described.items()
                  if not isinstance(v, (list, dict)) and k not in START_KEYS})
    return facts


def main(args: argparse.Namespace) -> int:
    """Compress an architecture to a budget and print its sizes and costs; optionally save the compact file."""
    from ..export import quantize, save_compact
    from ..models import weights_of

    config = method_from_flags(args, args.seed)
    if config.uncompressed:
        raise BadInput("--method: compress needs a compression method, not dense")
    weights, head = weights_from_flags(args, config)
    if args.dry_run:
        return dry_run(args, config, weights, head)
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
    base, model = build(args.arch, config, args.seed, weights, head, num_classes=args.num_classes, in_channels=args.in_channels)
    model.set_progress(1.0)  # report the model as it stands after training (gradual pruning finishes)
    quantize(model)  # and its variables at --bits (post-training quantisation of the initial values: what the file stores)
    try:
        facts = {"arch": args.arch, "method": config.to_dict(),
                 **model_facts(base, model, (base.smhsearch_arch["kwargs"]["in_channels"], side, side))}
        if weights is not None:
            facts["weights"] = weights_of(base).to_dict()
    except RuntimeError as e:  # an input the architecture cannot take (an MLP built for 28 px fed 64 px)
        raise BadInput(f"--input-size: {args.arch} cannot take {side} px inputs: {str(e).splitlines()[0]}") from None
    if args.out is not None:
        facts["saved"] = str(save_compact(model, args.out))
    print_facts(facts, args.as_json)
    return 0


def dry_run(args: argparse.Namespace, config, weights: str | None, head: str) -> int:
    """What ``config`` would compress in ``ARCH`` and what stays dense (count and share), and how its variables would
    start: from a meta-device build, or with ``weights``, a build that reads and checks the file."""
    import contextlib
    import json

    from ..methods import selection_summary
    from ..methods._init import resolved_init
    from ..methods._selection import format_selection
    from ..models import WeightsError, create_model, on_meta, weights_of

    if args.out is not None:
        raise BadInput("--out: --dry-run writes nothing; drop one of them")
    arch_entry(args.arch)
    with on_meta() if weights is None else contextlib.nullcontext():  # the file's tensors need real ones to load into
        try:
            base = create_model(args.arch, num_classes=args.num_classes, in_channels=args.in_channels, weights=weights, head=head)
        except WeightsError as e:
            raise weights_error(e) from None
    try:
        init = resolved_init(base, config, can_fit=config.keeps_architecture)
    except ConfigError as e:
        raise BadInput(f"{method_flag(e)}: {e}") from None
    info = weights_of(base)
    try:
        summary = selection_summary(base, config)
    except ConfigError as e:
        raise BadInput(f"{method_flag(e)}: {e}") from None
    except ValueError as e:  # a method that rebuilds the architecture chooses no tensors
        raise BadInput(f"--method: {e}") from None
    if args.as_json:
        print(
            json.dumps(
                {
                    "method": summary.method,
                    "scope": summary.scope,
                    "total": summary.total,
                    "compressed": summary.compressed,
                    "share_compressed": summary.share_compressed,
                    "init": init,
                    **({"weights": info.to_dict()} if info is not None else {}),
                    "tensors": [t.__dict__ for t in summary.tensors],
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(format_selection(summary))
        print(f"init: {init}" + (f" (from {info.path}, sha256 {info.sha256[:12]}; its fit error is reported once compressed)"
                                 if info is not None else ""))
        if info is not None and info.reinitialised:
            print(f"re-initialised (--reinit-head): {', '.join(info.reinitialised)}")
    return 0
