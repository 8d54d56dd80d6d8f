"""Front data for reports and ``pick``, apart from any drawing.

- :func:`front`: the non-dominated trials of a run for accuracy against one cost axis
  (stored parameters, inference throughput or FLOPs), and the step line that joins them.
- :func:`hypervolumes`: the area each method's front dominates, against one reference
  point shared by every method of the run.
- :func:`pick`: the best trial under constraints, or the nearest misses.
- :func:`published_points`: the papers' points that match a run (``smhsearch/baselines``).

Non-domination and hypervolume come from ``moocore``. Only trials that finished
(status ``complete``) are on a front or can be picked: a trial stopped early has an
accuracy from fewer epochs, a lower bound that is not comparable.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Sequence

import numpy as np

from .runs import Trial

# Cost axes: how each is read, its direction, and its title.
AXES: dict[str, dict[str, str]] = {
    "stored_params": {"sense": "min", "title": "stored parameters"},
    "throughput": {"sense": "max", "title": "inference throughput (samples/s)"},
    "flops": {"sense": "min", "title": "FLOPs per sample (multiply-adds)"},
    "stored_bytes": {"sense": "min", "title": "stored bytes (the model file)"},
}
ACCURACY = {"val_acc": "validation accuracy", "test_acc": "test accuracy"}


def _check_keys(x_key: str, acc_key: str) -> None:
    if x_key not in AXES:
        raise ValueError(f"unknown cost axis {x_key!r}; allowed: {', '.join(AXES)}")
    if acc_key not in ACCURACY:
        raise ValueError(f"unknown accuracy {acc_key!r}; allowed: {', '.join(ACCURACY)}")


def eligible(trials: Iterable[Trial], x_key: str, acc_key: str = "val_acc") -> list[Trial]:
    """Finished trials that have both the accuracy and the cost ``x_key``."""
    return [t for t in trials if t.status == "complete" and _num(t.get(acc_key)) is not None and _num(t.get(x_key)) is not None]


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass
class Front:
    x_key: str
    acc_key: str
    points: list[tuple[int, float, float]]  # (trial number, x, accuracy) of every eligible trial
    front: list[tuple[int, float, float]]  # the non-dominated ones, by x ascending
    step: list[tuple[float, float]] = field(default_factory=list)  # the front joined as a staircase

    @property
    def numbers(self) -> list[int]:
        return [n for n, _, _ in self.front]


def non_dominated(x: Sequence[float], acc: Sequence[float], x_sense: str) -> np.ndarray:
    """Mask of the points (x, acc) that no other point dominates (accuracy is maximised)."""
    import moocore

    if len(x) == 0:
        return np.zeros(0, dtype=bool)
    pts = np.column_stack([np.asarray(x, float), np.asarray(acc, float)])
    return moocore.is_nondominated(pts, maximise=[x_sense == "max", True], keep_weakly=True)


def step_path(front: Sequence[tuple[float, float]], x_sense: str) -> list[tuple[float, float]]:
    """The staircase through a front sorted by x ascending: the best accuracy reachable at each cost.

    For a minimised cost, accuracy a_i holds from x_i until the next point's cost (horizontal,
    then up). For a maximised one (throughput), a_i holds for every cost up to x_i (up at x_i's
    left, then across): the line drops at x_i to the next point's accuracy.
    """
    path: list[tuple[float, float]] = []
    for i, (x, a) in enumerate(front):
        path.append((x, a))
        if i + 1 < len(front):
            nx, na = front[i + 1]
            path.append((nx, a) if x_sense == "min" else (x, na))
    return path


def front(trials: Iterable[Trial], x_key: str = "stored_params", acc_key: str = "val_acc") -> Front:
    """The non-dominated finished trials for accuracy against ``x_key``."""
    _check_keys(x_key, acc_key)
    sense = AXES[x_key]["sense"]
    pool = eligible(trials, x_key, acc_key)
    pts = [(t.number, float(t.get(x_key)), float(t.get(acc_key))) for t in pool]
    mask = non_dominated([p[1] for p in pts], [p[2] for p in pts], sense)
    best = sorted((p for p, m in zip(pts, mask) if m), key=lambda p: (p[1], p[2] if sense == "max" else -p[2], p[0]))
    return Front(x_key, acc_key, pts, best, step_path([(x, a) for _, x, a in best], sense))


def reference_point(trials: Iterable[Trial], x_key: str, acc_key: str = "val_acc") -> tuple[float, float]:
    """The hypervolume's reference: accuracy 0, and a cost twice as bad as the run's worst."""
    xs = [float(t.get(x_key)) for t in eligible(trials, x_key, acc_key)]
    if not xs:
        return (float("nan"), 0.0)
    return (max(xs) * 2.0, 0.0) if AXES[x_key]["sense"] == "min" else (min(xs) / 2.0, 0.0)


def hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float], x_key: str = "stored_params") -> float:
    """The area ``points`` ((cost, accuracy) pairs) dominate in (log10 cost, accuracy), up to ``ref`` (cost, accuracy)."""
    import moocore

    if not points:
        return 0.0
    pts = np.array([[math.log10(float(x)), float(a)] for x, a in points])
    maximise = [AXES[x_key]["sense"] == "max", True]
    return float(moocore.hypervolume(pts, ref=[math.log10(ref[0]), ref[1]], maximise=maximise))


def hypervolumes(trials: Iterable[Trial], x_key: str = "stored_params", acc_key: str = "val_acc") -> dict[str, float]:
    """Per method, the area its finished trials dominate in (log10 cost, accuracy), up to :func:`reference_point`.

    The unit is accuracy x decades of cost; every method of a run shares one reference
    point, so the numbers compare methods within a run (not across runs).
    """
    _check_keys(x_key, acc_key)
    trials = list(trials)
    ref = reference_point(trials, x_key, acc_key)
    out: dict[str, float] = {}
    for method in sorted({t.method for t in trials}):
        pool = eligible([t for t in trials if t.method == method], x_key, acc_key)
        if pool:
            out[method] = hypervolume([(float(t.get(x_key)), float(t.get(acc_key))) for t in pool], ref, x_key)
    return out


@dataclass
class Constraints:
    max_params: float | None = None
    min_throughput: float | None = None
    min_accuracy: float | None = None  # a fraction (0.8), on the same accuracy as the pick
    max_latency: float | None = None  # seconds for one sample alone (batch 1)
    max_bytes: float | None = None  # bytes of the model file (stored_bytes)

    def shortfalls(self, t: Trial, acc_key: str) -> dict[str, float]:
        """Each unmet constraint and by how much, relative to its bound (0.1 = 10% short)."""
        out = {}
        p, thr, acc = _num(t.get("stored_params")), _num(t.get("throughput")), _num(t.get(acc_key))
        if self.max_params is not None and (p is None or p > self.max_params):
            out["max_params"] = math.inf if p is None else p / self.max_params - 1
        if self.min_throughput is not None and (thr is None or thr < self.min_throughput):
            out["min_throughput"] = math.inf if thr is None else 1 - thr / self.min_throughput
        if self.min_accuracy is not None and (acc is None or acc < self.min_accuracy):
            out["min_accuracy"] = math.inf if acc is None else (self.min_accuracy - acc) / max(self.min_accuracy, 1e-9)
        lat = _num(t.get("latency_s"))
        if self.max_latency is not None and (lat is None or lat > self.max_latency):
            out["max_latency"] = math.inf if lat is None else lat / self.max_latency - 1
        b = _num(t.get("stored_bytes"))
        if self.max_bytes is not None and (b is None or b > self.max_bytes):
            out["max_bytes"] = math.inf if b is None else b / self.max_bytes - 1
        return out

    def describe(self) -> str:
        parts = []
        if self.max_params is not None:
            parts.append(f"stored parameters <= {self.max_params:,.0f}")
        if self.min_throughput is not None:
            parts.append(f"throughput >= {self.min_throughput:,.1f}/s")
        if self.min_accuracy is not None:
            parts.append(f"accuracy >= {100 * self.min_accuracy:.2f}%")
        if self.max_latency is not None:
            parts.append(f"latency <= {1e3 * self.max_latency:,.3g} ms")
        if self.max_bytes is not None:
            parts.append(f"stored bytes <= {self.max_bytes:,.0f}")
        return ", ".join(parts) or "no constraint"


@dataclass
class Pick:
    chosen: Trial | None
    satisfying: list[Trial]
    nearest: list[tuple[Trial, dict[str, float]]]  # when nothing satisfies: the closest misses
    acc_key: str


def rank_key(t: Trial, acc_key: str) -> tuple:
    """Best first: higher accuracy, then fewer stored parameters, then higher throughput, then the earlier trial."""
    return (-float(t.get(acc_key)), float(t.get("stored_params") or math.inf), -float(t.get("throughput") or 0.0), t.number)


def pick(trials: Iterable[Trial], constraints: Constraints, acc_key: str = "val_acc", nearest: int = 3) -> Pick:
    """The most accurate finished trial within ``constraints`` (selection on ``acc_key``: validation by default)."""
    _check_keys("stored_params", acc_key)
    pool = [t for t in trials if t.status == "complete" and _num(t.get(acc_key)) is not None]
    ok = sorted((t for t in pool if not constraints.shortfalls(t, acc_key)), key=lambda t: rank_key(t, acc_key))
    if ok:
        return Pick(ok[0], ok, [], acc_key)
    misses = sorted(((t, constraints.shortfalls(t, acc_key)) for t in pool),
                    key=lambda tm: (sum(tm[1].values()), rank_key(tm[0], acc_key)))
    return Pick(None, [], misses[:nearest], acc_key)


@dataclass
class PublishedPoint:
    dataset: str
    arch: str
    family: str
    series: str
    params: float
    accuracy: float  # percent
    source: str
    where: str
    note: str
    file: str
    bytes: float | None = None
    """The model's size in bytes where the paper gives it (Deep Compression) or its memory measure implies it."""


def load_baselines() -> list[PublishedPoint]:
    """Every published point shipped in ``smhsearch/baselines/*.csv``."""
    out = []
    for entry in sorted(resources.files("smhsearch.baselines").iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".csv"):
            continue
        with entry.open(newline="") as f:
            for row in csv.DictReader(f):
                out.append(
                    PublishedPoint(
                        row["dataset"],
                        row["arch"],
                        row["family"],
                        row["series"],
                        float(row["params"]),
                        float(row["accuracy"]),
                        row["source"],
                        row["where"],
                        row.get("note", ""),
                        entry.name,
                        float(row["bytes"]) if row.get("bytes") else None,
                    )
                )
    return out


def published_points(dataset: str, archs: Iterable[str], families: dict[str, str] | None = None) -> list[PublishedPoint]:
    """The published points for ``dataset`` whose architecture is of the same family as one of ``archs``.

    ``families`` maps each of ``archs`` to its family (a run records them, so a report needs no
    torch); without it the architecture registry is asked.
    """
    if families is None:
        from .models import MODELS

        families = {a: MODELS.get(a).family for a in archs if a in MODELS}
    wanted = {families.get(a) for a in archs} - {None}
    return [p for p in load_baselines() if p.dataset == dataset and p.family in wanted]
