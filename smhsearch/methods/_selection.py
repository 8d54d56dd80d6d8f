"""What a method would compress in a model and what it leaves dense, per tensor, before anything is built.

The data (:class:`Selection`) is computed apart from its text (:func:`format_selection`),
so ``compress --dry-run`` and ``check`` print it and tests compare the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ._base import MethodConfig
from ._targets import classify, scope_label


@dataclass(frozen=True)
class TensorChoice:
    """One trainable tensor: its size and whether the method compresses it (and why not)."""

    name: str
    shape: tuple[int, ...]
    numel: int
    compressed: bool
    reason: str
    """Why the tensor stays dense ("" when it is compressed)."""


@dataclass(frozen=True)
class Selection:
    method: str
    scope: str
    tensors: tuple[TensorChoice, ...]

    @property
    def total(self) -> int:
        """Trainable parameters of the base model."""
        return sum(t.numel for t in self.tensors)

    @property
    def compressed(self) -> int:
        return sum(t.numel for t in self.tensors if t.compressed)

    @property
    def dense(self) -> int:
        return self.total - self.compressed

    @property
    def share_compressed(self) -> float:
        return self.compressed / self.total if self.total else 0.0

    def dense_by_reason(self) -> dict[str, tuple[int, int]]:
        """Reason -> (tensors, parameters) of what stays dense, largest first."""
        out: dict[str, tuple[int, int]] = {}
        for t in self.tensors:
            if not t.compressed:
                n, p = out.get(t.reason, (0, 0))
                out[t.reason] = (n + 1, p + t.numel)
        return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def selection_summary(model: nn.Module, config: MethodConfig) -> Selection:
    """Which tensors of ``model`` ``config``'s method compresses and which stay dense.

    A method that rebuilds the architecture rather than choosing tensors (the width
    multiplier) is a ``ValueError``. Low-rank lists the tensors it may factorise; its
    budget can still leave some of them dense.

    >>> from smhsearch import SMH, create_model
    >>> s = selection_summary(create_model("resnet20"), SMH(budget="10%"))
    >>> s.compressed, s.dense, round(s.share_compressed, 4)
    (268346, 1376, 0.9949)
    """
    chosen = config.select(model, require=False)
    if chosen is None:
        raise ValueError(f"method {config.method!r} does not choose tensors to compress: it rebuilds the architecture")
    names = {t.name for t in chosen}
    scope = getattr(config, "scope", "all")
    rows = []
    for c, _ in classify(model, scope):
        compressed = c.name in names
        reason = "" if compressed else (c.refused or f"{config.method} does not compress this tensor")
        rows.append(TensorChoice(c.name, c.shape, c.numel, compressed, reason))
    return Selection(config.method, scope_label(scope), tuple(rows))


def format_selection(s: Selection, limit: int = 10) -> str:
    """The summary as text: totals, what stays dense by reason, and the ``limit`` largest dense tensors."""
    from .._budget import format_count

    lines = [f"{s.method} (scope {s.scope}): compresses {s.compressed:,} of {s.total:,} trainable parameters "
             f"({100 * s.share_compressed:.2f}%) in {sum(t.compressed for t in s.tensors)} tensors; "
             f"{s.dense:,} stay dense ({100 * (1 - s.share_compressed):.2f}%)"]
    for reason, (n, p) in s.dense_by_reason().items():
        lines.append(f"  dense: {n} tensor{'s' if n != 1 else ''}, {format_count(p)} parameters: {reason}")
    largest = sorted((t for t in s.tensors if not t.compressed), key=lambda t: -t.numel)[:limit]
    for t in largest:
        lines.append(f"    {t.name} {list(t.shape)} ({t.numel:,}, {100 * t.numel / max(s.total, 1):.3f}%)")
    return "\n".join(lines)
