"""Intervals and paired comparisons: checked against SciPy's own and against simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from smhsearch.stats import accuracy_interval, compare, pack, seed_spread, unpack


@pytest.mark.parametrize("correct,n", [(0, 10), (1, 10), (635, 800), (799, 800), (800, 800), (5000, 10000)])
def test_wilson_interval_is_scipys(correct, n):
    ci = binomtest(correct, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = accuracy_interval(correct, n)
    assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)


def test_wilson_interval_covers_the_true_accuracy_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = total = 0
    for p in (0.5, 0.8, 0.95, 0.99):
        for correct in rng.binomial(800, p, size=2000):
            lo, hi = accuracy_interval(int(correct), 800)
            hits += lo <= p <= hi
            total += 1
    assert 0.93 <= hits / total <= 0.97


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="0 <= correct <= n and n > 0 must hold, but got correct=9, n=8"):
        accuracy_interval(9, 8)
    with pytest.raises(ValueError, match="same examples"):
        compare(np.ones(5, bool), np.ones(6, bool))


def test_compare_counts_disagreements_and_its_p_value_is_mcnemars_exact():
    a = np.array([1, 1, 1, 0, 0, 1, 1, 0, 1, 1] * 50, bool)
    b = np.array([1, 0, 1, 0, 1, 0, 1, 0, 0, 1] * 50, bool)
    c = compare(a, b)
    assert (c.only_a, c.only_b, c.n) == (150, 50, 500)
    assert c.diff == pytest.approx((a.mean() - b.mean()))
    assert c.p_value == pytest.approx(binomtest(150, 200, 0.5).pvalue)
    assert c.distinguishable() and c.diff_interval[0] > 0 and c.prob_a_better > 0.99
    r = compare(b, a)
    assert r.prob_a_better == pytest.approx(1 - c.prob_a_better, abs=1e-12) and r.p_value == c.p_value


def test_identical_models_are_not_distinguishable():
    a = np.random.default_rng(1).random(800) < 0.8
    c = compare(a, a.copy())
    assert c.p_value == 1.0 and not c.distinguishable() and c.prob_a_better == 0.5 and c.diff_interval == (0.0, 0.0)


def test_paired_comparison_calls_a_real_difference_that_two_intervals_cannot():
    # Two models that agree on most examples: 1 point apart on 800 examples, inside each other's intervals,
    # yet every disagreement goes A's way.
    rng = np.random.default_rng(2)
    b = rng.random(800) < 0.8
    a = b.copy()
    a[np.flatnonzero(~b)[:8]] = True
    lo_a, hi_a = accuracy_interval(int(a.sum()), 800)
    lo_b, hi_b = accuracy_interval(int(b.sum()), 800)
    assert lo_a < hi_b  # the intervals overlap
    assert compare(a, b).distinguishable()


def test_the_paired_verdict_errs_at_its_level_when_models_are_equal():
    rng = np.random.default_rng(3)
    wrong = 0
    for _ in range(400):  # two equally accurate models (80%) that disagree on some of the examples
        a = rng.random(800) < 0.8
        b = np.where(rng.random(800) < 0.2, rng.random(800) < 0.8, a)
        wrong += compare(a, b, rounds=200).distinguishable()
    assert wrong / 400 <= 0.08


def test_pack_round_trips_and_checks_the_count():
    x = np.random.default_rng(4).random(801) < 0.5
    data = pack(x)
    assert len(data) == 101 and np.array_equal(unpack(data, 801), x)
    with pytest.raises(ValueError, match="not 900 examples"):
        unpack(data, 900)


def test_seed_spread():
    s = seed_spread([0.80, 0.82, 0.81])
    assert s["mean"] == pytest.approx(0.81) and s["std"] == pytest.approx(0.01) and s["seeds"] == 3
    assert seed_spread([0.8])["std"] == 0.0
