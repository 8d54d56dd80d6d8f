"""The eval cache (methods/_cache.py), one class behind both of its users: a reparametrised model's dense weights and
QAT's quantised copies. Reused while the variables are unchanged, recomputed when one changes, never copied."""

from __future__ import annotations

import copy
import pickle

import torch

import smhsearch
from smhsearch.methods import _precision
from smhsearch.methods._cache import WeightCache

X = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def base():
    torch.manual_seed(0)
    return smhsearch.create_model("resnet8", widths=(4, 8, 8))


def test_an_entry_is_reused_until_a_source_changes():
    cache, w, v = WeightCache(), torch.ones(3), torch.zeros(2)
    calls = []

    def compute():
        calls.append(1)
        return w * 2 + v.sum()

    first = cache.get("w", [w, v], compute)
    assert cache.get("w", [w, v], compute) is first and len(calls) == 1  # unchanged: served, not computed
    v.add_(1)  # an in-place change of any source (a step, a load)
    assert torch.equal(cache.get("w", [w, v], compute), w * 2 + 2) and len(calls) == 2
    cache.get("w", [w.double(), v], compute)  # another storage or dtype (.to(), .half())
    cache.get("w", [w, v], compute, "channels_last")  # another extra key (autocast, memory format)
    assert len(calls) == 4
    cache.get("other", [w, v], compute)  # entries under other names are apart
    assert len(calls) == 5 and len(cache) == 2
    for clone in (copy.deepcopy(cache), pickle.loads(pickle.dumps(cache))):
        assert len(clone) == 0  # derived values never travel with a copy
    cache.clear()
    assert len(cache) == 0


def test_reparametrised_eval_computes_the_weights_once_until_a_variable_changes():
    m = smhsearch.compress(base(), smhsearch.SMH(budget="30%")).eval()
    calls = []
    dense_weights = m.dense_weights
    m.dense_weights = lambda: calls.append(1) or dense_weights()
    with torch.no_grad():
        y = m(X)
        assert torch.equal(m(X), y) and len(calls) == 1  # the second batch reuses the weights
        m.U.mul_(0.5)
        assert not torch.allclose(m(X), y) and len(calls) == 2
        m.train()
        m(X)  # training computes every time and drops what eval kept
    assert len(calls) == 3 and len(m._cache) == 0


def test_qat_eval_quantises_once_until_a_variable_changes(monkeypatch):
    m = smhsearch.compress(base(), smhsearch.SMH(budget="30%", bits=4, quant="qat")).eval()
    quantised = []
    fake_quantize = _precision.fake_quantize
    monkeypatch.setattr(_precision, "fake_quantize", lambda w, *a: quantised.append(w) or fake_quantize(w, *a))
    names = m.precision.names
    with torch.no_grad():
        y = m(X)
        assert len(quantised) == len(names) and torch.equal(m(X), y) and len(quantised) == len(names)
        m.U.mul_(0.5)  # only U is quantised again
        assert not torch.allclose(m(X), y)
        assert len(quantised) == len(names) + 1 and quantised[-1] is m.U
    m.train()
    m(X)
    assert len(quantised) == 2 * len(names) + 1 and len(m.precision.cache) == 0  # training: every forward, nothing kept
