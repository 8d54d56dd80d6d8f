"""FLOP counting of a plain module with fvcore: the one place fvcore is called.

It sits below the methods and ``measure`` so that a method that needs FLOPs (width
with resolution) does not reach up to ``measure``.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any, Sequence

import torch
from torch import nn


def count_flops(module: nn.Module, input_shape: Sequence[int]) -> int:
    """fvcore's count of one forward pass of ``module`` on one sample of shape ``input_shape``.

    One fused multiply-add counts as one flop (fvcore reports MACs). ``module`` is run in
    eval mode and restored to its mode afterwards. A module built on the meta device (shapes
    only) is counted on a copy with zeroed CPU storage: FLOPs do not depend on weights, but a
    forward pass reads integer buffers (Swin's relative-position index), where uninitialised
    storage is an index out of bounds and zero is always in range.
    """
    if any(t.is_meta for t in [*module.parameters(), *module.buffers()]):  # a copy: to_empty works in place
        module = copy.deepcopy(module).to_empty(device="cpu")
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                t.zero_()
    was_training = module.training
    module.eval()
    try:
        device = next(module.parameters()).device
        x = torch.zeros(1, *input_shape, device=device)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore's tracer trips torch.jit deprecation notices
            from fvcore.nn import FlopCountAnalysis

            analysis = FlopCountAnalysis(module, x).set_op_handle(**ATTENTION_HANDLES)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        module.train(was_training)


# fvcore counts no attention kernel: a transformer's QK^T and AV (and, on nn.MultiheadAttention's eval fast path,
# its projections too) would count zero, and ViT-B/16 would be 11.3 GFLOPs instead of torchvision's 17.56.
def _shape(v: Any) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    return list(get_shape(v))


def _sdpa_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """``scaled_dot_product_attention(q, k, v, ...)``: q (..., Lq, D), k (..., Lk, D), v (..., Lk, Dv); QK^T and AV."""
    q, k, v = (_shape(t) for t in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def _native_mha_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """``_native_multi_head_attention(query, key, value, embed_dim, ...)``, batch first, (B, L, E): the q, k and v
    projections, QK^T and AV over all heads, and the output projection."""
    q, k = _shape(inputs[0]), _shape(inputs[1])
    batch, lq, e = math.prod(q[:-2]), q[-2], q[-1]
    lk = k[-2]
    return batch * (lq * e * e + 2 * lk * e * e + 2 * lq * lk * e + lq * e * e)


ATTENTION_HANDLES = {"aten::scaled_dot_product_attention": _sdpa_flops, "aten::_native_multi_head_attention": _native_mha_flops}
