"""Everything a report shows, as plain data (no drawing): computed from a run by :func:`report_data`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .. import pareto
from ..runs import Run, Trial

# Trial table columns: (key, header, kind) where kind picks the formatting and the sort.
COLUMNS: list[tuple[str, str, str]] = [
    ("number", "#", "int"),
    ("arch", "architecture", "text"),
    ("method", "method", "text"),
    ("budget", "budget", "text"),
    ("scope", "scope", "text"),
    ("scale", "scale", "text"),
    ("bits", "bits", "text"),
    ("quant", "quant", "text"),
    ("status", "status", "text"),
    ("val_acc", "val acc", "acc"),
    ("test_acc", "test acc", "acc"),
    ("stored_params", "stored params", "count"),
    ("virtual_params", "virtual params", "count"),
    ("flops", "FLOPs", "count"),
    ("throughput", "infer/s", "rate"),
    ("latency_s", "latency ms", "ms"),
    ("compact_bytes", "compact bytes", "count"),
    ("stored_bytes", "stored bytes", "count"),
    ("epoch", "epochs", "int"),
    ("train_seconds", "train s", "rate"),
    ("error", "error", "text"),
]


@dataclass
class ReportData:
    name: str
    run_path: str
    dataset: str
    epochs: int
    acc_key: str
    trials: list[Trial]
    fronts: dict[str, pareto.Front]
    hypervolumes: dict[str, dict[str, float]]  # axis -> method -> hypervolume
    references: dict[str, tuple[float, float]]  # axis -> reference point
    published: list[pareto.PublishedPoint]
    counts: dict[str, int]
    training: dict[str, Any] = field(default_factory=dict)  # the run's shared training settings
    speed_source: str = ""  # where the speed figures come from (the search, or a `smhsearch bench` target)
    generated: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    @property
    def methods(self) -> list[str]:
        return sorted({t.method for t in self.trials})

    @property
    def archs(self) -> list[str]:
        return sorted({t.arch for t in self.trials})

    def best_under(self, max_params: float | None) -> Trial | None:
        """The trial the page's budget control highlights for ``max_params`` (the same rule as ``pick``)."""
        return pareto.pick(self.trials, pareto.Constraints(max_params=max_params), self.acc_key).chosen

    def rows(self) -> list[dict[str, Any]]:
        return [t.as_row() for t in self.trials]


def report_data(run: Run, acc_key: str = "val_acc") -> ReportData:
    """Fronts, hypervolumes, published points and the trial table of ``run``."""
    fronts = {axis: pareto.front(run.trials, axis, acc_key) for axis in pareto.AXES}
    hv = {axis: pareto.hypervolumes(run.trials, axis, acc_key) for axis in pareto.AXES}
    refs = {axis: pareto.reference_point(run.trials, axis, acc_key) for axis in pareto.AXES}
    counts: dict[str, int] = {}
    for t in run.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    return ReportData(name=run.name, run_path=str(run.path), dataset=run.dataset, epochs=run.epochs, acc_key=acc_key,
                      trials=list(run.trials), fronts=fronts, hypervolumes=hv, references=refs,
                      published=pareto.published_points(run.dataset, {t.arch for t in run.trials}, run.families), counts=counts,
                      training=run.training, speed_source=run.speed_source)
