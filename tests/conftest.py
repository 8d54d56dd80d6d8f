"""Shared fixtures: tiny models (STYLE.md #7) and the shared data folder, if present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from smhsearch.models import create_model

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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


def tiny(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """A tiny model and its per-sample input shape."""
    torch.manual_seed(0)
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


@pytest.fixture(params=TINY)
def tiny_model(request):
    return tiny(request.param)
