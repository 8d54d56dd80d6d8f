"""Candidate: one point of a space, what a trial builds, in the canonical form runs record and compare."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Union

from ..methods import MethodConfig
from ..methods._schema import build_config, entropy_applies, quant_applies


def precision(bits: int | str, quant: str | None, entropy: bool = False) -> tuple[int | str | None, str | None, bool | None]:
    """A candidate's (bits, quant, entropy): None where one does not apply (quant at 32 bits; entropy without
    integer codes) and for entropy off, so a candidate without it reads as it did before the axis existed."""
    if not quant_applies(bits):
        return None, None, None
    return bits, quant, (True if entropy and entropy_applies(bits) else None)


@dataclass(frozen=True)
class Candidate:
    """One point of a space: what to build. ``budget``/``scope``/``scale`` are None where the method reads none."""

    arch: str
    method: str
    budget: Union[int, float, str, None] = None
    scope: str | None = None
    scale: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    distill: bool | None = None
    """The space.distill axis: with (True) or without (False) distillation; None where the space has no such axis."""
    bits: int | str | None = None
    """The precision stage's bits below 32 (None: float32), its ``quant`` (ptq or qat) and ``entropy`` (True: coded)."""
    quant: str | None = None
    entropy: bool | None = None

    def method_config(self, seed: int = 0) -> MethodConfig:
        return build_config(self.method, {"budget": self.budget, "scope": self.scope, "scale": self.scale, "bits": self.bits,
                                          "quant": self.quant, "entropy": self.entropy}, dict(self.options), seed=seed)

    def params(self) -> dict[str, Any]:
        """A flat JSON-ready dict (the method's options beside the axes), as trials record their config."""
        flat = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "options"}
        return {**flat, **dict(self.options)}

    @classmethod
    def from_params(cls, d: dict[str, Any]) -> "Candidate":
        from ..methods._targets import parse_scope

        if isinstance(d.get("scope"), dict):  # a scope rule, as JSON records it
            d = {**d, "scope": parse_scope(d["scope"])}
        own = {f.name for f in dataclasses.fields(cls)} - {"options"}  # distill is an axis, not a method option
        return cls(
            **{k: v for k, v in d.items() if k in own}, options=tuple(sorted((k, v) for k, v in d.items() if k not in own))
        )

    def label(self) -> str:
        from ..methods._targets import scope_label

        parts = ([scope_label(self.scope)] if self.scope else []) + ([self.scale] if self.scale else [])
        precision = [(k, v) for k, v in (("bits", self.bits), ("quant", self.quant), ("entropy", self.entropy)) if v is not None]
        extra = "/".join(parts + [f"{k}={v}" for k, v in sorted([*self.options, *precision])])
        return (
            f"{self.arch} {self.method}"
            + (f"@{self.budget}" if self.budget is not None else "")
            + (f" ({extra})" if extra else "")
            + (" distilled" if self.distill else "")
        )
