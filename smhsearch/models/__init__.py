"""Architectures: CIFAR ResNets, torchvision's EfficientNet / MobileNet / ResNet / ViT / Swin, a CIFAR ViT, MLPs.

>>> from smhsearch.models import create_model, list_models
>>> "resnet32" in list_models()
True
"""

from . import _mlp, _resnet_cifar, _torchvision, _vit_cifar  # noqa: F401  (registration)
from ._factory import IMAGE_SIZE_FAMILIES, MODELS, ModelEntry, arch_of, create_model, list_models, model_info, register_model
from ._meta import on_meta
from ._weights import HEADS, WeightsError, WeightsInfo, file_sha256, load_weights, read_state_dict, weights_of

__all__ = [
    "HEADS",
    "IMAGE_SIZE_FAMILIES",
    "MODELS",
    "ModelEntry",
    "WeightsError",
    "WeightsInfo",
    "arch_of",
    "create_model",
    "file_sha256",
    "list_models",
    "load_weights",
    "model_info",
    "on_meta",
    "read_state_dict",
    "register_model",
    "weights_of",
]
