"""The per-tensor precision choice: exact against brute force, within budget, and a clear error below reach."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from smhsearch.methods._knapsack import BudgetUnreachable, solve


def brute(cost, loss, budget, overhead):
    best = None
    for choice in itertools.product(*[range(len(c)) for c in cost]):
        b = overhead + sum(cost[i][j] for i, j in enumerate(choice))
        if b <= budget:
            lo = sum(loss[i][j] for i, j in enumerate(choice))
            if best is None or lo < best - 1e-12:
                best = lo
    return best


@pytest.mark.parametrize("seed", range(12))
def test_the_choice_is_the_exact_optimum(seed):
    rng = np.random.default_rng(seed)
    tensors = int(rng.integers(2, 7))
    numel = rng.integers(10, 2000, size=tensors)
    bits = [16, 8, 4, 1]
    cost = [[int(n * b // 8) + 4 for b in bits] for n in numel]
    loss = [sorted(rng.exponential(1.0, size=len(bits)) * rng.random()) for _ in range(tensors)]
    loss = [[0.0, *row[1:]] for row in loss]
    overhead = int(rng.integers(0, 300))
    smallest, largest = overhead + sum(min(c) for c in cost), overhead + sum(max(c) for c in cost)
    for budget in np.linspace(smallest, largest, 7).astype(int):
        plan = solve(cost, loss, int(budget), overhead)
        assert plan.bytes <= budget
        assert plan.bytes == overhead + sum(cost[i][j] for i, j in enumerate(plan.choice))
        assert plan.loss == pytest.approx(brute(cost, loss, int(budget), overhead), abs=1e-9)


def test_an_unreachable_budget_names_the_smallest_file():
    with pytest.raises(BudgetUnreachable, match=r"at least the smallest reachable file \(110 bytes.*but got 100") as e:
        solve([[40, 10], [80, 20]], [[0, 1], [0, 1]], budget=100, overhead=80)
    assert e.value.smallest == 110 and isinstance(e.value, ValueError)


def test_mismatched_options_are_refused():
    with pytest.raises(ValueError, match="same options"):
        solve([[1, 2]], [[0.0]], budget=10)
