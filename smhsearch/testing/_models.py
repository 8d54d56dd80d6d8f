"""Tiny models and the state helpers the method contract runs on (no pytest needed here).

``tiny(name)`` builds a model small enough that every check runs in well under a second on a
CPU: a CIFAR ResNet-8 of widths 8/16/16 on 16 px, a two-layer MLP on 8 px, and
:class:`UserNet`, a network smhsearch knows nothing of. ``perturb`` moves every saved tensor
away from where a constructor leaves it, so a round trip that loads nothing fails.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import create_model


class UserNet(nn.Module):
    """A user model smhsearch knows nothing of: conv, depthwise conv, BN, squeeze-excite, linear."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.se = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.stem(x)))
        x = self.dw(x) * torch.sigmoid(self.se(x.mean((2, 3), keepdim=True)))
        return self.head(x.mean((2, 3)))


def tiny(name: str, seed: int = 0) -> tuple[nn.Module, tuple[int, ...]]:
    """A tiny model and its per-sample input shape; ``seed`` draws its initial weights."""
    torch.manual_seed(seed)
    if name == "resnet8":
        return create_model("resnet8", widths=(8, 16, 16)), (3, 16, 16)
    if name == "mlp":
        return create_model("mlp", image_size=8, hidden=[32, 16]), (1, 8, 8)
    if name == "user":
        return UserNet(), (3, 8, 8)
    if name == "mobilenet_v3_small":
        return create_model("mobilenet_v3_small", num_classes=10), (3, 32, 32)
    raise KeyError(name)


TINY = ["resnet8", "mlp", "user"]


@torch.no_grad()
def perturb(model: nn.Module, seed: int = 1234) -> nn.Module:
    """Move every tensor ``model`` saves away from where any constructor leaves it; returns ``model``.

    A round trip (state dict, compact file, materialisation) compared on a freshly built
    model passes even when nothing is loaded, because the rebuild starts from the same
    seeds. After this, only a faithful load reproduces the model:

    - a compressed model is taken part-way through training (``set_progress(0.6)``), so
      gradual pruning has masked weights and counted its level;
    - every floating parameter gets noise of a tenth of its own magnitude (absolute where
      it is all zeros, as batch-norm's bias starts);
    - every saved floating buffer moves: batch-norm's running means shift, its running
      variances and the methods' per-layer scales (SMH's ``scale_init``) are rescaled;
    - batch-norm's ``num_batches_tracked`` counts on.

    Buffers that are not saved (HashedNets' index and signs, rebuilt from its hash seed)
    are left alone, and so are the other integer buffers (the hash seed, the pruning level).
    """
    from smhsearch.methods import CompressedModel

    if isinstance(model, CompressedModel):
        model.set_progress(0.6)
    g = torch.Generator().manual_seed(seed)
    noise = lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype).to(t.device)  # noqa: E731
    for p in model.parameters():
        if p.is_floating_point():
            scale = float(p.abs().mean()) or 1.0
            p.add_(0.1 * scale * noise(p))
    saved = set(model.state_dict(keep_vars=True))
    for name, b in model.named_buffers():
        if name not in saved:
            continue
        if b.is_floating_point():
            if name.endswith("running_mean"):
                b.add_(0.3 * noise(b))
            else:  # variances and scales: positive, so rescale them
                b.mul_(torch.exp(0.3 * noise(b)))
        elif name.endswith("num_batches_tracked"):
            b.add_(7)
    return model


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Two state dicts (or compact state dicts) hold the same keys and bit-equal tensors."""
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
