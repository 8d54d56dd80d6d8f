"""He et al. (2016) ResNets for CIFAR: 6n+2 layers in three stages of 16/32/64 channels.

The shortcut that changes shape is option A of the paper (stride-2 subsampling and
zero-padded channels, parameter-free), which is what gives ResNet-32 its 0.46M
parameters in the SMH paper's Figure 6 and in He et al.'s table.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._factory import register_model, scale_width


class _PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and zero-pad the extra channels."""

    def __init__(self, stride: int, extra: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity() if stride == 1 and cin == cout else _PadShortcut(stride, cout - cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs. ``widths`` scales the three stages (width multiplier)."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"a CIFAR ResNet has depth 6n+2 with n >= 1, but got depth={depth}")
        if len(widths) != 3 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be three positive ints, but got {tuple(widths)}")
        n = (depth - 2) // 6
        w = [int(v) for v in widths]
        self.conv1 = nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        layers, cin = [], w[0]
        for stage, cout in enumerate(w):
            blocks = []
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(BasicBlock(cin, cout, stride))
                cin = cout
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(w[2], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C)
        return self.fc(x)


def _make(depth: int):
    def build(num_classes: int, in_channels: int, widths: Sequence[int] = (16, 32, 64), width: float = 1.0) -> nn.Module:
        return ResNetCIFAR(depth, num_classes, in_channels, [scale_width(w, width) for w in widths])

    build.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016, option A shortcuts)."
    return build


for _depth in (8, 20, 32, 44, 56, 110):
    register_model(f"resnet{_depth}", family="resnet_cifar", num_classes=10, input_size=32)(_make(_depth))
