"""Networks built for their shapes alone: the meta device, with initialisation skipped.

``check``, feasibility and the width multiplier's search for alpha build many networks
only to read their shapes. On the meta device a tensor has no storage, yet
``torch.device("meta")`` still runs every initialiser through torch's reference
implementations (a ``normal_`` on a meta tensor costs about 2 ms: building MobileNetV2 took
0.2 s, and ``load_space`` on spaces/mobilenet.yaml two minutes). Random initialisers write
values that meta tensors cannot hold, so :func:`on_meta` answers them with the tensor
itself. Any other op runs as usual, so a builder that reads a value (``.item()``) still
fails on meta as it did before, and callers fall back to a real build.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch.overrides import TorchFunctionMode

# in-place fills the nn.init functions (and builders calling them directly) end in
_FILLS = frozenset(getattr(torch.Tensor, n) for n in (
    "normal_", "uniform_", "bernoulli_", "exponential_", "geometric_", "log_normal_", "cauchy_", "random_",
    "erfinv_", "fill_", "zero_"))


class _SkipMetaFills(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _FILLS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def on_meta() -> Iterator[None]:
    """Build on the meta device (shapes only, no memory) without running the initialisers.

    >>> from smhsearch.models import create_model
    >>> with on_meta():
    ...     net = create_model("resnet8")
    >>> net.conv1.weight.is_meta, sum(p.numel() for p in net.parameters())
    (True, 75290)
    """
    with torch.device("meta"), _SkipMetaFills():
        yield
