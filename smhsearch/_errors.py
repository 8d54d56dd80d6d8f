"""The one error a config raises when a value breaks one of its rules.

A :class:`ConfigError` carries the field it is about, the rule and the value, and builds its
message from them ("0 <= momentum < 1 must hold, but got (momentum=1.5)"). Whoever shows it to
a user names the field in the user's own terms from ``field`` alone: the command line as its flag
(``--momentum``), a space file as its key (``train.momentum``). Nothing reads the message back.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config field's value that breaks a rule of its config.

    ``field`` is the config's field name; a field of a nested config is dotted
    (``distill.alpha`` in a training config). ``related`` holds the other fields the rule reads,
    shown beside the value. ``got`` replaces the shown value where the rule needs more than the
    value itself (a budget and what it resolves to).

    >>> e = ConfigError("warmup_epochs", "0 <= warmup_epochs < epochs must hold", 5, epochs=3)
    >>> str(e), e.field
    ('0 <= warmup_epochs < epochs must hold, but got (warmup_epochs=5, epochs=3)', 'warmup_epochs')
    >>> str(ConfigError("scale", "scale must be one of 'fixed', 'learnable'", "magic"))
    "scale must be one of 'fixed', 'learnable', but got 'magic'"
    """

    def __init__(self, field: str, rule: str, value: Any, *, got: str | None = None, **related: Any) -> None:
        self.field, self.rule, self.value, self.got, self.related = field, rule, value, got, related
        if got is None:
            named = {field.rsplit(".", 1)[-1]: value, **related}
            named_form = related or rule.endswith("must hold")  # optuna's "low <= high must hold, but got (low=3, high=1)"
            got = f"({', '.join(f'{k}={v!r}' for k, v in named.items())})" if named_form else repr(value)
        super().__init__(f"{rule}, but got {got}")

    def within(self, prefix: str) -> "ConfigError":
        """The same error seen from the config that holds this one at field ``prefix`` (``distill``)."""
        return ConfigError(f"{prefix}.{self.field}", self.rule, self.value, got=self.got, **self.related)

    def __reduce__(self):  # an error that crosses a process (a Ray worker) arrives whole, not as its message
        return _rebuild, (self.field, self.rule, self.value, self.got, self.related)


def _rebuild(field: str, rule: str, value: Any, got: str | None, related: dict[str, Any]) -> ConfigError:
    return ConfigError(field, rule, value, got=got, **related)
