"""A name -> object registry shared by models, methods and datasets.

Registering a name twice raises (as torchvision and fvcore do): a silent overwrite
would let two plugins fight over a name without anyone noticing.
"""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that is not registered; the message lists the nearest known names."""


class Registry(Generic[T]):
    """Names of one kind of thing ("model", "method", ...) mapped to objects.

    >>> r = Registry[int]("number")
    >>> r.add("one", 1)
    >>> r.get("one")
    1
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered; names must be unique")
        self._items[name] = item

    def register(self, name: str):
        """Decorator form of :meth:`add`; returns the decorated object unchanged."""

        def deco(item: T) -> T:
            self.add(name, item)
            return item

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        near = difflib.get_close_matches(str(name), self._items, n=5, cutoff=0.5)
        hint = f"; nearest: {', '.join(near)}" if near else ""
        return f"unknown {self.kind} {name!r}{hint}; known: {', '.join(sorted(self._items))}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
