"""Modules that wrap an architecture without changing its weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Upsampled(nn.Module):
    """Bilinear up-sampling of the input to ``size`` x ``size``, then ``model``.

    What a width-multiplier-with-resolution model deploys as: the narrow net sees the
    image up-sampled so its FLOPs come back to the base model's.
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False))
