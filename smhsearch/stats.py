"""How certain an accuracy is: intervals over the evaluated examples and paired comparisons of two models.

An accuracy measured on n examples is a binomial proportion: :func:`accuracy_interval` gives its Wilson
interval. Two models evaluated on the same examples are compared *paired*: only the examples on which
they disagree carry information, which makes the comparison far tighter than two overlapping intervals
suggest (:func:`compare`: McNemar's exact test, and a paired bootstrap of the difference). Light on
purpose (numpy; SciPy for the exact binomial tail): ``report`` and ``pick`` call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
"""The standard normal's 97.5% quantile: the half-width of a 95% interval in standard errors."""

BOOTSTRAP_ROUNDS = 2000
"""Resamples of a paired bootstrap: the probability it reports is within about 0.01 of its limit."""


def accuracy_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``correct`` successes in ``n`` trials (95% by default), as fractions.

    Wilson's rather than the normal approximation: it stays inside [0, 1] and keeps its coverage near
    0 and 1, where compressed models' errors and a small validation split put many accuracies.

    >>> lo, hi = accuracy_interval(635, 800)
    >>> round(lo, 4), round(hi, 4)
    (0.7643, 0.8204)
    """
    if n <= 0 or not 0 <= correct <= n:
        raise ValueError(f"0 <= correct <= n and n > 0 must hold, but got correct={correct}, n={n}")
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Comparison:
    """Two models' per-example results compared on the same examples (A against B)."""

    n: int
    """Examples both were evaluated on."""
    only_a: int
    """Examples A gets right and B wrong."""
    only_b: int
    """Examples B gets right and A wrong."""
    p_value: float
    """McNemar's exact two-sided test that A and B are equally accurate (binomial on the disagreements)."""
    prob_a_better: float
    """The share of paired bootstrap resamples in which A is more accurate than B (ties count half)."""
    diff_interval: tuple[float, float]
    """95% paired bootstrap interval of accuracy(A) - accuracy(B)."""

    @property
    def diff(self) -> float:
        """accuracy(A) - accuracy(B)."""
        return (self.only_a - self.only_b) / self.n

    def distinguishable(self, level: float = 0.05) -> bool:
        """True when the test rejects equal accuracy at ``level``: the difference is more than noise."""
        return self.p_value < level

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {"n": self.n, "only_a": self.only_a, "only_b": self.only_b, "diff": self.diff, "p_value": self.p_value,
                "prob_a_better": self.prob_a_better, "diff_interval": list(self.diff_interval)}


def mcnemar_p(only_a: int, only_b: int) -> float:
    """McNemar's exact two-sided p-value: under equal accuracy each disagreement goes either way with
    probability 1/2, so the smaller count is a Binomial(only_a + only_b, 1/2) tail (doubled, at most 1)."""
    from scipy.stats import binomtest

    k = only_a + only_b
    return 1.0 if k == 0 else float(binomtest(only_a, k, 0.5).pvalue)


def compare(a: np.ndarray, b: np.ndarray, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> Comparison:
    """Compare A and B on the same examples from their per-example correctness (two boolean arrays).

    >>> rng = np.random.default_rng(0)
    >>> truth = rng.random(1000) < 0.8
    >>> better = truth | (rng.random(1000) < 0.3)
    >>> c = compare(better, truth)
    >>> c.only_b, c.distinguishable(), c.prob_a_better > 0.99
    (0, True, True)
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(
            f"per-example results must be two 1-D arrays over the same examples, but got shapes {a.shape} and {b.shape}"
        )
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    n = a.size
    # The paired bootstrap resamples examples, so only the disagreements move the difference:
    # each resample's counts are a multinomial draw over (only A, only B, the rest).
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [only_a / n, only_b / n, 1 - (only_a + only_b) / n], size=rounds)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    prob = float((diffs > 0).mean() + 0.5 * (diffs == 0).mean())
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return Comparison(n, only_a, only_b, mcnemar_p(only_a, only_b), prob, (float(lo), float(hi)))


def seed_spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation and standard error of one configuration's figures over seeds."""
    if not values:
        raise ValueError("seed_spread needs at least one value")
    v = np.asarray(values, dtype=float)
    sd = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(v.mean()), "std": sd, "sem": sd / math.sqrt(v.size), "seeds": int(v.size)}


def pack(correct: np.ndarray) -> bytes:
    """Per-example correctness packed 8 to a byte (what a trial keeps beside its record)."""
    return np.packbits(np.asarray(correct, dtype=bool)).tobytes()


def unpack(data: bytes, n: int) -> np.ndarray:
    """Inverse of :func:`pack` for ``n`` examples."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits.size < n or bits.size - n >= 8:
        raise ValueError(f"packed results hold {bits.size} bits, which is not {n} examples")
    return bits[:n].astype(bool)
