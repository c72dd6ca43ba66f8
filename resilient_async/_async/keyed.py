"""The shared front of the per-key guards (`Bulkhead.per_key`, `RateLimiter.per_key`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from .._core.checks import check_int, check_seconds
from .._core.keyed import KeyedRegistry
from . import _backend

__all__ = ["Keyed"]

K = TypeVar("K", bound=Hashable)
G = TypeVar("G")


class Keyed(Generic[K, G]):
    """One guard per key, built on first use by `build`; idle ones are forgotten.

    Subclasses validate their settings and pass a `build(key)` and an `is_idle(guard, now)`.
    """

    __slots__ = ("_lock", "_max_keys", "_name", "_registry")

    def __init__(
        self,
        build: Callable[[K], G],
        is_idle: Callable[[G, float], bool],
        *,
        name: str | None,
        max_keys: int,
        idle_ttl: float,
    ) -> None:
        self._name = name
        self._max_keys = check_int(max_keys, "max_keys", 1)
        self._registry: KeyedRegistry[K, G] = KeyedRegistry(
            build, is_idle, max_keys=max_keys, idle_ttl=check_seconds(idle_ttl, "idle_ttl")
        )
        self._lock = _backend.Lock()

    @property
    def name(self) -> str | None:
        """The name shared by every key's guard (each reports it with its key), or None."""
        return self._name

    @property
    def max_keys(self) -> int:
        """How many keys keep a guard at most; beyond it the least recently used is evicted."""
        return self._max_keys

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, keys={len(self._registry)})"

    def __getitem__(self, key: K) -> G:
        """Return the guard of `key`, building it on first use."""
        now = _backend.current_time()
        with self._lock:
            return self._registry.get(key, now)

    def __len__(self) -> int:
        """How many keys have a guard now."""
        return len(self._registry)

    def __contains__(self, key: object) -> bool:
        return key in self._registry
