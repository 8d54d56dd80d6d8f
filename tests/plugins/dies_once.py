"""A worker that dies, as a lost node would: the ``toyshare`` method, whose model kills its own process (``os._exit``)
at the ``$SMHSEARCH_DIE_AT``-th training forward unless the file ``$SMHSEARCH_DIED`` exists (it is made just before).
So the first attempt of a trial dies mid-training, after its first epochs' checkpoints, and a retry lives."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from toy_method import ToyShare, ToyShareModel, _build

from smhsearch.methods import register_method


@dataclass(frozen=True)
class DiesOnce(ToyShare):
    method = "dies_once"
    presets = {}


class DiesOnceModel(ToyShareModel):
    forwards = 0

    def forward(self, x):
        if self.training:
            DiesOnceModel.forwards += 1
            marker = Path(os.environ["SMHSEARCH_DIED"])
            if DiesOnceModel.forwards >= int(os.environ["SMHSEARCH_DIE_AT"]) and not marker.exists():
                marker.write_text(str(os.getpid()))
                os._exit(3)
        return super().forward(x)


@register_method(DiesOnce)
def _build_dies_once(model, config: DiesOnce) -> DiesOnceModel:
    return _build(model, config, DiesOnceModel)
