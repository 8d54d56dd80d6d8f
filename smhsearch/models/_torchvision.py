"""ImageNet architectures from torchvision, built with random initialisation.

``in_channels`` other than 3 replaces the stem convolution by one of the same shape
otherwise, initialised as torchvision initialises its convolutions.
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


def _make(tv_name: str):
    def build(num_classes: int, in_channels: int, **kwargs) -> nn.Module:
        import torchvision  # imported here: `import smhsearch` stays light

        model = torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes, **kwargs)
        _replace_stem(model, in_channels)
        return model

    build.__doc__ = f"torchvision.models.{tv_name}, randomly initialised."
    return build


_FAMILIES = {
    "efficientnet": [(f"efficientnet_b{i}", s) for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))],
    "mobilenet": [("mobilenet_v2", 224), ("mobilenet_v3_small", 224), ("mobilenet_v3_large", 224)],
    "resnet": [("resnet18", 224), ("resnet34", 224), ("resnet50", 224), ("resnet101", 224)],
}

for _family, _members in _FAMILIES.items():
    for _name, _size in _members:
        register_model(_name, family=_family, num_classes=1000, input_size=_size)(_make(_name))
