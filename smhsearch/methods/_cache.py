"""The eval cache: weights a model computes from its variables, kept while those variables are unchanged.

In eval mode without autograd a model computes the same weights every batch (a reparametrised model's
dense weights, QAT's quantised copies), so validation would pay for them each time; this keeps them.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable

import torch


class WeightCache:
    """Values computed from tensors, each under a name and kept while the tensors it came from are unchanged.

    An entry holds while every source tensor has the same storage, version and dtype: an in-place update
    (an optimizer step, ``load_state_dict``) bumps the version, ``.to()`` and ``.half()`` move the storage.
    A copy or a pickle starts empty: the entries are derived, and can be as large as the dense model.

    >>> cache, w = WeightCache(), torch.ones(3)
    >>> a = cache.get("double", [w], lambda: 2 * w)
    >>> cache.get("double", [w], lambda: 2 * w) is a  # unchanged: the same tensor
    True
    >>> _ = w.add_(1)
    >>> cache.get("double", [w], lambda: 2 * w).tolist()
    [4.0, 4.0, 4.0]
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[tuple, Any]] = {}

    def get(self, name: Hashable, sources: Iterable[torch.Tensor | None], compute: Callable[[], Any], *extra: Hashable) -> Any:
        """The entry ``name`` if ``sources`` (and ``extra``, anything else the value depends on) are as they were when it
        was computed, else ``compute()``, kept as the new entry."""
        key = (*((t.data_ptr(), t._version, t.dtype) for t in sources if t is not None), *extra)
        entry = self._entries.get(name)
        if entry is None or entry[0] != key:
            # computed while the old value is still held, so its storage is new and a cache keyed on it sees a change
            entry = self._entries[name] = (key, compute())
        return entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __reduce__(self) -> tuple:
        return (type(self), ())  # deepcopy and pickle: an empty cache
