"""SMH's own promises: counts, initialisation, scopes, scales, one matmul, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import smhsearch
from smhsearch import SMH
from smhsearch.methods import select_targets
from smhsearch.models import create_model

from .conftest import UserNet, perturb, tiny


def _count_hashed(base: nn.Module, scope: str) -> int:
    """Independent count of the hashed weights: walk modules, not the targets list."""
    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d) + ((nn.Linear,) if scope == "all" else ())
    return sum(p.numel() for mod in base.modules() if isinstance(mod, kinds) for p in mod.parameters(recurse=False))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["resnet8", "mlp", "user"]),
    scope=st.sampled_from(["all", "conv"]),
    scale=st.sampled_from(["fixed", "learnable"]),
    frac=st.floats(0.05, 0.95),
)
def test_stored_count_matches_closed_form_and_budget(name, scope, scale, frac):
    assume(not (name == "mlp" and scope == "conv"))  # nothing to hash: tested below
    base, _ = tiny(name)
    total = sum(p.numel() for p in base.parameters())
    N = _count_hashed(base, scope)
    n = math.ceil(math.sqrt(N))
    L = len([p for mod in base.modules() for p in mod.parameters(recurse=False)
             if isinstance(mod, nn.modules.conv._ConvNd) or (scope == "all" and isinstance(mod, nn.Linear))])
    budget = int(frac * total)
    learn = L if scale == "learnable" else 0
    if budget - (total - N) - learn < 2 * n:
        with pytest.raises(ValueError, match="too small"):
            smhsearch.compress(base, SMH(budget=budget, scope=scope, scale=scale))
        return
    m = smhsearch.compress(base, SMH(budget=budget, scope=scope, scale=scale))
    M = m.shape.M
    assert m.U.shape == (n, M) and m.V.shape == (M, n)
    assert m.stored_count() == 2 * n * M + learn + (total - N)
    assert budget - 2 * n <= m.stored_count() <= budget
    assert smhsearch.measure.virtual_parameters(m) == total


@pytest.mark.parametrize(
    "budget,expected", [(46_000, 46_000), ("46K", 46_000), ("25%", int(0.25 * 464154)), (0.1, int(0.1 * 464154))]
)
def test_budget_forms_on_resnet32(budget, expected):
    m = smhsearch.compress(create_model("resnet32"), SMH(budget=budget))
    assert expected - 2 * m.shape.n <= m.stored_count() <= expected


@pytest.mark.parametrize(
    "arch,budget", [("resnet32", "46K"), ("resnet32", "40%"), ("efficientnet_b0", "40%"), ("mobilenet_v2", "40%")]
)
@pytest.mark.parametrize("scale", ["fixed", "learnable"])
def test_init_std_per_layer_matches_base(arch, budget, scale):
    torch.manual_seed(0)
    base = create_model(arch, num_classes=10)
    m = smhsearch.compress(base, SMH(budget=budget, scale=scale))
    dense = dict(smhsearch.materialize(m).named_parameters())
    checked = 0
    for name, p in base.named_parameters():
        if name in {t.name for t in m.targets} and p.numel() >= 256 and p.std() > 0:
            ratio = (dense[name].std() / p.std()).item()
            assert 0.9 <= ratio <= 1.1, (name, ratio)  # the bound; calibration makes it ~exact
            assert ratio == pytest.approx(1.0, rel=1e-3), (name, ratio)
            checked += 1
    assert checked >= 10


def test_constant_initialised_tensors_are_not_frozen_at_zero():
    base = create_model("efficientnet_b0", num_classes=10)  # torchvision zero-inits its classifier bias
    assert base.classifier[1].bias.abs().sum() == 0
    m = smhsearch.compress(base, SMH(budget="30%"))
    bias = smhsearch.materialize(m).classifier[1].bias
    fan_in = base.classifier[1].weight.shape[1]
    assert 0.5 / math.sqrt(3 * fan_in) < bias.std() < 2 / math.sqrt(3 * fan_in)


def test_scope_conv_leaves_linear_and_batchnorm_dense():
    base = UserNet()
    m = smhsearch.compress(base, SMH(budget=0.6, scope="conv"))
    hashed = {t.name for t in m.targets}
    assert hashed == {"stem.weight", "stem.bias", "dw.weight", "se.weight", "se.bias"}  # depthwise and SE included
    kept = {n for n, _ in m.base.named_parameters()}
    assert kept == {"bn.weight", "bn.bias", "head.weight", "head.bias"}
    m_all = smhsearch.compress(base, SMH(budget=0.6, scope="all"))
    assert {n for n, _ in m_all.base.named_parameters()} == {"bn.weight", "bn.bias"}


def test_targets_follow_parameter_order():
    base = create_model("resnet20")
    names = [t.name for t in select_targets(base, "all")]
    order = [n for n, _ in base.named_parameters() if n in set(names)]
    assert names == order


def test_learnable_scale_starts_equal_to_fixed_and_is_trainable():
    base, shape = tiny("resnet8")
    fixed = smhsearch.compress(base, SMH(budget=0.5, scale="fixed"))
    learn = smhsearch.compress(base, SMH(budget=0.5, scale="learnable"))
    x = torch.randn(2, *shape)
    fixed.eval(), learn.eval()
    with torch.no_grad():
        torch.testing.assert_close(learn(x), fixed(x))
    assert learn.scale_gain.requires_grad and fixed.scale_gain is None
    assert learn.stored_count() == fixed.stored_count() + len(learn.targets) or learn.shape.M != fixed.shape.M


class _OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_one_matmul_and_one_split_per_forward():
    base, shape = tiny("resnet8")  # no linear other than the head: its addmm is not a matmul of U, V
    m = smhsearch.compress(base, SMH(budget=0.5, scope="conv"))
    m.train()
    with _OpCounter() as c:
        m.dense_weights()
    assert c.ops.count("aten.mm") == 1
    assert c.ops.count("aten.split_with_sizes") == 1
    assert "aten.slice" not in c.ops


def test_eval_cache_follows_updates():
    base, shape = tiny("resnet8")
    m = smhsearch.compress(base, SMH(budget=0.5, scale="learnable"))
    x = torch.randn(2, *shape)
    m.eval()
    with torch.no_grad():
        y0 = m(x)
        assert torch.equal(m(x), y0)  # served from the cache
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m.train()
    m(torch.randn(4, *shape)).sum().backward()
    opt.step()
    m.eval()
    with torch.no_grad():
        y1 = m(x)
    dense = smhsearch.materialize(m).eval()
    with torch.no_grad():
        torch.testing.assert_close(dense(x), y1)
    assert not torch.allclose(y0, y1)


def test_tied_weights_hash_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(16, 16)
            self.b = nn.Linear(16, 16)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    base = Tied()
    m = smhsearch.compress(base, SMH(budget=200))
    assert m.hashed_count == 16 * 16 + 16 + 16
    dense = smhsearch.materialize(m)
    assert dense.a.weight is dense.b.weight
    x = torch.randn(3, 16)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(dense(x), m(x))


def test_base_model_is_untouched():
    base, shape = tiny("resnet8")
    before = {k: v.clone() for k, v in base.state_dict().items()}
    smhsearch.compress(base, SMH(budget=0.5))
    after = base.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_module_pickles_and_deepcopies_after_eval():
    import copy
    import pickle

    base, shape = tiny("resnet8")
    m = perturb(smhsearch.compress(base, SMH(budget=0.5))).eval()
    with torch.no_grad():
        y = m(torch.ones(1, *shape))
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert len(clone._cache) == 0  # the eval cache is derived: never shipped
        with torch.no_grad():
            torch.testing.assert_close(clone(torch.ones(1, *shape)), y)


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"budget": 0}, "positive"),
        ({"budget": 1.5}, r"\(0, 1\)"),
        ({"budget": "lots"}, "budget must be"),
        ({"budget": "120%"}, r"\(0%, 100%\)"),
        (
            {"budget": 10, "scope": "dense"},
            r"scope must be one of 'all', 'conv', 'linear' or a rule \{include: .*, but got 'dense'",
        ),
        ({"budget": 10, "scale": "magic"}, "scale must be one of 'fixed', 'learnable', but got 'magic'"),
        ({"budget": 10, "seed": -1}, "seed"),
    ],
)
def test_bad_config_is_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SMH(**kwargs)


def test_budget_at_or_above_base_is_refused():
    with pytest.raises(ValueError, match=r"below the base model's 464154 trainable parameters, but got budget=464154"):
        smhsearch.compress(create_model("resnet32"), SMH(budget=464_154))


def test_budget_too_small_names_what_it_needs():
    with pytest.raises(ValueError, match=r"too small: the unhashed parameters \(\d+\).*need at least"):
        smhsearch.compress(create_model("resnet32"), SMH(budget=1_000))


def test_nothing_to_hash_is_refused():
    with pytest.raises(ValueError, match="scope must select trainable convolution weights of the model to hash .*, but got "
                                         "scope='conv', and the model has none"):
        smhsearch.compress(create_model("mlp"), SMH(budget=0.5, scope="conv"))
    with pytest.raises(ValueError, match="scope must select trainable convolution, linear, embedding or other weight-matrix "
                                         "weights .*, but got scope='all', and the model has none"):
        smhsearch.compress(nn.Sequential(nn.LayerNorm(4), nn.BatchNorm1d(4)), SMH(budget=3))


def test_compressing_twice_is_refused():
    m = smhsearch.compress(create_model("resnet8"), SMH(budget=0.5))
    with pytest.raises(ValueError, match="already compressed"):
        smhsearch.compress(m, SMH(budget=0.5))


def test_config_round_trips_through_dict():
    cfg = SMH(budget="5.3M", scope="conv", scale="learnable", seed=4)
    assert smhsearch.config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['scop'\].*allowed"):
        smhsearch.config_from_dict({"method": "smh", "budget": 5, "scop": "all"})
    with pytest.raises(ValueError, match="unknown compression method 'smhh'; nearest: smh"):
        smhsearch.config_from_dict({"method": "smhh", "budget": 5})
