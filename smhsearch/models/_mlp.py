"""Fully connected nets for the HashedNets setups (Chen et al. 2015, MNIST).

The paper's "3-layer" net has one hidden layer of 1000 units (``mlp_1x1000``), its
"5-layer" net three (``mlp_3x1000``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._factory import register_model, scale_width


class MLP(nn.Module):
    """Flatten, then Linear-ReLU(-Dropout) for each hidden width, then a Linear classifier."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of positive widths, but got {list(hidden)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), but got {dropout}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _make(default_hidden: tuple[int, ...]):
    def build(num_classes: int, in_channels: int, image_size: int = 28, hidden: Sequence[int] = default_hidden,
              dropout: float = 0.0, width: float = 1.0) -> nn.Module:
        return MLP(in_channels * image_size * image_size, [scale_width(h, width) for h in hidden], num_classes, dropout)

    return build


register_model("mlp", family="mlp", num_classes=10, input_size=28, in_channels=1,
               doc="MLP with hidden widths given by `hidden` (default one layer of 1000).")(_make((1000,)))
register_model("mlp_1x1000", family="mlp", num_classes=10, input_size=28, in_channels=1,
               doc="HashedNets' 3-layer net: one hidden layer of 1000 units.")(_make((1000,)))
register_model("mlp_3x1000", family="mlp", num_classes=10, input_size=28, in_channels=1,
               doc="HashedNets' 5-layer net: three hidden layers of 1000 units.")(_make((1000, 1000, 1000)))
register_model(
    "lenet300_100",
    family="mlp",
    num_classes=10,
    input_size=28,
    in_channels=1,
    doc="LeNet-300-100 (LeCun et al. 1998): hidden layers of 300 and 100 units; Deep Compression's MNIST MLP.",
)(_make((300, 100)))
