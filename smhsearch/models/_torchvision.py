"""ImageNet architectures from torchvision, built with random initialisation.

``in_channels`` other than 3 replaces the stem convolution by one of the same shape
otherwise, initialised as torchvision initialises its convolutions. The vision
transformers take ``image_size`` (ViT's positional embedding is sized for it; 224 by
default); Swin takes any input side.
"""

from __future__ import annotations

from torch import nn

from ._factory import register_model


def _replace_stem(model: nn.Module, in_channels: int) -> None:
    if in_channels == 3:
        return
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d) and mod.in_channels == 3:
            stem = nn.Conv2d(in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding,  # type: ignore[arg-type]
                             mod.dilation, mod.groups, mod.bias is not None)  # type: ignore[arg-type]
            nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
            if stem.bias is not None:
                nn.init.zeros_(stem.bias)
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name), attr, stem)
            return
    raise ValueError("no 3-channel stem convolution found to replace")  # pragma: no cover


# (width, depth) multipliers and dropout of torchvision's EfficientNet builders
_EFFICIENTNET = {
    f"efficientnet_b{i}": v
    for i, v in enumerate(
        [
            (1.0, 1.0, 0.2),
            (1.0, 1.1, 0.2),
            (1.1, 1.2, 0.3),
            (1.2, 1.4, 0.3),
            (1.4, 1.8, 0.4),
            (1.6, 2.2, 0.4),
            (1.8, 2.6, 0.5),
            (2.0, 3.1, 0.5),
        ]
    )
}


def _narrow(tv_name: str, num_classes: int, width: float, **kwargs) -> nn.Module:
    """torchvision's architecture with every layer's channels multiplied by ``width``.

    Channels round as torchvision rounds them (to multiples of 8), through its own
    configuration functions, so ``width=1`` is exactly the stock model.
    """
    from functools import partial

    from torchvision.models import efficientnet, mobilenetv2, mobilenetv3

    if not 0.0 < width <= 1.0:
        raise ValueError(f"width must lie in (0, 1], but got {width}")
    if tv_name in _EFFICIENTNET:
        w, d, dropout = _EFFICIENTNET[tv_name]
        setting, last = efficientnet._efficientnet_conf(tv_name, width_mult=w * width, depth_mult=d)
        norm = (
            partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
            if tv_name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7")
            else None
        )
        return efficientnet.EfficientNet(
            setting, kwargs.pop("dropout", dropout), num_classes=num_classes, norm_layer=norm, last_channel=last, **kwargs
        )
    if tv_name == "mobilenet_v2":
        return mobilenetv2.MobileNetV2(num_classes=num_classes, width_mult=width, **kwargs)
    if tv_name.startswith("mobilenet_v3"):
        setting, last = mobilenetv3._mobilenet_v3_conf(tv_name, width_mult=width)
        return mobilenetv3.MobileNetV3(setting, last, num_classes=num_classes, **kwargs)
    if tv_name in _VIT:
        return _narrow_vit(tv_name, num_classes, width, **kwargs)
    if tv_name in _SWIN:
        return _narrow_swin(tv_name, num_classes, width, **kwargs)
    raise ValueError(f"width multiplier is not available for {tv_name}: torchvision's ResNets fix their channel counts")


# torchvision's ViT builders: (patch, layers, heads, hidden, mlp)
_VIT = {"vit_b_16": (16, 12, 12, 768, 3072), "vit_b_32": (32, 12, 12, 768, 3072)}
# torchvision's Swin builders: (embed_dim, depths, heads, window, stochastic depth)
_SWIN = {"swin_t": (96, [2, 2, 6, 2], [3, 6, 12, 24], [7, 7], 0.2)}


def per_head(dim: int, heads: int, width: float) -> int:
    """``dim * width`` rounded to a whole number (>= 1) of channels per head, times the heads:
    attention needs its width divisible by its head count, so the heads are kept and each narrows."""
    return heads * max(1, int(round(dim / heads * width)))


def _narrow_vit(tv_name: str, num_classes: int, width: float, image_size: int = 224, **kwargs) -> nn.Module:
    from torchvision.models.vision_transformer import VisionTransformer

    patch, layers, heads, hidden, mlp = _VIT[tv_name]
    return VisionTransformer(image_size, patch, layers, heads, per_head(hidden, heads, width), max(1, int(round(mlp * width))),
                             num_classes=num_classes, **kwargs)


def _narrow_swin(tv_name: str, num_classes: int, width: float, **kwargs) -> nn.Module:
    from torchvision.models.swin_transformer import SwinTransformer

    embed, depths, heads, window, depth_prob = _SWIN[tv_name]
    return SwinTransformer(
        [4, 4],
        per_head(embed, heads[0], width),
        depths,
        heads,
        window,
        stochastic_depth_prob=kwargs.pop("stochastic_depth_prob", depth_prob),
        num_classes=num_classes,
        **kwargs,
    )


def _make(tv_name: str):
    def build(num_classes: int, in_channels: int, width: float = 1.0, **kwargs) -> nn.Module:
        import torchvision  # imported here: `import smhsearch` stays light

        if width == 1.0:
            model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
        else:
            model = _narrow(tv_name, num_classes, width, **kwargs)
        _replace_stem(model, in_channels)
        return model

    build.__doc__ = f"torchvision.models.{tv_name}, randomly initialised."
    return build


_FAMILIES = {
    "efficientnet": [(f"efficientnet_b{i}", s) for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))],
    "mobilenet": [("mobilenet_v2", 224), ("mobilenet_v3_small", 224), ("mobilenet_v3_large", 224)],
    "resnet": [("resnet18", 224), ("resnet34", 224), ("resnet50", 224), ("resnet101", 224)],
    "vit": [("vit_b_16", 224), ("vit_b_32", 224)],
    "swin": [("swin_t", 224)],
}

for _family, _members in _FAMILIES.items():
    for _name, _size in _members:
        register_model(_name, family=_family, num_classes=1000, input_size=_size)(_make(_name))
