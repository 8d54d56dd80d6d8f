"""FLOP counting of a plain module with fvcore: the one place fvcore is called.

It sits below the methods and ``measure`` so that a method that needs FLOPs (width
with resolution) does not reach up to ``measure``.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn


def count_flops(module: nn.Module, input_shape: Sequence[int]) -> int:
    """fvcore's count of one forward pass of ``module`` on one sample of shape ``input_shape``.

    One fused multiply-add counts as one flop (fvcore reports MACs). ``module`` is run in
    eval mode and restored to its mode afterwards.
    """
    was_training = module.training
    module.eval()
    try:
        device = next(module.parameters()).device
        x = torch.zeros(1, *input_shape, device=device)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore's tracer trips torch.jit deprecation notices
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(module, x)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        module.train(was_training)
