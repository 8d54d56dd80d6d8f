"""The objectives a search can optimise: each one's metric in a trial's record and its direction. One table, read by
the space's schema (the allowed names), the study (its directions), the searcher and the scheduler (the metrics)."""

from __future__ import annotations

from typing import Literal, NamedTuple, Sequence


class Objective(NamedTuple):
    key: str
    """The metric a trial reports and records."""
    mode: Literal["max", "min"]


OBJECTIVES: dict[str, Objective] = {
    "accuracy": Objective("val_acc", "max"),
    "stored_params": Objective("stored_params", "min"),
    "throughput": Objective("throughput", "max"),
    "flops": Objective("flops", "min"),
    "stored_bytes": Objective("stored_bytes", "min"),
}


def keys_and_modes(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Report keys and directions of the objectives ``names``, in their order.

    >>> keys_and_modes(["accuracy", "stored_params"])
    (['val_acc', 'stored_params'], ['max', 'min'])
    """
    return [OBJECTIVES[n].key for n in names], [OBJECTIVES[n].mode for n in names]
