"""``smhsearch check``: validate a space, count its trials and pre-screen every candidate before any training."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .._errors import ConfigError
from ._common import BadInput, add_weights_flags, load_space, weights_error, weights_from_flags


def add(sub) -> None:
    s = sub.add_parser("check", help="validate a space and pre-screen every candidate's cost")
    s.add_argument("space", type=Path, metavar="SPACE")
    s.add_argument("--address", help="the Ray cluster the run will use (auto, HOST:PORT): its resources are checked "
                                     "(default: this machine's, a warning only)")
    add_weights_flags(s, "read and checked now against every architecture of the space and its dataset's head "
                         "(exists, loads under weights_only, fits)")
    s.add_argument("--json", dest="as_json", action="store_true")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Validate a space, count its trials and pre-screen every candidate's cost before any training."""
    from .._budget import format_count
    from .._fvcore import count_flops
    from ..search._plan import local_shortfall, plan_run
    from ..space import dataset_model_kwargs, dataset_shape

    space_path = args.space
    weights, head = weights_from_flags(args)
    space = load_space(space_path)
    from .._storage import StorageError, probe

    try:
        plan = plan_run(space, space_path)
        if plan.storage:
            probe(plan.storage)  # a server that cannot be reached (or refuses the login) is found now, not at `run`
    except StorageError as e:
        raise BadInput(f"{space_path}: {e}") from None
    except ConfigError as e:  # a field of the space (search.max_params that no candidate meets) names its key
        raise BadInput(f"{space_path}: {e.field}: {e}") from None
    except ValueError as e:
        raise BadInput(f"{space_path}: {e}") from None
    checked = _check_weights(plan.candidates, dataset_model_kwargs(space), weights, head) if weights is not None else None
    rows = []
    t0 = time.perf_counter()
    flops_of: dict[str, int] = {}  # deployed architecture -> FLOPs: counted once per network, not once per candidate
    bases: dict = {}
    kw = dataset_model_kwargs(space)
    _, channels, size = dataset_shape(space)
    shape = (channels, size, size)
    for c in plan.candidates:
        stored, arch, net = _shapes_only(c, kw, bases)
        if arch not in flops_of:
            flops_of[arch] = count_flops(net, shape)  # a meta network is counted on a copy: it is the base others share
        rows.append({"candidate": c.label(), "stored_params": stored, "flops": flops_of[arch], "architecture": arch,
                     "compressed_share": _compressed_share(c, bases[c.arch])})
    summary = {"space": str(space_path), "name": space.name, "candidates": len(plan.candidates), "trials": plan.target_trials,
               "sampler": space.search.sampler, "dataset": space.dataset.name, "epochs": space.train.epochs,
               "prescreen_seconds": round(time.perf_counter() - t0, 1), "prescreen": rows}
    if checked is not None:
        summary["weights"] = checked
    if args.address is None:  # the space may be meant for a cluster: a warning here, a refusal in a local run
        short = local_shortfall(space)
        summary["warnings"] = (
            [f"{short}: `smhsearch run` here would refuse it; a cluster (run --address) must have them"] if short else []
        )
    else:
        from ..search._driver import resources_check

        try:
            refusal, summary["warnings"] = resources_check(space, args.address)
        except (ConnectionError, RuntimeError) as e:
            raise BadInput(f"--address: cannot join the Ray cluster at {args.address}: {str(e).splitlines()[0][:200]}") from None
        if refusal:
            raise BadInput(f"{space_path}: {refusal}")
    for w in summary["warnings"]:
        print(f"warning: {space_path}: {w}", file=sys.stderr)
    if args.as_json:
        print(json.dumps(summary, indent=2))
        return 0
    if checked is not None:
        print(f"{weights}: fits {', '.join(checked['architectures'])} (sha256 {checked['sha256'][:12]}"
              + (f"; re-initialised: {', '.join(checked['reinitialised'])})" if checked["reinitialised"] else ")"))
    print(f"{space_path}: valid. {len(plan.candidates)} candidates, {plan.target_trials} trials ({space.search.sampler}), "
          f"{space.train.epochs} epochs each on {space.dataset.name}")
    if space.space.budget is not None and not isinstance(space.space.budget, list):  # a range: trials sample inside it
        b = space.space.budget
        print(f"space.budget is a range ({b.low} to {b.high}{', log' if b.log else ''}): candidates are shown at its two ends")
    width = max(len(r["candidate"]) for r in rows)
    print(f"{'candidate':<{width}}  {'stored':>9}  {'FLOPs':>9}  {'compressed':>10}  deploys")
    names = {a: f"net {i + 1}" for i, a in enumerate(dict.fromkeys(r["architecture"] for r in rows))}
    for r in rows:
        share = "-" if r["compressed_share"] is None else f"{100 * r['compressed_share']:.1f}%"
        print(f"{r['candidate']:<{width}}  {format_count(r['stored_params']):>9}  {format_count(r['flops']):>9}  {share:>10}  "
              f"{names[r['architecture']]}")
    print("compressed: the share of the base's trainable parameters the method hashes, prunes or factorises "
          "(`smhsearch compress ARCH --method M --dry-run` lists the tensors); '-': dense, or a method that rebuilds the network")
    print(f"pre-screen took {summary['prescreen_seconds']}s for {len(names)} distinct deployed networks; inference speed is "
          "measured in the run, once per network and alone on its device")
    return 0


def _check_weights(candidates, kw, weights: str, head: str) -> dict:
    """The weights file read and loaded into each architecture of the candidates as the space's dataset shapes it
    (its class count, channels, side): what ``--weights`` gives, and the tensors ``--reinit-head`` re-initialises."""
    from ..models import WeightsError, create_model, weights_of

    archs = list(dict.fromkeys(c.arch for c in candidates))
    infos = []
    for arch in archs:
        try:
            infos.append(weights_of(create_model(arch, **kw(arch), weights=weights, head=head)))
        except WeightsError as e:
            raise weights_error(e) from None
    reinitialised = list(dict.fromkeys(t for i in infos for t in i.reinitialised))
    return {**infos[0].to_dict(), "reinitialised": reinitialised, "architectures": archs}


def _shapes_only(c, kw, bases: dict):
    """(stored parameters, deployed-network signature, deployed network) of a candidate, built on the meta device
    from its architecture's base built once (``compress`` leaves a base untouched)."""
    from .. import measure
    from ..methods import compress_shapes
    from ..models import create_model, on_meta
    from ..speed import deployed, signature

    if c.arch not in bases:
        with on_meta():
            bases[c.arch] = create_model(c.arch, **kw(c.arch))
    model = compress_shapes(bases[c.arch], c.method_config(), lambda: create_model(c.arch, **kw(c.arch)))
    net = deployed(model)
    return measure.final_stored_parameters(model), signature(net), net


def _compressed_share(c, base) -> float | None:
    """The share of ``base``'s trainable parameters candidate ``c``'s method compresses (None: dense, or a method that
    rebuilds the architecture rather than choosing tensors)."""
    from ..methods import selection_summary

    cfg = c.method_config()
    if cfg is None:
        return None
    try:
        return selection_summary(base, cfg).share_compressed
    except ValueError:  # the width multiplier: no tensor is chosen
        return None
