"""``smhsearch run``: run, or resume, the search a space describes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .._errors import ConfigError
from ._common import BadInput


def add(sub) -> None:
    s = sub.add_parser("run", help="run (or resume) the search a space describes")
    s.add_argument("space", type=Path, metavar="SPACE")
    s.add_argument("--out", type=Path, help="run folder (default: runs/<space name>)")
    s.add_argument("--address", help="Ray cluster: auto, or ray://host:port (default: a local Ray)")
    s.add_argument("--max-trials", type=int, help="stop after this many trials in all")
    s.add_argument("--fresh", action="store_true", help="discard the study in the run folder and start over")
    s.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Run (or resume) the search a space describes."""
    if args.max_trials is not None and args.max_trials < 1:  # the flags first: nothing heavy is imported to refuse them
        raise BadInput(f"--max-trials must be >= 1, but got {args.max_trials}")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise BadInput(f"--out: {args.out} is a file; give a run folder")
    from ..search import RunLocked, plan_run, run_search
    from ..search._driver import refuse_unrunnable
    from ..space import SpaceError, check_space, read_space

    try:
        space = read_space(args.space)
        if args.address is None:  # what this machine cannot give is refused before anything is built (the driver's check)
            refuse_unrunnable(space, args.space, None)
        space = check_space(space, args.space)
    except SpaceError as e:
        raise BadInput(str(e)) from None
    from .._storage import StorageError, probe

    try:
        plan = plan_run(space, args.space, args.out, args.max_trials)
        if plan.storage:
            probe(plan.storage)  # before the run folder (or its lock) is made: a bad storage writes nothing
    except StorageError as e:
        raise BadInput(f"{args.space}: {e}") from None
    except ConfigError as e:  # a field of the space (search.max_params that no candidate meets) names its key
        raise BadInput(f"{args.space}: {e.field}: {e}") from None
    except ValueError as e:
        raise BadInput(f"{args.space}: {e}") from None
    print(f"{space.name}: {plan.target_trials} trials over {len(plan.candidates)} candidates -> {plan.run_dir}", flush=True)
    try:
        summary = run_search(plan, address=args.address, fresh=args.fresh)
    except (ValueError, RunLocked) as e:  # the space changed under an existing run folder; another driver holds it
        raise BadInput(str(e)) from None
    print(json.dumps(summary, indent=2, default=str))
    return 0
