"""Prune: exact nonzeros at the end, the Zhu & Gupta schedule, global magnitude, compact bits."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

import smhsearch
from smhsearch import Prune
from smhsearch.models import create_model

from .conftest import perturb


def _nonzeros(model) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())


def test_keeps_exactly_the_budgets_nonzeros():
    base = create_model("resnet20")
    m = smhsearch.compress(base, Prune(budget="10%"))
    assert m.stored_count() == sum(p.numel() for p in base.parameters())  # dense before training
    m.set_progress(1.0)
    budget = int(0.10 * 269_722)
    assert m.stored_count() == budget
    dense = smhsearch.materialize(m)
    bn = sum(p.numel() for mod in dense.modules() if isinstance(mod, torch.nn.BatchNorm2d) for p in mod.parameters())
    nonzero_bn = sum(
        int((p != 0).sum()) for mod in dense.modules() if isinstance(mod, torch.nn.BatchNorm2d) for p in mod.parameters()
    )
    assert _nonzeros(dense) - nonzero_bn == budget - bn  # an independent count on the dense model


def test_schedule_is_zhu_gupta_and_monotone():
    m = smhsearch.compress(create_model("resnet8"), Prune(budget="20%", start=0.2, end=0.8, steps=6))
    N, keep = m.hashed_count, m.keep
    seen = []
    for p in [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
        m.set_progress(p)
        seen.append(int(m.mask.sum()))
        t = min(max((p - 0.2) / 0.6, 0.0), 1.0)
        level = int(t * 6 + 1e-9)
        assert seen[-1] == N - round((N - keep) * (1 - (1 - level / 6) ** 3))
    assert seen == sorted(seen, reverse=True)
    assert seen[0] == N and seen[-1] == keep
    m.set_progress(0.0)  # progress never un-prunes
    assert int(m.mask.sum()) == keep


def test_pruning_is_global_by_magnitude():
    m = smhsearch.compress(create_model("resnet8"), Prune(budget="30%"))
    with torch.no_grad():  # one layer far larger than all others: global selection keeps it whole
        m.weights[0].copy_(10.0 * torch.sign(m.weights[0]) + m.weights[0])
    m.set_progress(1.0)
    first = torch.split(m.mask, m.sizes)[0]
    assert first.all()
    kept = torch.cat([w.detach().reshape(-1) for w in m.weights]).abs()[m.mask]
    dropped_max = torch.cat([w.detach().reshape(-1) for w in m.weights]).abs()[~m.mask].max()
    assert dropped_max == 0  # pruned weights are zeroed in place
    assert kept.min() > 0


def test_progress_after_loading_a_pruned_state_never_unprunes():
    """set_progress compares with a host copy of the level (no GPU sync each step); a state-dict load must refresh it."""
    a = smhsearch.compress(create_model("resnet8"), Prune(budget="20%", steps=4))
    a.set_progress(1.0)
    b = smhsearch.compress(create_model("resnet8"), Prune(budget="20%", steps=4))
    b.load_state_dict(a.state_dict())  # what resuming a checkpoint does
    b.set_progress(0.3)  # level 1 of 4: already passed
    assert b.describe()["level"] == 4 and int(b.mask.sum()) == b.keep
    assert torch.equal(b.mask, a.mask)


def test_pruned_weights_get_no_gradient():
    m = smhsearch.compress(create_model("resnet8"), Prune(budget="30%"))
    m.set_progress(1.0)
    m.train()
    m(torch.randn(4, 3, 16, 16)).sum().backward()
    grads = torch.cat([w.grad.reshape(-1) for w in m.weights])
    assert grads[~m.mask].abs().max() == 0
    assert grads[m.mask].abs().max() > 0


def test_compact_file_stores_values_and_bits(tmp_path):
    torch.manual_seed(0)
    base = create_model("resnet20")
    m = smhsearch.compress(base, Prune(budget="10%"))
    m.set_progress(1.0)
    perturb(m).eval()  # trained-like weights and BN statistics, so a rebuild from the config alone cannot pass
    path = smhsearch.save_compact(m, tmp_path / "p.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("values").numel() == m.keep
        assert f.get_tensor("mask_bits").numel() == (m.hashed_count + 7) // 8
        assert not any(k.startswith("weights.") for k in f.keys())
    assert path.stat().st_size < 0.2 * 4 * 269_722
    torch.manual_seed(1)  # load_compact's rebuild starts from other weights
    loaded = smhsearch.load_compact(path)
    assert loaded.stored_count() == m.stored_count()
    assert torch.equal(loaded.mask, m.mask) and loaded.describe() == m.describe()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))
        torch.testing.assert_close(smhsearch.materialize(loaded)(x), m(x))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"budget": 0.1, "start": 0.8, "end": 0.5}, r"0 <= start < end <= 1 must hold, but got \(start=0.8, end=0.5\)"),
     ({"budget": 0.1, "end": 1.5}, "start < end <= 1"), ({"budget": 0.1, "steps": 0}, "steps must be an int >= 1"),
     ({"budget": 0.1, "scope": "bn"}, "scope must be one of")],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Prune(**kwargs)


def test_budget_below_unpruned_is_refused():
    with pytest.raises(ValueError, match=r"Prune: budget is too small: the unpruned parameters .*, but got budget=.* \(= \d+\)"):
        smhsearch.compress(create_model("resnet20"), Prune(budget=100, scope="conv"))
