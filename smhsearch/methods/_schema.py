"""What a method lets a space and the command line set, read off its config class.

A method declares it once, beside its config::

    @dataclass(frozen=True)
    class HashedNets(MethodConfig):
        method = "hashednets"
        axes = ("budget", "scope")                    # the space axes it reads
        space_options = ("hashes", "sign", "per_layer")  # what a space may set per method entry
        presets = {"hashed2": {"hashes": 2}}           # other names, with the options they fix
        hashes: int = field(default=1, metadata={"help": "K, independent hash functions"})

The space schema, ``check``, the trial candidates, the fingerprint, the report's
columns and the CLI's method flags are all derived from these declarations, so a
method added in one file (and registered) works everywhere without a second table.
"""

from __future__ import annotations

from typing import Any, Mapping

from ._base import METHODS, MethodEntry
from ._config import AXES, PRECISION_AXES, MethodConfig, OptionInfo, options_of
from .._errors import ConfigError
from ._precision import check_precision, entropy_applies, parse_bits, quant_applies

__all__ = ["AXES", "OptionInfo", "applies_to", "budget_value", "build_config", "coerce", "config_of", "dense_config",
           "entropy_applies", "fixed_precision", "method_names", "options_of", "quant_applies", "resolve", "space_options",
           "unknown_method"]

def space_options(config_cls: type[MethodConfig]) -> dict[str, OptionInfo]:
    """The options a space may set for a method entry (its declared ``space_options``)."""
    every = options_of(config_cls)
    return {k: every[k] for k in config_cls.space_options}


def method_names() -> list[str]:
    """Every name a space or ``--method`` accepts: the registry names (``dense`` among them) and their presets."""
    names = []
    for name in METHODS.names():
        names.append(name)
        names.extend(METHODS.get(name).config_cls.presets)
    return names


def resolve(name: str) -> tuple[MethodEntry, dict[str, Any]]:
    """The registry entry a method name means, and the options its preset fixes (``{}`` for a plain name)."""
    if name in METHODS:
        return METHODS.get(name), {}
    for registered in METHODS.names():
        entry = METHODS.get(registered)
        if name in entry.config_cls.presets:
            return entry, dict(entry.config_cls.presets[name])
    raise ValueError(unknown_method(name))


def config_of(name: str) -> tuple[type[MethodConfig], dict[str, Any]]:
    """The config class a method name builds (its ``axes`` are the space axes it reads) and the options its preset
    fixes (``{}`` for a plain name)."""
    entry, preset = resolve(name)
    return entry.config_cls, preset


def fixed_precision(name: str) -> dict[str, Any]:
    """The precision fields (bits, quant, entropy) a method name fixes: a preset's (``binaryconnect``,
    ``deep_compression``), ``{}`` for a plain name. A space crosses such a method with none of those axes."""
    out = {k: v for k, v in config_of(name)[1].items() if k in PRECISION_AXES}
    if "bits" in out:
        out["bits"] = parse_bits(out["bits"])
    return out


def unknown_method(name: str) -> str:
    import difflib

    names = method_names()
    near = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
    return f"unknown method {name!r}{'; nearest: ' + ', '.join(near) if near else ''}; allowed: {', '.join(names)}"


def applies_to(option: str) -> list[str]:
    """The methods that have a field named ``option`` (for 'does not apply' messages)."""
    return [n for n in METHODS.names() if option in options_of(METHODS.get(n).config_cls)]


def build_config(name: str, axes: Mapping[str, Any], options: Mapping[str, Any], seed: int | None = None) -> MethodConfig:
    """The config a method name, axis values and options describe.

    Axis values the method does not read are dropped (a space's ``scale`` axis means
    nothing to HashedNets); an option it does not have, or one its preset fixes
    otherwise, is a ValueError naming it. ``seed`` is set where the config has one.
    """
    entry, preset = resolve(name)
    cls = entry.config_cls
    fields = options_of(cls)
    for k, v in options.items():
        if k not in fields:
            raise ConfigError(k, f"{k} applies to method(s) {', '.join(applies_to(k)) or 'none'} only", v,
                              got=f"{k} for method {name!r}")
        if k in preset and preset[k] != v:
            raise ConfigError(k, f"method {name!r} fixes {k}={preset[k]!r} (use {cls.method!r} to set it)", v)
    kwargs: dict[str, Any] = {k: v for k, v in axes.items() if (k in cls.axes or k in PRECISION_AXES) and v is not None}
    kwargs.update(preset)
    kwargs.update(options)
    if seed is not None and "seed" in fields:
        kwargs["seed"] = seed
    return cls(**kwargs)  # the config checks itself, its precision fields included


def dense_config(bits: Any = None, quant: Any = None, entropy: Any = None, name: str = "dense") -> MethodConfig:
    """The dense model (or a preset of it, ``name``) at ``bits``, a :class:`~smhsearch.methods.Dense` (``Dense()`` at
    32 bits); a bad set, or a value its preset fixes otherwise, is a ValueError naming the field."""
    from ._dense import Dense

    given = {"bits": bits, "quant": quant, "entropy": entropy}
    for k, v in resolve(name)[1].items():
        if given[k] is not None and (parse_bits(given[k]) if k == "bits" else given[k]) != (parse_bits(v) if k == "bits" else v):
            raise ConfigError(k, f"method {name!r} fixes {k}={v!r} (use 'dense' to set it)", given[k])
        given[k] = v
    bits, quant, entropy = parse_bits(32 if given["bits"] is None else given["bits"]), given["quant"], bool(given["entropy"])
    check_precision(bits, quant, entropy)
    return Dense(bits=bits, quant=quant, entropy=entropy)


def coerce(info: OptionInfo, text: str) -> Any:
    """A command-line string as the option's type (``"2"`` -> 2 for an int, budgets as given)."""
    from pydantic import TypeAdapter, ValidationError

    if info.name == "budget":
        return budget_value(text)
    if info.name == "bits":
        return parse_bits(text)
    try:
        return TypeAdapter(info.annotation).validate_python(text, strict=False)
    except ValidationError as e:
        rule = f"{info.name} must be one of {', '.join(map(str, info.choices))}" if info.choices else \
            f"{info.name} must be a valid value ({e.errors()[0]['msg']})"
        raise ConfigError(info.name, rule, text) from None


def budget_value(text: str) -> int | float | str:
    """A budget from text: digits are an absolute count, a number below 1 a fraction, anything else as given ("46K", "25%")."""
    t = str(text).strip()
    if t.isdigit():
        return int(t)
    try:
        f = float(t)
    except ValueError:
        return t
    return f if f < 1 else int(f) if f.is_integer() else t
