"""One precision per stored tensor under a byte budget: a multiple-choice knapsack, solved exactly.

Each tensor i has candidate precisions j, each with the bytes it takes, ``cost[i][j]``, and the loss
increase measured with that tensor alone at that precision, ``loss[i][j]``. Choose one j per tensor so
that the file (the chosen bytes plus the file's fixed overhead) fits the budget and the summed loss is
least. The sum of single-tensor losses is the estimate that sensitivity-driven mixed precision uses
(HAWQ-V3, ModelOpt's AutoQuantize); the choice under it is exact: an integer program solved by HiGHS
through SciPy's ``milp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


class BudgetUnreachable(ValueError):
    """A byte budget below the smallest file any choice makes; it carries that smallest size."""

    def __init__(self, budget: int, smallest: int) -> None:
        self.budget, self.smallest = budget, smallest
        super().__init__(f"max_bytes must be at least the smallest reachable file ({smallest} bytes: every tensor at its "
                         f"smallest precision, the file's overhead included), but got {budget}")


@dataclass(frozen=True)
class Plan:
    """The choice: one option index per tensor, its bytes (overhead included) and its estimated loss increase."""

    choice: tuple[int, ...]
    bytes: int
    loss: float


def solve(cost: Sequence[Sequence[int]], loss: Sequence[Sequence[float]], budget: int, overhead: int = 0) -> Plan:
    """The choice of one option per tensor of least summed ``loss`` whose bytes plus ``overhead`` are at most ``budget``.

    >>> solve([[4, 2, 1], [8, 4, 2]], [[0.0, 0.1, 0.9], [0.0, 0.2, 0.3]], budget=5).choice
    (1, 2)
    """
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array

    if len(cost) != len(loss) or any(len(c) != len(lo) or not c for c, lo in zip(cost, loss)):
        raise ValueError("cost and loss must list the same options, at least one, for every tensor")
    smallest = overhead + sum(min(c) for c in cost)
    if budget < smallest:
        raise BudgetUnreachable(budget, smallest)
    sizes = [len(c) for c in cost]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    c_flat = np.asarray([x for row in cost for x in row], dtype=float)
    l_flat = np.asarray([x for row in loss for x in row], dtype=float)
    n = c_flat.size
    # one option per tensor: a row of ones over its options; the bytes: one row of the costs
    rows = np.repeat(np.arange(len(sizes)), sizes)
    pick_one = csr_array((np.ones(n), (rows, np.arange(n))), shape=(len(sizes), n))
    constraints = [LinearConstraint(pick_one, 1, 1), LinearConstraint(c_flat[None, :], -np.inf, budget - overhead)]
    # Shift each tensor's losses to start at 0 (the same choice; better conditioned for the solver).
    base = np.asarray([min(row) for row in loss], dtype=float)
    objective = l_flat - np.repeat(base, sizes)
    res = milp(objective, constraints=constraints, integrality=np.ones(n), bounds=Bounds(0, 1),
               options={"mip_rel_gap": 0.0})
    if res.status != 0 or res.x is None:
        raise RuntimeError(f"the precision solver failed: {res.message}")
    x = np.round(res.x).astype(int)
    choice = tuple(int(np.flatnonzero(x[offsets[i]:offsets[i + 1]])[0]) for i in range(len(sizes)))
    spent = overhead + sum(int(cost[i][j]) for i, j in enumerate(choice))
    return Plan(choice, spent, float(sum(loss[i][j] for i, j in enumerate(choice))))
