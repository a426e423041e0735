"""Name -> class registries, the one extension mechanism of fedsimenv.

Adding a channel model, pruning method, agent, reward or trainer is one class plus one
``@REGISTRY.register("name")`` line; scenario YAML then selects it by that name. Lookups of an
unknown name raise a ``ValueError`` that lists the names that do exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to registered objects (usually classes).

    Args:
        kind: What the registry holds, used in error messages ("channel model", "agent", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; a name can be taken only once."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} name {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return what was registered under it (tests' toy plug-ins).

        Raises:
            ValueError: ``name`` is not registered; the message lists the allowed names.
        """
        entry = self.get(name)
        del self._entries[name]
        return entry

    @contextmanager
    def registered(self, name: str, obj: T) -> Iterator[T]:
        """Register ``obj`` as ``name`` for the duration of a ``with`` block, then remove it."""
        self.register(name)(obj)
        try:
            yield obj
        finally:
            self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            ValueError: ``name`` is not registered; the message lists the allowed names.
        """
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; allowed values: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
