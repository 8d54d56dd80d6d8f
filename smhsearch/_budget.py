"""Parameter budgets: ``5_300_000``, ``"5.3M"``, ``"46K"``, ``"25%"`` or ``0.25``.

A budget is the total *stored trainable* parameter count of the compressed model.
Absolute forms are taken as they are; relative forms (a percentage or a float
fraction) are resolved against the base model's own trainable count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

from ._errors import ConfigError

BudgetLike = Union[int, float, str, "Budget"]

_SUFFIX = {"": 1, "K": 1_000, "M": 1_000_000, "G": 1_000_000_000}
_ABS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMG]?)\s*$", re.IGNORECASE)
_PCT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")


@dataclass(frozen=True)
class Budget:
    """A parsed budget: exactly one of ``count`` (absolute) or ``fraction`` is set.

    >>> Budget.parse("5.3M").resolve(9_109_994)
    5300000
    >>> Budget.parse("25%").resolve(464_154)
    116038
    """

    count: int | None = None
    fraction: float | None = None

    @classmethod
    def parse(cls, value: BudgetLike, field: str = "budget") -> "Budget":
        """The budget ``value`` means; a ConfigError naming ``field`` (the config's field that holds it) when it is none."""
        if isinstance(value, Budget):
            return value
        forms = f"{field} must be an int, a float fraction in (0, 1) or a string like '5.3M', '46K', '25%'"
        if isinstance(value, bool):
            raise ConfigError(field, forms, value)
        if isinstance(value, int):
            if value <= 0:
                raise ConfigError(field, f"an absolute {field} must be a positive int", value)
            return cls(count=value)
        if isinstance(value, float):
            if not (0.0 < value < 1.0) or math.isnan(value):
                raise ConfigError(field, f"a float {field} is a fraction of the base model and must lie in (0, 1)", value)
            return cls(fraction=value)
        if isinstance(value, str):
            m = _PCT.match(value)
            if m:
                pct = float(m.group(1))
                if not 0.0 < pct < 100.0:
                    raise ConfigError(field, f"a percentage {field} must lie in (0%, 100%)", value)
                return cls(fraction=pct / 100.0)
            m = _ABS.match(value)
            if m:
                count = int(round(float(m.group(1)) * _SUFFIX[m.group(2).upper()]))
                if count <= 0:
                    raise ConfigError(field, f"an absolute {field} must be positive", value)
                return cls(count=count)
        raise ConfigError(field, forms, value)

    def resolve(self, base_count: int) -> int:
        """The absolute stored count this budget allows for a base model of ``base_count``."""
        if self.count is not None:
            return self.count
        assert self.fraction is not None
        return int(math.floor(self.fraction * base_count))

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.fraction * 100:g}%"


def format_count(n: int) -> str:
    """Human form of a parameter count: 464154 -> '464.2K', 5288548 -> '5.29M'."""
    if n >= 1_000_000:
        return f"{n / 1e6:.3g}M"
    if n >= 1_000:
        return f"{n / 1e3:.4g}K"
    return str(n)


def parse_count(text: str) -> float:
    """A positive count or rate: ``20000``, ``20K``, ``5.3M``, ``1.5G``, ``850.5``.

    >>> parse_count("5.3M")
    5300000.0
    """
    m = _ABS.match(str(text))
    if not m:
        raise ValueError(f"expected a positive number such as 20000, 20K, 5.3M or 1.5G, but got {text!r}")
    value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if value <= 0:
        raise ValueError(f"expected a positive number, but got {text!r}")
    return value


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|µs)\s*$")
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


def parse_duration(text: str) -> float:
    """A positive duration in seconds, its unit given: ``5ms``, ``0.2s``, ``300us``.

    >>> parse_duration("5ms")
    0.005
    """
    m = _DURATION.match(str(text))
    value = float(m.group(1)) * _SECONDS[m.group(2)] if m else 0.0
    if not m or not 0 < value < math.inf:
        raise ValueError(f"expected a positive duration with its unit (5ms, 0.2s, 300us), but got {text!r}")
    return value


_BYTES = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(?:([kmg])(i)?)?b?\s*$", re.IGNORECASE)


def parse_bytes(text: str) -> float:
    """A positive size in bytes: ``100000``, ``100KB``/``100K`` (1000 bytes a K), ``1.5MB``, ``2MiB`` (1024**2), ``1GB``.

    >>> parse_bytes("100KB"), parse_bytes("2KiB")
    (100000.0, 2048.0)
    """
    m = _BYTES.match(str(text))
    if not m:
        raise ValueError(f"expected a size such as 100000, 100KB, 1.5MB or 2MiB, but got {text!r}")
    power = " kmg".index(m.group(2).lower()) if m.group(2) else 0
    value = float(m.group(1)) * (1024 if m.group(3) else 1000) ** power
    if value <= 0:
        raise ValueError(f"expected a positive size, but got {text!r}")
    return value


def parse_accuracy(text: str) -> float:
    """An accuracy as a fraction: ``0.8`` or ``80%``.

    >>> parse_accuracy("80%")
    0.8
    """
    t = str(text).strip()
    m = _PCT.match(t)
    try:
        value = float(m.group(1)) / 100.0 if m else float(t)
    except ValueError:
        raise ValueError(f"expected a fraction in [0, 1] (0.8) or a percentage (80%), but got {text!r}") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"expected a fraction in [0, 1] (0.8) or a percentage (80%), but got {text!r}")
    return value
