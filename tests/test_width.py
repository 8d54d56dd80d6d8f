"""WidthMultiplier: alpha search against brute force, the resolution baseline, bad input."""

from __future__ import annotations

import pytest
import torch

import smhsearch
from smhsearch import WidthMultiplier, measure
from smhsearch.methods._width import ALPHA_STEP, find_alpha
from smhsearch.models import create_model

from .conftest import UserNet, assert_same_state, perturb


def _count(name: str, alpha: float, **kw) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name, width=alpha, **kw).parameters())


@pytest.mark.parametrize("name,budget", [("resnet20", 30_000), ("mlp", 100_000), ("resnet8", 20_000)])
def test_found_alpha_is_the_largest_count_under_budget(name, budget):
    m = smhsearch.compress(create_model(name), WidthMultiplier(budget=budget))
    brute = max(c for c in (_count(name, i * ALPHA_STEP) for i in range(1, 513)) if c <= budget)
    assert m.stored_count() == brute
    assert m.stored_count() == _count(name, m.alpha)


def test_find_alpha_handles_non_monotone_steps():
    # Counts are a step function with wiggles. Here bisection alone settles on grid point
    # 298 (count 2980); a dip past the crossing, at 306, holds the true best (2984).
    def counts(a: float) -> int:
        i = round(a / ALPHA_STEP)
        return 10 * i - (76 if i == 306 else 0)

    assert round(find_alpha(counts, 2985) / ALPHA_STEP) == 306
    assert find_alpha(counts, 5) is None


def test_torchvision_width_is_torchvision_rounding():
    m = smhsearch.compress(create_model("mobilenet_v2", num_classes=10), WidthMultiplier(alpha=0.5))
    import torchvision

    ref = torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5)
    assert m.stored_count() == sum(p.numel() for p in ref.parameters())


def test_resolution_brings_flops_back():
    base = create_model("resnet20")
    m = smhsearch.compress(base, WidthMultiplier(alpha=0.5, resolution=True))
    assert m.input_size(32) == m.side > 32
    f_base = measure.flops(base, (3, 32, 32))
    f_narrow_up = measure.flops(m.model, (3, m.side, m.side))
    assert abs(f_narrow_up / f_base - 1) < 0.1
    x = torch.randn(2, 3, 32, 32)
    dense = smhsearch.materialize(m).eval()
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(dense(x), m(x))
    assert measure.flops(m, (3, 32, 32)) == pytest.approx(f_narrow_up, rel=0.02)  # up-sampling counted in


def test_mobilenet_strong_baseline_resolution_near_paper():
    # the paper's (multiplier, resolution) pairs: (0.5, 400), (0.75, 260) at base 224
    m = smhsearch.compress(create_model("mobilenet_v2"), WidthMultiplier(alpha=0.5, resolution=True))
    assert 360 <= m.side <= 420


def test_compact_round_trip_of_strong_baseline(tmp_path):
    m = perturb(smhsearch.compress(create_model("resnet8"), WidthMultiplier(budget=0.4, resolution=True))).eval()
    torch.manual_seed(7)
    loaded = smhsearch.load_compact(smhsearch.save_compact(m, tmp_path / "w.safetensors"))
    assert loaded.alpha == m.alpha and loaded.side == m.side
    assert_same_state(loaded.state_dict(), m.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), m(x))


@pytest.mark.parametrize(
    "kwargs,match",
    [({}, "exactly one of budget and alpha"), ({"budget": 0.5, "alpha": 0.5}, "exactly one"),
     ({"alpha": 0.0}, r"alpha must lie in \(0, 1\], but got 0.0"), ({"alpha": 1.5}, r"alpha must lie in \(0, 1\]"),
     ({"alpha": 0.5, "resolution": "yes"}, "resolution must be a bool")],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WidthMultiplier(**kwargs)


def test_budget_no_alpha_can_meet():
    with pytest.raises(ValueError, match=r"no alpha in \(0, 1\] meets the budget: the narrowest model .*, but got budget=100 "):
        smhsearch.compress(create_model("resnet32"), WidthMultiplier(budget=100))


def test_user_modules_and_torchvision_resnets_are_refused():
    with pytest.raises(ValueError, match="needs a model from smhsearch.create_model"):
        smhsearch.compress(UserNet(), WidthMultiplier(alpha=0.5))
    with pytest.raises(ValueError, match="not available for resnet18"):
        smhsearch.compress(create_model("resnet18"), WidthMultiplier(alpha=0.5))
