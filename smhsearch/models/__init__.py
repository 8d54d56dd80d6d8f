"""Architectures: CIFAR ResNets, torchvision's EfficientNet / MobileNet / ResNet / ViT / Swin, a CIFAR ViT, MLPs.

>>> from smhsearch.models import create_model, list_models
>>> "resnet32" in list_models()
True
"""

from . import _mlp, _resnet_cifar, _torchvision, _vit_cifar  # noqa: F401  (registration)
from ._factory import IMAGE_SIZE_FAMILIES, MODELS, ModelEntry, arch_of, create_model, list_models, model_info, register_model
from ._meta import on_meta

__all__ = ["IMAGE_SIZE_FAMILIES", "MODELS", "ModelEntry", "arch_of", "create_model", "list_models", "model_info", "on_meta", "register_model"]
