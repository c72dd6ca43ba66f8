"""Per-key guards: the cost of a lookup when the registry is full, at 1k, 10k and 100k keys.

A per-IP or per-tenant guard is keyed by something clients choose, so a flood of new keys
must not make each lookup slower: every case here looks up a key never seen before in a
registry already holding `max_keys` keys (each lookup evicts one), or a key it holds. The
cost should stay flat as the size grows; the baseline is a plain dict lookup.
"""

from __future__ import annotations

import itertools

from resilient_async._async.bulkhead import Bulkhead
from resilient_async._async.ratelimit import RateLimiter

from .harness import Group, SyncOp

SIZES = (1_000, 10_000, 100_000)


def _dict_lookup() -> SyncOp:
    table = {index: index for index in range(1_000)}
    return lambda: table.get(500)


def _new_keys(build: str, size: int) -> SyncOp:
    def factory() -> SyncOp:
        if build == "bulkhead":
            keyed = Bulkhead.per_key(4, max_keys=size)
        else:
            # A bucket that refills slowly: the old registry never evicted such keys.
            keyed = RateLimiter.per_key(1, per=3600, max_keys=size)  # type: ignore[assignment]
        for index in range(size):
            keyed[-index - 1]
        counter = itertools.count()
        return lambda: keyed[next(counter)]

    return factory  # type: ignore[return-value]


def _known_key(size: int) -> SyncOp:
    def factory() -> SyncOp:
        keyed = Bulkhead.per_key(4, max_keys=size)
        for index in range(size):
            keyed[index]
        return lambda: keyed[size - 1]

    return factory  # type: ignore[return-value]


keyed = Group(
    "per-key guards: one lookup in a full registry",
    baseline="dict.get",
    note="flat across sizes = O(1) per lookup and per eviction",
)
keyed.add("dict.get", _dict_lookup, is_async=False)
for _size in SIZES:
    keyed.add(
        f"Bulkhead.per_key new key, {_size} keys", _new_keys("bulkhead", _size), is_async=False
    )
    keyed.add(
        f"RateLimiter.per_key new key, {_size} keys", _new_keys("limiter", _size), is_async=False
    )
    keyed.add(f"Bulkhead.per_key known key, {_size} keys", _known_key(_size), is_async=False)

GROUPS = [keyed]
