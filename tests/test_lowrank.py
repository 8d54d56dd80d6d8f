"""LowRank: ranks meet the budget, factorisation is exact, depthwise stays dense, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import smhsearch
from smhsearch import LowRank
from smhsearch.methods._lowrank import _matrix, ranks_for, stored_at
from smhsearch.models import create_model

from .conftest import UserNet


@pytest.mark.parametrize("name,budget", [("resnet20", "25%"), ("mlp_1x1000", "1/8"), ("mobilenet_v2", "40%")])
def test_budget_is_met_and_c_is_the_largest(name, budget):
    base = create_model(name, num_classes=10)
    total = sum(p.numel() for p in base.parameters())
    T = total // 8 if budget == "1/8" else int(float(budget[:-1]) / 100 * total)
    m = smhsearch.compress(base, LowRank(budget=T))
    independent = sum(p.numel() for p in m.parameters())
    assert m.stored_count() == independent <= T
    candidates = LowRank(budget=T).select(base)
    rest = total - sum(t.numel for t in candidates)
    assert stored_at(candidates, ranks_for(candidates, m.c), rest) == m.stored_count()
    # the next c at which any layer's rank grows does not fit: c is the largest
    ranks = ranks_for(candidates, m.c)
    grow = min((r + 1) * sum(_matrix(t)) for t, r in zip(candidates, ranks) if r)
    assert stored_at(candidates, ranks_for(candidates, grow), rest) > T
    for t, r in zip(m.targets, m.ranks):
        assert r * (t.shape[0] + t.numel // t.shape[0]) < t.numel  # only layers that save are factorised
        assert r == max(1, int(m.c // sum(_matrix(t))))  # each layer once: r = c / (rows + cols)


def test_a_small_classifier_keeps_its_rank():
    # the equal-share rule cut the 1000-to-10 classifier to rank 1 at 1/8 (35% test error on MNIST); it stays dense now
    base = create_model("mlp_1x1000", num_classes=10)
    m = smhsearch.compress(base, LowRank(budget="12.5%"))
    assert [t.name for t in m.targets] == ["net.1.weight"] and m.ranks[0] >= 40  # the 784-to-1000 layer takes the cut


def test_factors_are_exactly_a_kxk_conv_then_1x1():
    base = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1, bias=True))
    m = smhsearch.compress(base, LowRank(budget=600)).eval()
    A, B = m.A[0], m.B[0]
    r = A.shape[0]
    conv_r = nn.Conv2d(8, r, 3, padding=1, bias=False)
    conv_r.weight.data = A.detach().view(r, 8, 3, 3)
    conv_1 = nn.Conv2d(r, 16, 1, bias=True)
    conv_1.weight.data = B.detach().view(16, r, 1, 1)
    conv_1.bias.data = m.base[0].bias.detach()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(conv_1(conv_r(x)), m(x), rtol=1e-4, atol=1e-5)


def test_depthwise_stays_dense_and_init_std_matches():
    base = UserNet()
    m = smhsearch.compress(base, LowRank(budget=0.8))
    names = {t.name for t in m.targets}
    assert "dw.weight" not in names and "dw.weight" in dict(m.base.named_parameters())
    big = create_model("resnet32")
    lr = smhsearch.compress(big, LowRank(budget="30%"))
    dense = dict(smhsearch.materialize(lr).named_parameters())
    for t in lr.targets:
        ref = dict(big.named_parameters())[t.name].std().item()
        assert dense[t.name].std().item() / ref == pytest.approx(1.0, rel=1e-3)


def test_bad_input():
    with pytest.raises(ValueError, match="scope must be one of"):
        LowRank(budget=0.5, scope="x")
    with pytest.raises(ValueError, match=r"LowRank: budget is too small: rank 1 everywhere.*, but got budget=.* \(= \d+\)"):
        smhsearch.compress(create_model("resnet32"), LowRank(budget=3000))
    with pytest.raises(ValueError, match=r"LowRank: scope must select factorisable weights \(two or more dimensions, "
                                         r"groups=1, larger than rank 1\), but got scope=.*, which selects none"):
        smhsearch.compress(nn.Sequential(nn.Conv2d(4, 4, 3, groups=4)), LowRank(budget=10))
