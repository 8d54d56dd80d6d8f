"""A small vision transformer for 32x32 images (CIFAR), torchvision's ``VisionTransformer``.

Patches of 4x4 give 64 tokens plus the class token. ``vit_cifar_tiny`` is sized to
train on two CPU cores: 4 layers, 3 heads of 32 channels (hidden 96), MLP 192.
``width`` multiplies the hidden and MLP widths, keeping the heads (each head narrows),
so the width-multiplier baseline applies to it.

>>> from smhsearch.models import create_model
>>> sum(p.numel() for p in create_model("vit_cifar_tiny").parameters())
311338
"""

from __future__ import annotations

from torch import nn

from ._factory import register_model


def vit_cifar(num_classes: int, in_channels: int, image_size: int = 32, patch_size: int = 4, layers: int = 4, heads: int = 3,
              hidden: int = 96, mlp: int = 192, width: float = 1.0, dropout: float = 0.0) -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    from ._torchvision import _replace_stem, per_head

    if not 0.0 < width <= 1.0:
        raise ValueError(f"width must lie in (0, 1], but got {width}")
    if hidden % heads:
        raise ValueError(f"hidden must be divisible by heads, but got hidden={hidden}, heads={heads}")
    if image_size % patch_size:
        raise ValueError(f"image_size must be divisible by patch_size, but got image_size={image_size}, patch_size={patch_size}")
    model = VisionTransformer(
        image_size,
        patch_size,
        layers,
        heads,
        per_head(hidden, heads, width),
        max(1, int(round(mlp * width))),
        dropout=dropout,
        num_classes=num_classes,
    )
    _replace_stem(model, in_channels)
    return model


register_model(
    "vit_cifar_tiny",
    family="vit_cifar",
    num_classes=10,
    input_size=32,
    doc="ViT for 32x32 inputs: patch 4, 4 layers, 3 heads, hidden 96, MLP 192 (torchvision's VisionTransformer).",
)(vit_cifar)
