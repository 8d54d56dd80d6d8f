"""The contract every registered compression method must pass (STYLE.md #6).

Parametrised over the method registry: a newly registered method is tested by
adding nothing here. Each method's config is built with a budget alone.

Round trips (state dict, compact file, materialisation) start from a model moved away
from its initialisation (``perturb``: weights, batch-norm statistics, method buffers,
training progress) and load into a model built from other seeds, so a load that loads
nothing fails.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import smhsearch
from smhsearch.methods import METHODS, CompressedModel
from smhsearch.plugins import load_plugins

from .conftest import TINY, assert_same_state, perturb, tiny

load_plugins()  # methods a user names in $SMHSEARCH_PLUGINS are held to the same contract
METHOD_NAMES = METHODS.names()
FRACTION = 0.5  # half the base: every method can reach it on every tiny model (rank 1 on the user net needs 40%)


def make(method: str, model_name: str, seed: int = 0, **kw):
    if METHODS.get(method).config_cls.needs_arch and model_name == "user":
        pytest.skip(f"{method} rebuilds registry architectures; a user nn.Module is refused (tested apart)")
    base, shape = tiny(model_name, seed=seed)
    cfg = METHODS.get(method).config_cls(budget=FRACTION, **kw)
    if hasattr(cfg, "seed"):
        cfg = dataclasses.replace(cfg, seed=seed)
    return base, smhsearch.compress(base, cfg), shape


@pytest.fixture(params=[(m, t) for m in METHOD_NAMES for t in TINY], ids=lambda p: f"{p[0]}-{p[1]}")
def case(request):
    return request.param


def test_registry_is_not_empty():
    assert "smh" in METHOD_NAMES


def test_output_shape_preserved(case):
    method, name = case
    base, m, shape = make(method, name)
    x = torch.randn(3, *shape)
    assert isinstance(m, CompressedModel)
    assert m(x).shape == base(x).shape


def test_stored_count_within_budget(case):
    method, name = case
    base, m, _ = make(method, name)
    m.set_progress(1.0)  # the budget holds once training is done (gradual pruning gets there)
    budget = int(FRACTION * sum(p.numel() for p in base.parameters()))
    independent = sum(p.numel() for p in m.parameters() if p.requires_grad)
    assert smhsearch.measure.stored_parameters(m) == m.stored_count()
    assert m.stored_count() <= budget
    if type(m).stored_count is CompressedModel.stored_count:  # methods that count trainables
        assert m.stored_count() == independent


def test_every_trainable_parameter_gets_a_gradient(case):
    method, name = case
    _, m, shape = make(method, name)
    m.train()
    m(torch.randn(4, *shape)).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    zero = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is not None and p.grad.abs().sum() == 0]
    assert not missing, missing
    assert not zero, zero


def test_state_dict_round_trip(case):
    method, name = case
    _, m, shape = make(method, name, seed=1)
    perturb(m)
    _, other, _ = make(method, name, seed=2)
    x = torch.randn(2, *shape)
    m.eval(), other.eval()
    with torch.no_grad():
        assert not torch.allclose(other(x), m(x))  # the test can fail: before the load, the two differ
    other.load_state_dict(m.state_dict())
    assert_same_state(other.state_dict(), m.state_dict())
    assert other.describe() == m.describe()
    with torch.no_grad():
        torch.testing.assert_close(other(x), m(x))


def test_eval_outputs_follow_in_place_updates(case):
    """Eval outputs track every variable: a cache of computed weights must drop when one changes in place (a load, a step)."""
    method, name = case
    _, m, shape = make(method, name)
    x = torch.randn(2, *shape)
    m.eval()
    with torch.no_grad():
        before = m(x)
        perturb(m)
        after = m(x)
        recomputed = copy.deepcopy(m)(x)  # a copy never carries the cache
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, recomputed)


def test_same_seed_same_model(case):
    method, name = case
    _, a, _ = make(method, name, seed=3)
    _, b, _ = make(method, name, seed=3)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_materialized_model_gives_same_outputs(case):
    method, name = case
    base, m, shape = make(method, name)
    perturb(m).eval()
    dense = smhsearch.materialize(m)
    assert not isinstance(dense, CompressedModel)
    assert type(dense) is type(base)
    assert sum(p.numel() for p in dense.parameters()) == smhsearch.measure.virtual_parameters(m)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        torch.testing.assert_close(dense(x), m(x))
    if m.config.keeps_architecture:  # the dense state dict loads into another copy of the base architecture, and is the model
        fresh = tiny(name, seed=5)[0].eval()
        with torch.no_grad():
            assert not torch.allclose(fresh(x), m(x))
        fresh.load_state_dict(dense.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), m(x))


def test_compact_round_trip(case, tmp_path):
    method, name = case
    base, m, shape = make(method, name, seed=1)  # not the default seed: the file's header must carry it
    perturb(m).eval()
    path = smhsearch.save_compact(m, tmp_path / "m.safetensors")
    torch.manual_seed(99)  # the rebuild inside load_compact draws other initial weights than `make` did
    loaded = smhsearch.load_compact(path, model=None if name != "user" else tiny(name, seed=99)[0])
    x = torch.randn(3, *shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))
    assert loaded.config == m.config
    assert loaded.describe() == m.describe()
    assert_same_state(loaded.compact_state_dict(), m.compact_state_dict())


def test_compact_round_trip_at_8_bits_after_qat(case, tmp_path):
    """The precision stage composes with the method: trained through the quantiser, stored as codes, rebuilt bit for bit."""
    method, name = case
    base, m, shape = make(method, name, seed=1, bits=8, quant="qat")
    x = torch.randn(3, *shape)
    m.train()
    m(x).square().mean().backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if n in m._precision_names)  # the STE reaches each one
    perturb(m)
    m.set_progress(1.0)
    smhsearch.quantize(m).eval()
    path = smhsearch.save_compact(m, tmp_path / "m.safetensors")
    loaded = smhsearch.load_compact(path, model=None if name != "user" else tiny(name, seed=99)[0])
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    assert loaded.config == m.config and loaded.config.bits == 8


def test_channels_last_reaches_every_conv_weight(case, tmp_path):
    """In channels_last mode each conv gets its weight (stored or computed) in that layout, and outputs do not change."""
    method, name = case
    _, m, shape = make(method, name)
    if len(shape) != 3 or not any(isinstance(mod, torch.nn.Conv2d) for mod in m.modules()):
        pytest.skip(f"{name} has no convolution")
    m.set_progress(1.0)
    x = torch.randn(2, *shape)
    for training in (True, False):  # the training path and the eval cache
        m.train(training)
        with torch.no_grad():
            m.set_memory_format(torch.contiguous_format)
            ref = m(x)
            m.set_memory_format(torch.channels_last)
            seen = []
            hooks = [mod.register_forward_pre_hook(lambda mod, args: seen.append(
                (tuple(mod.weight.shape), mod.weight.is_contiguous(memory_format=torch.channels_last))))
                for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
            got = m(x.contiguous(memory_format=torch.channels_last))
            for h in hooks:
                h.remove()
        assert seen and all(ok for _, ok in seen), [s for s, ok in seen if not ok]
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    path = smhsearch.save_compact(m, tmp_path / "m.safetensors")  # safetensors takes standard-layout tensors only
    assert path.is_file()
