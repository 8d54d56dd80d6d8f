"""The dense model as a method: the base architecture kept whole, at a precision.

``Dense()`` is the uncompressed model a search compares every method against; ``Dense(bits=8)``
stores every weight matrix in 8 bits, and the preset ``binaryconnect`` trains every weight
matrix through its signs. It has no budget and no axes. Registered like every method, so a
dense trial is a :class:`DenseModel` that the trainer, measurement and export treat as any
other :class:`CompressedModel`; :func:`as_compressed` gives a plain ``nn.Module`` (a user's
model, a loaded dense file) the same face.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from torch import nn

from . import _precision
from ._base import CompressedModel, register_method
from ._config import MethodConfig
from ..models._factory import arch_of


@dataclass(frozen=True)
class Dense(MethodConfig):
    """The uncompressed model at a precision: ``Dense()`` is the base as it is, ``Dense(bits=8)`` stores every weight
    matrix in 8 bits."""

    method = "dense"
    axes = ()
    presets = {
        # BinaryConnect (Courbariaux et al. 2015) with XNOR-Net's per-filter weight scale: every weight matrix trained
        # through its signs, stored one bit a weight plus one bfloat16 scale a row
        "binaryconnect": {"bits": 1, "quant": "qat"},
    }

    @property
    def uncompressed(self) -> bool:
        return self.bits == 32

    def to_dict(self) -> dict[str, Any]:
        # The dense model at float32 is written as its name alone, as every record and teacher key holds it.
        return {"method": self.method} if self == Dense() else super().to_dict()


class DenseModel(CompressedModel):
    """The base model itself, held so the precision stage can quantise its weights and the compact file store them.

    ``share``: hold ``base`` itself rather than a copy (what :func:`as_compressed` does for a module it is asked about).
    """

    def __init__(self, base: nn.Module, config: Dense, share: bool = False) -> None:
        super().__init__(config, arch_of(base))
        self.base = base if share else copy.deepcopy(base)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base(*args, **kwargs)

    def materialize(self) -> nn.Module:
        return copy.deepcopy(self.base)

    def virtual_count(self) -> int:
        return sum(p.numel() for p in self.base.parameters())

    def describe(self) -> dict[str, Any]:
        return {"init": self.init}  # fit: the weights the base was built from, as they are (fine-tuning)


@register_method(Dense, planner=lambda model, config: None)  # nothing to plan: no budget to meet
def _build(model: nn.Module, config: Dense) -> DenseModel:
    return DenseModel(model, config)


def as_compressed(model: nn.Module) -> CompressedModel:
    """``model`` itself when it is compressed, else the dense model at float32 around it (sharing its tensors, no copy):
    code that measures, trains or saves any module asks every one the same questions.

    >>> import smhsearch
    >>> base = smhsearch.create_model("mlp", hidden=[16])
    >>> as_compressed(base).stored_count() == sum(p.numel() for p in base.parameters())
    True
    """
    if isinstance(model, CompressedModel):
        return model
    return _precision.attach(DenseModel(model, Dense(), share=True))
