"""MemoryStore: shared state by kind and name, configuration checks, threads."""

from __future__ import annotations

import threading

import pytest

from resilient_async.stores import MemoryStore


def test_same_kind_and_name_share_one_state() -> None:
    store = MemoryStore()
    first = store.shared("breaker", "db", ("cfg",), list)
    second = store.shared("breaker", "db", ("cfg",), list)
    other = store.shared("limiter", "db", ("cfg",), list)
    assert first is second
    assert first is not other
    assert len(store) == 2


def test_a_different_configuration_is_rejected() -> None:
    store = MemoryStore()
    store.shared("breaker", "db", (1,), list)
    with pytest.raises(ValueError, match="another configuration"):
        store.shared("breaker", "db", (2,), list)


def test_concurrent_first_use_creates_one_state() -> None:
    store = MemoryStore()
    made: list[object] = []
    seen: list[object] = []
    barrier = threading.Barrier(8)

    def factory() -> object:
        state = object()
        made.append(state)
        return state

    def worker() -> None:
        barrier.wait()
        seen.append(store.shared("limiter", "api", (), factory))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1
    assert all(s is made[0] for s in seen)
