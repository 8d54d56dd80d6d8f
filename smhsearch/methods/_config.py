"""The base of every method's config, and how its fields read as options.

Below the registry on purpose: the schema of spaces and flags (``_schema``) and the
registry (``_base``) both read configs, and neither needs the other to do so.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Mapping, get_args, get_origin

AXES: tuple[str, ...] = ("budget", "scope", "scale")
"""The space axes shared by methods: a method reads the subset it declares in ``axes``."""

INITS: tuple[str, ...] = ("scratch", "fit")
"""How a method starts its variables: its calibrated random start, or the closest fit to the model's weights."""

PRECISION_AXES: tuple[str, ...] = ("bits", "quant", "entropy")
"""The precision stage's fields, which every method config has (:class:`MethodConfig`): axes every method reads."""


@dataclass(frozen=True)
class OptionInfo:
    """One field of a method config, as a space or a flag sees it."""

    name: str
    annotation: Any
    default: Any
    help: str

    @property
    def is_bool(self) -> bool:
        return self.annotation is bool

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The allowed values when the type says them (a ``Literal``), else None."""
        ann = self.annotation
        members = (
            [a for a in get_args(ann) if a is not type(None)] if get_origin(ann) in (typing.Union, types.UnionType) else [ann]
        )
        values = tuple(v for a in members if get_origin(a) is Literal for v in get_args(a))  # Literal, Optional or | a rule
        return values or None

    def describe(self) -> str:
        allowed = f" ({' | '.join(map(str, self.choices))})" if self.choices else ""
        return f"{self.help}{allowed}".strip()


def options_of(config_cls: type[MethodConfig]) -> dict[str, OptionInfo]:
    """Every field of ``config_cls`` with its resolved type, default and help text, in field order."""
    hints = typing.get_type_hints(config_cls)
    out = {}
    for f in dataclasses.fields(config_cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = OptionInfo(f.name, hints.get(f.name, Any), default, str(f.metadata.get("help", "")))
    return out


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method's config. Subclasses set ``method`` (the registry name)."""

    method: ClassVar[str] = ""
    """The registry name (``"smh"``); also its name in spaces and on the command line."""
    axes: ClassVar[tuple[str, ...]] = ("budget",)
    """The shared space axes the method reads, among :data:`AXES` (``budget``, ``scope``, ``scale``)."""
    space_options: ClassVar[tuple[str, ...]] = ()
    """Its own fields a space may set on a method entry (``{name: hashednets, per_layer: true}``)."""
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Other names of the method, each fixing some options: ``{"hashed2": {"hashes": 2}}``."""
    needs_arch: ClassVar[bool] = False
    """True when the method rebuilds the architecture (a registry model), not any nn.Module."""
    keeps_architecture: ClassVar[bool] = True
    """True when the materialised model has the base architecture's shapes (its state dict loads into the base)."""

    # The precision stage (methods/_precision.py), the same two fields on every method; keyword-only, so a
    # method's own fields keep their positions.
    bits: int | str = field(default=32, kw_only=True, metadata={
        "help": "stored precision of the method's variables: 32 | 16 | 8 | 4 | 1 (binary) | kmeans:K (K shared values, 2..256)"})
    quant: Literal["ptq", "qat"] | None = field(default=None, kw_only=True, metadata={
        "help": "below 32 bits: quantise after training (ptq, the default) or train through the quantiser (qat)"})
    init: Literal["scratch", "fit"] | None = field(default=None, kw_only=True, metadata={
        "help": "the variables' start: scratch (the method's calibrated random start) or fit (the closest start to the "
                "weights the model holds); default fit for a model built with weights=FILE, else scratch"})
    entropy: bool = field(
        default=False,
        kw_only=True,
        metadata={
            "help": "entropy-code the file's integer codes and masks (Deep Compression's last stage; LZMA2): "
            "bits 8, 4, 1 or kmeans:K"
        },
    )

    def __post_init__(self) -> None:
        """The precision fields' rules (``_precision.check_precision``: quant applies below 32 bits, entropy to integer
        codes), checked by every config; ``bits`` in its one spelling. A subclass's ``__post_init__`` calls this first."""
        from ._precision import check_precision, parse_bits

        object.__setattr__(self, "bits", parse_bits(self.bits))
        check_precision(self.bits, self.quant, self.entropy)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that :func:`config_from_dict` turns back into an equal config."""
        out: dict[str, Any] = {"method": self.method}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "init" and v is None:  # left to the model: recorded only when set, so older records read the same
                continue
            out[f.name] = (
                v.to_dict() if hasattr(v, "to_dict") else (list(v) if isinstance(v, tuple) else v)
            )  # a ScopeRule: its dict
        return out

    @property
    def uncompressed(self) -> bool:
        """True when the config leaves the model as its base at float32 (the dense model at 32 bits): it ships as the
        base's own weights in a dense file, and records and exports offer no compact file for it."""
        return False

    def derived_bytes_per_weight(self) -> int:
        """Bytes the built model holds per compressed weight beyond the stored variables and the weights
        themselves (tables derived from a seed, never saved): what loading a file budgets for before it builds."""
        return 0

    def select(self, model, require: bool = True):
        """The tensors of ``model`` this method compresses (``list[Target]``), in order; None for a method that
        rebuilds the architecture instead of choosing tensors (the width multiplier).

        ``require=True``: a model with nothing to compress is a ``ValueError``.
        """
        return None
