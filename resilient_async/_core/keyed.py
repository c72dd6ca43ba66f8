"""The bounded registry behind the per-key guards (`Bulkhead.per_key`, `RateLimiter.per_key`).

A per-key guard keyed by something a client chooses (an IP, a tenant id) is an attack
surface: every lookup and every eviction must cost O(1) however many keys pass through, and
memory must stay bounded. `KeyedRegistry` keeps at most `max_keys` guards in least recently
used order and evicts the oldest when a new key would exceed that, busy or not.

Eviction never splits a key in two: the registry also remembers every guard it built through
a weak reference, so a guard that someone still holds (a call running in it, a waiter, a
caller between its lookup and its entry) is handed back to the next caller of its key instead
of a fresh one, and one key never has two live guards. Only a guard that nobody holds any
more is really forgotten; its key's next caller gets a new guard, in its initial state.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["KeyedRegistry"]

K = TypeVar("K", bound=Hashable)
G = TypeVar("G")


class KeyedRegistry(Generic[K, G]):
    """One guard per key, created on first use; at most `max_keys` kept.

    Lookups keep the keys in least recently used order. A guard that `is_idle(guard, now)`
    calls droppable (no caller holds or waits for it, a bucket is full again) and that was not
    looked up for `idle_ttl` seconds is dropped, a few at each lookup. When a new key would
    make more than `max_keys`, the least recently used key is evicted at once, busy or not.
    A dropped or evicted guard that is still referenced (in use) is found again by the next
    lookup of its key. Every lookup costs O(1).

    Args:
        factory: Builds the guard for a new key (guards must support weak references).
        is_idle: Tells whether a guard may be dropped at `now` once stale.
        max_keys: How many guards to keep at most, >= 1.
        idle_ttl: Seconds after its last lookup at which an idle guard is dropped, >= 0.
    """

    __slots__ = ("_alive", "_entries", "_factory", "_is_idle", "idle_ttl", "max_keys")

    # Stale entries examined per lookup: bounds the cost of one lookup, yet drains any
    # backlog because every lookup adds at most one entry.
    _SWEEP = 4

    def __init__(
        self,
        factory: Callable[[K], G],
        is_idle: Callable[[G, float], bool],
        *,
        max_keys: int,
        idle_ttl: float,
    ) -> None:
        self._factory = factory
        self._is_idle = is_idle
        self.max_keys = max_keys
        self.idle_ttl = idle_ttl
        # key -> (guard, time of the last lookup), least recently looked up first.
        self._entries: OrderedDict[K, tuple[G, float]] = OrderedDict()
        # Every guard still referenced anywhere, kept or not: its key must never get a second.
        self._alive: weakref.WeakValueDictionary[K, G] = weakref.WeakValueDictionary()

    def get(self, key: K, now: float) -> G:
        """Return the guard for `key` (building it if needed) and forget stale idle ones."""
        entries = self._entries
        found = entries.get(key)
        if found is not None:
            guard = found[0]
            entries[key] = (guard, now)
            entries.move_to_end(key)
            self._sweep(now)
            return guard
        guard_or_none = self._alive.get(key)
        if guard_or_none is None:
            guard = self._factory(key)
            self._alive[key] = guard
        else:
            guard = guard_or_none
        entries[key] = (guard, now)
        self._sweep(now)
        if len(entries) > self.max_keys:
            # The least recently used key; never the one just added (max_keys >= 1).
            entries.popitem(last=False)
        return guard

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> Iterator[K]:
        """Iterate over the keys held now, least recently used first."""
        return iter(list(self._entries))

    def _sweep(self, now: float) -> None:
        """Drop idle guards not looked up for `idle_ttl`, examining a few of the oldest."""
        entries = self._entries
        for _ in range(self._SWEEP):
            if not entries:
                return
            key, (guard, seen) = next(iter(entries.items()))
            if now - seen < self.idle_ttl:
                return
            if self._is_idle(guard, now):
                del entries[key]
            else:
                # Still busy: look again a full `idle_ttl` later.
                entries[key] = (guard, now)
                entries.move_to_end(key)
