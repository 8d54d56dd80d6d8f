"""A user's own architectures, which smhsearch knows nothing of: named in a space as
``user_models:tiny_cnn`` (or ``{import: "user_models:tiny_cnn", kwargs: {channels: 8}}``).

Importing this module counts how often it was imported (``IMPORTS``), so a test can see
that a load refused to import it.
"""

from __future__ import annotations

import torch
from torch import nn

IMPORTS = 0
IMPORTS += 1

NOT_A_FACTORY = 3


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1)
        self.head = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.head(x.mean((2, 3)))  # (B, 2C) -> (B, classes)


def tiny_cnn(num_classes: int = 10, in_channels: int = 3, channels: int = 16, width: float = 1.0) -> nn.Module:
    """A two-conv net; ``width`` multiplies its channels (so the width multiplier applies)."""
    return TinyCNN(num_classes, in_channels, max(1, round(channels * width)))


def returns_a_dict(channels: int = 4) -> dict:
    return {"channels": channels}


def three_classes(in_channels: int = 3) -> nn.Module:
    """Takes no num_classes: always 3 class scores."""
    return TinyCNN(3, in_channels, 4)
