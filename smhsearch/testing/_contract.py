"""The checks every compression method must pass, as a pytest base class (as optuna ships its sampler test cases).

Each check builds the subclass's ``config`` (with other seeds, or at 8 bits, where it needs
them) on each tiny model of ``models``: outputs keep their shape, the stored count is what
is measured and within the budget, every trainable variable gets a gradient, the state
dict and the compact file round-trip, eval outputs follow in-place updates, a seed fixes
the model, the materialised model gives the same outputs, and channels_last reaches every
convolution. Budget checks apply where the method reads a budget (``"budget" in axes``).

Round trips start from a model moved away from its initialisation (:func:`perturb`:
weights, batch-norm statistics, method buffers, training progress) and load into a model
built from other seeds, so a load that loads nothing fails.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar, Sequence

import pytest
import torch

from .. import measure
from .._budget import Budget
from ..export import load_compact, materialize, quantize, save_compact
from ..methods import CompressedModel, MethodConfig, compress
from ._models import TINY, assert_same_state, perturb, tiny


class MethodContract:
    """Subclass it in a test file named ``test_*.py``, set ``config``, and pytest runs the contract on it.

    ``config`` is the method's config as a user would write it (its budget, where it has
    one, must be reachable on every model of ``models``: half the base is); ``models`` names
    the tiny models (:func:`smhsearch.testing.tiny`) each check runs on.
    """

    config: ClassVar[MethodConfig]
    models: ClassVar[Sequence[str]] = TINY

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "model_name" in metafunc.fixturenames:
            metafunc.parametrize("model_name", list(self.models))

    def make(self, model_name: str, seed: int = 0, **fields: Any):
        """(base model, compressed model, per-sample input shape) of ``config`` with ``fields`` replaced, built from ``seed``."""
        config = getattr(self, "config", None)
        if not isinstance(config, MethodConfig):
            raise TypeError(f"{type(self).__name__}.config must be a method config (a MethodConfig), but got {config!r}")
        if type(config).needs_arch and model_name == "user":
            pytest.skip(f"{config.method} rebuilds registry architectures; a user nn.Module is refused")
        if "seed" in {f.name for f in dataclasses.fields(config)}:
            fields = {"seed": seed, **fields}
        base, shape = tiny(model_name, seed=seed)
        return base, compress(base, dataclasses.replace(config, **fields)), shape

    def user_model(self, model_name: str):
        """What ``load_compact`` needs to rebuild: nothing for a registry architecture, a fresh module for the user's."""
        return tiny(model_name, seed=99)[0] if model_name == "user" else None

    def test_output_shape_preserved(self, model_name):
        base, m, shape = self.make(model_name)
        x = torch.randn(3, *shape)
        assert isinstance(m, CompressedModel)
        assert m(x).shape == base(x).shape

    def test_stored_count_is_measured_and_within_budget(self, model_name):
        base, m, _ = self.make(model_name)
        m.set_progress(1.0)  # the budget holds once training is done (gradual pruning gets there)
        assert measure.stored_parameters(m) == m.stored_count()
        if type(m).stored_count is CompressedModel.stored_count:  # methods that count trainables
            assert m.stored_count() == sum(p.numel() for p in m.parameters() if p.requires_grad)
        if "budget" in type(self.config).axes:
            assert m.stored_count() <= Budget.parse(self.config.budget).resolve(sum(p.numel() for p in base.parameters()))

    def test_every_trainable_parameter_gets_a_gradient(self, model_name):
        _, m, shape = self.make(model_name)
        m.train()
        m(torch.randn(4, *shape)).square().mean().backward()
        trainable = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
        missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
        zero = [n for n, p in trainable if p.grad is not None and p.grad.abs().sum() == 0]
        assert not missing, missing
        assert not zero, zero

    def test_state_dict_round_trip(self, model_name):
        _, m, shape = self.make(model_name, seed=1)
        perturb(m)
        _, other, _ = self.make(model_name, seed=2)
        x = torch.randn(2, *shape)
        m.eval(), other.eval()
        with torch.no_grad():
            assert not torch.allclose(other(x), m(x))  # the test can fail: before the load, the two differ
        other.load_state_dict(m.state_dict())
        assert_same_state(other.state_dict(), m.state_dict())
        assert other.describe() == m.describe()
        with torch.no_grad():
            torch.testing.assert_close(other(x), m(x))

    def test_eval_outputs_follow_in_place_updates(self, model_name):
        """Eval outputs track every variable: a cache of computed weights must drop when one changes in place (a load, a step)."""
        _, m, shape = self.make(model_name)
        x = torch.randn(2, *shape)
        m.eval()
        with torch.no_grad():
            before = m(x)
            perturb(m)
            after = m(x)
            recomputed = copy.deepcopy(m)(x)  # a copy never carries the cache
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, recomputed)

    def test_same_seed_same_model(self, model_name):
        _, a, _ = self.make(model_name, seed=3)
        _, b, _ = self.make(model_name, seed=3)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)

    def test_materialized_model_gives_same_outputs(self, model_name):
        base, m, shape = self.make(model_name)
        perturb(m).eval()
        dense = materialize(m)
        assert not isinstance(dense, CompressedModel)
        assert type(dense) is type(base)
        assert sum(p.numel() for p in dense.parameters()) == measure.virtual_parameters(m)
        x = torch.randn(4, *shape)
        with torch.no_grad():
            torch.testing.assert_close(dense(x), m(x))
        if m.config.keeps_architecture:  # the dense state dict loads into another copy of the base architecture, and is the model
            fresh = tiny(model_name, seed=5)[0].eval()
            with torch.no_grad():
                assert not torch.allclose(fresh(x), m(x))
            fresh.load_state_dict(dense.state_dict())
            with torch.no_grad():
                torch.testing.assert_close(fresh(x), m(x))

    def test_compact_round_trip(self, model_name, tmp_path):
        _, m, shape = self.make(model_name, seed=1)  # not the default seed: the file's header must carry it
        perturb(m).eval()
        path = save_compact(m, tmp_path / "m.safetensors")
        torch.manual_seed(99)  # the rebuild inside load_compact draws other initial weights than `make` did
        loaded = load_compact(path, model=self.user_model(model_name))
        x = torch.randn(3, *shape)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), m(x))
        assert loaded.config == m.config
        assert loaded.describe() == m.describe()
        assert_same_state(loaded.compact_state_dict(), m.compact_state_dict())

    def test_compact_round_trip_at_8_bits_after_qat(self, model_name, tmp_path):
        """The precision stage composes with the method: trained through the quantiser, stored as codes, rebuilt bit for bit."""
        _, m, shape = self.make(model_name, seed=1, bits=8, quant="qat")
        x = torch.randn(3, *shape)
        m.train()
        m(x).square().mean().backward()
        assert all(p.grad is not None for n, p in m.named_parameters() if n in m.precision.names)  # the STE reaches each one
        perturb(m)
        m.set_progress(1.0)
        quantize(m).eval()
        path = save_compact(m, tmp_path / "m.safetensors")
        loaded = load_compact(path, model=self.user_model(model_name))
        with torch.no_grad():
            assert torch.equal(loaded(x), m(x))
        assert loaded.config == m.config and loaded.config.bits == 8

    def test_channels_last_reaches_every_conv_weight(self, model_name, tmp_path):
        """In channels_last mode each conv gets its weight (stored or computed) in that layout, and outputs do not change."""
        _, m, shape = self.make(model_name)
        if len(shape) != 3 or not any(isinstance(mod, torch.nn.Conv2d) for mod in m.modules()):
            pytest.skip(f"{model_name} has no convolution")
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
        path = save_compact(m, tmp_path / "m.safetensors")  # safetensors takes standard-layout tensors only
        assert path.is_file()
