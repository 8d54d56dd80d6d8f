"""One timing protocol for every speed figure (the search's speed phase, ``smhsearch bench``, the int8 report).

Step times are taken in rounds of :data:`ROUND` until their relative spread (interquartile
range / median) is at most ``max_spread`` or ``max_steps`` steps were timed; the first round
warms up :data:`WARMUP` steps, later ones one. A figure is the median, recorded with its
spread, its step count and the protocol that produced it, so figures of different engines
(PyTorch, ONNX Runtime) and of different commands compare. A fixed count of rounds would
stop as early on a machine whose timings still wander as on a quiet one.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

MAX_SPREAD = 0.03
"""Stop adding rounds once (Q3 - Q1) / median of step times is at most this."""
ROUND, MAX_STEPS, WARMUP = 10, 100, 3

StepTimer = Callable[[int, int], list[float]]
"""``steps(warmup, repeats)``: runs ``warmup`` untimed steps, then returns the seconds of ``repeats`` timed ones."""


def spread(times: Sequence[float]) -> float:
    """(Q3 - Q1) / median of ``times``."""
    if len(times) < 4:
        return float("inf")
    q1, med, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / med


def timed_rounds(time_steps: StepTimer, max_spread: float = MAX_SPREAD, max_steps: int = MAX_STEPS,
                 warmup: int = WARMUP) -> list[float]:
    """Step times from ``time_steps(warmup, repeats)`` in rounds of :data:`ROUND` until their spread is at most
    ``max_spread`` or ``max_steps`` steps were timed (the first round warms up ``warmup`` steps, later ones one)."""
    times: list[float] = []
    while len(times) < max_steps:
        times += time_steps(warmup if not times else 1, min(ROUND, max_steps - len(times)))
        if spread(times) <= max_spread:
            break
    return times


def protocol(max_spread: float = MAX_SPREAD, max_steps: int = MAX_STEPS) -> str:
    """How a figure was timed, as results record it."""
    return f"median of rounds of {ROUND} steps until (Q3-Q1)/median <= {max_spread:g}, at most {max_steps} steps"


def speed_figures(timer: Callable[[int], StepTimer], batch_size: int, max_spread: float = MAX_SPREAD,
                  max_steps: int = MAX_STEPS) -> dict[str, Any]:
    """Throughput at ``batch_size`` and latency at batch 1, timed by ``timer(batch)``'s steps under the protocol.

    >>> f = speed_figures(lambda batch: lambda warmup, repeats: [1e-3 * batch] * repeats, 8)
    >>> round(f["throughput"]), f["latency_s"], f["steps"], f["throughput_spread"]
    (1000, 0.001, 10, 0.0)
    """
    steps, single = timed_rounds(timer(batch_size), max_spread, max_steps), timed_rounds(timer(1), max_spread, max_steps)
    return {
        "throughput": batch_size / statistics.median(steps),
        "throughput_spread": spread(steps),
        "latency_s": statistics.median(single),
        "latency_spread": spread(single),
        "steps": len(steps),
        "batch_size": batch_size,
        "protocol": protocol(max_spread, max_steps),
    }


def onnx_timer(session, shape: Sequence[int], input_name: str = "input") -> Callable[[int], StepTimer]:
    """Step timers of an ``onnxruntime.InferenceSession`` on random float32 inputs of per-sample ``shape``."""
    import numpy as np

    def timer(batch: int) -> StepTimer:
        x = np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)

        def steps(warmup: int, repeats: int) -> list[float]:
            for _ in range(warmup):
                session.run(None, {input_name: x})
            out = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                session.run(None, {input_name: x})
                out.append(time.perf_counter() - t0)
            return out

        return steps

    return timer
