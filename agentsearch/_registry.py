"""Registries of parts found by name (node kinds, topologies): one place resolves a name, and a
package of parts imports its modules itself, so adding a part is adding its module.

A part is a stateless instance of a subclass, registered when the class is defined; ``order``
fixes its place among the choices a search offers (which samplers' seeds depend on), ``options``
names the spec fields it owns (on any other part they keep their defaults).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar


class Part(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def order(self) -> int: ...

    @property
    def options(self) -> tuple[str, ...]: ...


P = TypeVar("P", bound=Part)


class Registry(Generic[P]):
    """Parts by name. Registration happens at import, under the import lock; reads need no lock."""

    def __init__(self, noun: str) -> None:
        self.noun = noun
        self._parts: dict[str, P] = {}

    def add(self, part: P) -> None:
        if part.name in self._parts:
            raise ValueError(f"{self.noun} {part.name!r} is registered twice")
        self._parts[part.name] = part

    def remove(self, name: str) -> None:
        """Forget a part (a test's own, when the test ends)."""
        del self._parts[name]

    def get(self, name: str) -> P:
        try:
            return self._parts[name]
        except KeyError:
            raise ValueError(f"unknown {self.noun} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._parts, key=lambda name: self._parts[name].order))

    def owners(self, option: str) -> tuple[str, ...]:
        """The parts that own spec field ``option``."""
        return tuple(name for name in self.names() if option in self._parts[name].options)

    def all_options(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(option for name in self.names() for option in self._parts[name].options))


def import_parts(package: str, path: Iterable[str]) -> None:
    """Import every public module of ``package`` (each registers its parts)."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
