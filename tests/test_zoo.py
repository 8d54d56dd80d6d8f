"""torchvision's whole classification zoo, compressed as a new user would (SMH's "any network").

For every model ``torchvision.models.list_models(module=torchvision.models)`` lists,
built with ``weights=None`` (nothing is downloaded), SMH and HashedNets at 10% with
``scope="all"``: at least 97% of the parameters are hashed, the stored count is within
the budget, a forward pass works, the materialised model and the model rebuilt from
its compact file give the compressed model's outputs. The variables are perturbed
before saving, so a load that loads nothing (the rebuilt model keeps its seeded init)
fails. The smallest member of each family (a torchvision module: resnet, regnet,
swin_transformer, ...) runs by default; every member under the ``slow`` marker. Models
over 100M parameters are skipped, saying so.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torchvision
from torchvision.models import get_model_builder, get_model_weights

import smhsearch
from smhsearch import SMH, HashedNets
from smhsearch._budget import Budget

BUDGET = 0.10
MIN_SHARE_HASHED = 0.97
MAX_PARAMS = 100_000_000  # larger models cost minutes of CPU each and are not part of the target
ZOO = sorted(torchvision.models.list_models(module=torchvision.models))


def declared_params(name: str) -> int:
    """torchvision's declared size (its weights' metadata): no model is built to know it."""
    return next(iter(get_model_weights(name))).meta["num_params"]


def family(name: str) -> str:
    return get_model_builder(name).__module__.rsplit(".", 1)[-1]


def input_side(name: str) -> int:
    """64 px where the architecture allows it: Inception v3 needs 75, MaxViT's windows tile 224 only."""
    return {"inception_v3": 80, "maxvit_t": 224}.get(name, 64)


def smallest_per_family() -> set[str]:
    best: dict[str, str] = {}
    for name in ZOO:
        if declared_params(name) <= MAX_PARAMS:
            f = family(name)
            if f not in best or declared_params(name) < declared_params(best[f]):
                best[f] = name
    return set(best.values())


DEFAULT = smallest_per_family()


def _case(name: str, method: str):
    if declared_params(name) > MAX_PARAMS:
        reason = f"{name} has {declared_params(name) / 1e6:.0f}M parameters (> {MAX_PARAMS // 1_000_000}M, outside the target)"
        return pytest.param(name, method, marks=[pytest.mark.slow, pytest.mark.skip(reason=reason)], id=f"{name}-{method}")
    return pytest.param(name, method, marks=[] if name in DEFAULT else [pytest.mark.slow], id=f"{name}-{method}")


@functools.lru_cache(maxsize=1)  # the cases run model by model: each base is built once for both methods
def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs: dict = {"init_weights": True} if name in ("googlenet", "inception_v3") else {}  # their default warns
    if family(name) == "vision_transformer":
        kwargs["image_size"] = input_side(name)  # ViT sizes its positional embedding for one input side
    return torchvision.models.get_model(name, weights=None, **kwargs)


@torch.no_grad()
def perturb(model: torch.nn.Module) -> None:
    """Move every saved float tensor (variables, unhashed parameters, BN statistics) off its init, keeping signs.

    The state dict's tensors share memory with the model's; derived buffers that are not
    saved (HashedNets' signs, rebuilt from the seed) are left alone.
    """
    g = torch.Generator().manual_seed(1)
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.mul_(1 + 0.1 * torch.rand(t.shape, generator=g)).add_(0.01 * torch.rand(t.shape, generator=g))


def test_every_family_has_a_default_member():
    families = {family(n) for n in ZOO if declared_params(n) <= MAX_PARAMS}
    assert {family(n) for n in DEFAULT} == families
    assert {"vision_transformer", "swin_transformer", "mnasnet", "maxvit"} <= families


@pytest.mark.parametrize("name,method", [_case(n, m) for n in ZOO for m in ("smh", "hashednets")])
def test_zoo_member_compresses_and_round_trips(name, method, tmp_path):
    base = build(name)
    total = sum(p.numel() for p in base.parameters() if p.requires_grad)
    config = SMH(budget=BUDGET, scope="all") if method == "smh" else HashedNets(budget=BUDGET, scope="all")
    model = smhsearch.compress(base, config)

    hashed = sum(t.numel for t in model.targets)
    assert hashed / total >= MIN_SHARE_HASHED, f"{name}: {hashed / total:.4f} of the parameters hashed"
    stored = sum(p.numel() for p in model.parameters() if p.requires_grad)  # independent of stored_count()
    assert model.stored_count() == stored <= Budget.parse(BUDGET).resolve(total)

    perturb(model)
    model.eval()
    x = torch.randn(1, 3, input_side(name), input_side(name), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
        assert y.shape == (1, 1000) and torch.isfinite(y).all()
        torch.testing.assert_close(smhsearch.materialize(model).eval()(x), y)
        path = smhsearch.save_compact(model, tmp_path / "m.safetensors")
        loaded = smhsearch.load_compact(path, model=base)  # torchvision's own module: the file needs it passed back
        torch.testing.assert_close(loaded(x), y)
