"""The architecture registry: names, published sizes, in_channels, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smhsearch._registry import Registry, UnknownNameError
from smhsearch.models import arch_of, create_model, list_models, model_info, register_model

# torchvision's own declared sizes (1000 classes) and He et al.'s CIFAR ResNets.
PUBLISHED = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b2": 9_109_994,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vit_b_16": 86_567_656,
    "vit_b_32": 88_224_232,
    "swin_t": 28_288_354,
}
HE_2016 = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet44": 0.66e6, "resnet56": 0.85e6, "resnet110": 1.7e6}


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name,expected", PUBLISHED.items())
def test_torchvision_sizes_match_declared(name, expected):
    with torch.device("meta"):  # shapes only
        assert count(create_model(name)) == expected


@pytest.mark.parametrize("name,expected", HE_2016.items())
def test_cifar_resnets_match_he_et_al(name, expected):
    m = create_model(name)
    assert abs(count(m) - expected) / expected < 0.01 + (0.02 if name == "resnet110" else 0)  # 1.7M is rounded in the paper
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_hashednets_mlps():
    one, three = create_model("mlp_1x1000"), create_model("mlp_3x1000")
    assert count(one) == 784 * 1000 + 1000 + 1000 * 10 + 10
    assert count(three) == 784 * 1000 + 1000 + 2 * (1000 * 1000 + 1000) + 1000 * 10 + 10
    assert one(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_every_registered_model_builds_and_runs_small():
    expected = {"efficientnet", "mobilenet", "resnet", "resnet_cifar", "mlp", "vit", "swin", "vit_cifar"}
    assert {model_info(n).family for n in list_models()} == expected
    for name in ["efficientnet_b0", "mobilenet_v3_large", "resnet18", "resnet8", "mlp", "vit_cifar_tiny"]:
        info = model_info(name)
        m = create_model(name, num_classes=7).eval()
        x = torch.randn(1, info.default_in_channels, 32 if info.family != "mlp" else 28, 32 if info.family != "mlp" else 28)
        with torch.no_grad():
            assert m(x).shape == (1, 7)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "mobilenet_v2", "resnet20"])
def test_in_channels(name):
    m = create_model(name, num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_arch_is_recorded():
    assert arch_of(create_model("resnet20", num_classes=100)) == {
        "name": "resnet20",
        "kwargs": {"num_classes": 100, "in_channels": 3},
    }
    assert arch_of(nn.Linear(2, 2)) is None


def test_unknown_name_lists_nearest():
    with pytest.raises(UnknownNameError, match=r"unknown architecture 'resnet33'; nearest: .*resnet32"):
        create_model("resnet33")
    with pytest.raises(ValueError, match="efficientnet_b0"):
        create_model("efficientnet-b0")


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet32", family="resnet_cifar", num_classes=10, input_size=32)(lambda **kw: nn.Identity())
    r: Registry[int] = Registry("thing")
    r.add("a", 1)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        r.add("a", 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes must be >= 1, but got 0"):
        create_model("resnet20", num_classes=0)
    with pytest.raises(ValueError, match="depth 6n\\+2"):
        from smhsearch.models._resnet_cifar import ResNetCIFAR

        ResNetCIFAR(depth=33)


@pytest.mark.parametrize(
    "name,side,kwargs", [("vit_b_32", 64, {"image_size": 64}), ("swin_t", 64, {}), ("vit_cifar_tiny", 32, {})]
)
@pytest.mark.parametrize("width", [1.0, 0.3])
def test_transformers_take_a_width(name, side, kwargs, width):
    """Width narrows every head (the head count stays), so attention stays well formed and counts fall ~ width^2."""
    torch.manual_seed(0)
    m = create_model(name, num_classes=5, width=width, **kwargs).eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, side, side)).shape == (1, 5)
    if width < 1:
        with torch.device("meta"):
            full = count(create_model(name, num_classes=5, **kwargs))
        assert 0.05 < count(m) / full < 0.15


def test_vit_cifar_tiny_is_torchvision_vit_of_the_documented_shape():
    from torchvision.models.vision_transformer import VisionTransformer

    m = create_model("vit_cifar_tiny")
    assert isinstance(m, VisionTransformer)
    assert (m.image_size, m.patch_size, m.hidden_dim, m.mlp_dim, len(m.encoder.layers)) == (32, 4, 96, 192, 4)
    assert m.encoder.layers[0].self_attention.num_heads == 3
    with pytest.raises(ValueError, match="hidden must be divisible by heads"):
        create_model("vit_cifar_tiny", hidden=100)
