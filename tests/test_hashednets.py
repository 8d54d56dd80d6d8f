"""HashedNets: K really independent hashes, indices as buffers, budget, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

import smhsearch
from smhsearch import HashedNets
from smhsearch.models import create_model

from .conftest import perturb, tiny
from .test_smh import _OpCounter


def _raw(m) -> torch.Tensor:
    with torch.no_grad():
        return m._gather()


def test_k_index_maps_are_independent():
    m = smhsearch.compress(create_model("resnet20"), HashedNets.table1("30%", hashes=2))  # one pool: K sub-pools
    idx = m.index.long()
    P0 = m.sub_pools[0]
    local0, local1 = idx[:, 0], idx[:, 1] - P0
    assert (local0 < P0).all() and (idx[:, 1] >= P0).all()  # each hash has its own sub-pool
    same = (local0 == local1).float().mean().item()
    assert same < 5 / P0  # a shared index map (the official code's bug) would give 1.0
    sign_agree = (m.signs[:, 0] == m.signs[:, 1]).float().mean().item()
    assert 0.45 < sign_agree < 0.55
    occupancy = torch.bincount(local0, minlength=P0).float()
    assert occupancy.std() / occupancy.mean() < 0.5  # roughly uniform: N/P ~ 4 per bucket


def test_two_hashes_are_not_one_hash_in_disguise():
    base, _ = tiny("resnet8")
    one = smhsearch.compress(base, HashedNets(budget=0.3, hashes=1))
    two = smhsearch.compress(base, HashedNets(budget=0.3, hashes=2))
    distinct = lambda m: np.unique(np.round(_raw(m).abs().numpy(), 6)).size  # noqa: E731
    assert distinct(one) <= one.pool.numel()  # weights sharing a variable are equal up to sign
    assert distinct(two) > 0.9 * two.hashed_count  # pairs of variables: almost every weight distinct
    assert distinct(two) > 3 * two.pool.numel()


def test_per_layer_pools_stay_in_their_layer():
    base = create_model("resnet8")
    m = smhsearch.compress(base, HashedNets(budget="40%", hashes=2, per_layer=True))
    bounds = np.concatenate([[0], np.cumsum(m.sub_pools)])
    start = 0
    for layer, t in enumerate(m.targets):
        rows = m.index[start : start + t.numel].long()
        for k in range(2):
            g = layer * 2 + k
            assert rows[:, k].min() >= bounds[g] and rows[:, k].max() < bounds[g + 1]
        start += t.numel
    sizes = [m.sub_pools[2 * i] + m.sub_pools[2 * i + 1] for i in range(len(m.targets))]
    numels = [t.numel for t in m.targets]
    assert np.corrcoef(sizes, numels)[0, 1] > 0.99  # pools in proportion to the layers


def test_budget_is_met_with_the_pool():
    base = create_model("resnet32")
    for k in (1, 2, 10):
        unhashed = sum(p.numel() for p in smhsearch.compress(base, HashedNets(budget="46K")).base.parameters())
        one_pool = smhsearch.compress(base, HashedNets.table1("46K", hashes=k))
        assert one_pool.stored_count() == one_pool.pool.numel() + unhashed
        assert 46_000 - k < one_pool.stored_count() <= 46_000
        per_layer = smhsearch.compress(base, HashedNets(budget="46K", hashes=k))
        assert per_layer.stored_count() == per_layer.pool.numel() + unhashed == 46_000  # shares by largest remainder


def test_default_is_per_layer_and_table1_is_one_pool():
    assert HashedNets(budget=0.1).per_layer is True  # Chen et al.'s form
    assert HashedNets.table1(0.1, hashes=2) == HashedNets(budget=0.1, hashes=2, per_layer=False)


def test_indices_are_int32_buffers_not_saved(tmp_path):
    m = smhsearch.compress(create_model("resnet20"), HashedNets(budget="30%", hashes=2, seed=3))
    assert m.index.dtype == torch.int32
    assert "index" not in dict(m.named_parameters()) and "index" not in m.state_dict()
    perturb(m).eval()
    path = smhsearch.save_compact(m, tmp_path / "h.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert "index" not in f.keys() and "pool" in f.keys()
    torch.manual_seed(1)
    loaded = smhsearch.load_compact(path)
    assert torch.equal(loaded.index, m.index) and torch.equal(loaded.signs, m.signs)  # rebuilt from the seed the file records
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))


def test_state_dict_carries_the_hash():
    """Loading a state dict into a model built with another hash seed rebuilds that hash's tables."""
    base, shape = tiny("resnet8")
    m = perturb(smhsearch.compress(base, HashedNets(budget=0.3, hashes=2, seed=4))).eval()
    other = smhsearch.compress(tiny("resnet8", seed=1)[0], HashedNets(budget=0.3, hashes=2, seed=5)).eval()
    assert not torch.equal(other.index, m.index)
    other.load_state_dict(m.state_dict())
    assert torch.equal(other.index, m.index) and torch.equal(other.signs, m.signs) and other.config == m.config
    x = torch.randn(2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(other(x), m(x))


def test_gather_is_one_vectorised_op():
    base, _ = tiny("resnet8")
    m = smhsearch.compress(base, HashedNets(budget=0.3, hashes=10, scope="conv"))
    with _OpCounter() as c:
        m.dense_weights()
    assert c.ops.count("aten.index_select") == 1
    assert c.ops.count("aten.split_with_sizes") == 1


def test_seed_changes_the_hash():
    base, _ = tiny("resnet8")
    a = smhsearch.compress(base, HashedNets(budget=0.3, seed=0))
    b = smhsearch.compress(base, HashedNets(budget=0.3, seed=1))
    assert (a.index != b.index).float().mean() > 0.9


def test_no_sign():
    m = smhsearch.compress(tiny("resnet8")[0], HashedNets(budget=0.3, sign=False, hashes=2))
    assert (m.signs == 1).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [({"budget": 0.3, "hashes": 0}, "hashes must be an int >= 1, but got 0"),
     ({"budget": 0.3, "hashes": 1.5}, "hashes must be an int >= 1"),
     ({"budget": 0.3, "scope": "fc"}, "scope must be one of"),
     ({"budget": 0.3, "sign": "yes"}, "must be bools")],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HashedNets(**kwargs)


def test_budget_errors():
    with pytest.raises(ValueError, match="HashedNets: budget must be below the base model's"):
        smhsearch.compress(create_model("resnet8"), HashedNets(budget=10**6))
    with pytest.raises(ValueError, match="too small: the unhashed parameters"):
        smhsearch.compress(create_model("resnet32"), HashedNets(budget=2000))


def test_per_layer_pools_carry_their_layers_scale():
    base = create_model("mlp_1x1000")
    m = smhsearch.compress(base, HashedNets(budget=1 / 64, per_layer=True))
    assert torch.equal(m.scale_init, torch.ones_like(m.scale_init))  # no small multiplier slowing SGD
    dense = dict(smhsearch.materialize(m).named_parameters())
    for name, p in base.named_parameters():
        if p.numel() > 100:
            assert dense[name].std().item() == pytest.approx(p.std().item(), rel=1e-3)
    glob = smhsearch.compress(base, HashedNets.table1(1 / 64))
    assert glob.scale_init.max() < 0.1  # a shared pool needs per-layer scales
