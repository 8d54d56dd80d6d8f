"""A name -> object registry shared by models, methods and datasets.

Registering a name twice raises (as torchvision and fvcore do): a silent overwrite
would let two plugins fight over a name without anyone noticing.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

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

    def __init__(self, kind: str, resolver: Callable[[str], T | None] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._resolver = resolver
        self._resolved: dict[str, T] = {}
        """Names the resolver answered (``timm/resnet10t``): kept apart, so :meth:`names` lists what was registered."""

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
        """The item of ``name``; a name not registered is asked of the resolver (which may raise
        :class:`UnknownNameError` with its own message), then refused listing the nearest names."""
        if name in self._items:
            return self._items[name]
        if name in self._resolved:
            return self._resolved[name]
        item = self._resolver(name) if self._resolver is not None and isinstance(name, str) else None
        if item is None:
            raise UnknownNameError(self.unknown_message(name))
        self._resolved[name] = item
        return item

    def unknown_message(self, name: str) -> str:
        near = difflib.get_close_matches(str(name), self._items, n=5, cutoff=0.5)
        hint = f"; nearest: {', '.join(near)}" if near else ""
        return f"unknown {self.kind} {name!r}{hint}; known: {', '.join(sorted(self._items))}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name in self._items or name in self._resolved:
            return True
        if self._resolver is None or not isinstance(name, str):
            return False
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
