"""Cost per operation as load grows, and memory per idle key and per queued waiter.

Each scenario builds a load of `n` (queued bulkhead waiters, queued rate-limiter waiters,
per-key entries, tasks inside a deadline) and then times the same operation against it in
several rounds; the target is a cost per operation within 1.5x of the smallest load's (O(1)
or O(log n) per operation, never O(n)). Loads are built one after the other in one process;
rounds are paired within a load, not across loads (rebuilding 100,000 waiters per round would
cost more than the rounds). Times are the thread's CPU time, as in the harness.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc
import anyio.lowlevel

import resilient_async as ra
from resilient_async._core.bucket import TokenBucket
from resilient_async._core.bulkhead import BulkheadLedger, CoDelLedger

from .harness import run_on

SIZES = (10, 1_000, 10_000, 100_000)
QUICK_SIZES = (10, 100)
MEMORY_N = 2_000
QUICK_MEMORY_N = 200


@dataclass
class Point:
    scenario: str
    backend: str
    n: int
    ns_per_op: float
    low: float
    high: float


@dataclass
class Memory:
    what: str
    backend: str
    bytes_each: float
    n: int


async def _work() -> int:
    return 1


def _rounds(stamps: list[int], ops: int) -> list[float]:
    return [(b - a) / ops for a, b in itertools.pairwise(stamps)]


async def _timed(op: Callable[[], Awaitable[object]], ops: int, rounds: int) -> list[float]:
    """Run `op` `ops` times per round; the first round warms up and is dropped."""
    stamps = []
    for _ in range(rounds + 1):
        stamps.append(time.thread_time_ns())
        for _ in range(ops):
            await op()
    stamps.append(time.thread_time_ns())
    return _rounds(stamps[1:], ops)


async def _queue_up(
    tg: anyio.abc.TaskGroup,
    waiter: Callable[[], Awaitable[None]],
    n: int,
    started: deque[anyio.CancelScope] | list[anyio.CancelScope],
    queued: Callable[[], int],
) -> None:
    """Start `n` waiters in `tg`; return once each has started and `queued()` counts `n`."""
    for _ in range(n):
        tg.start_soon(waiter)
    while len(started) < n or queued() < n:
        await anyio.sleep(0)


async def _park_forever(ready: list[int]) -> None:
    ready.append(1)
    await anyio.sleep_forever()


# --- scenarios: each returns the ns/op of every round ---------------------------------------


async def bulkhead_waiters(n: int, ops: int, rounds: int) -> list[float]:
    """Slot hand-offs with `n` callers queued for a one-slot bulkhead.

    Every worker loops `async with bulkhead` around one checkpoint; leaving hands the slot
    to the head of the queue and the leaver queues again at the tail, so the queue stays `n`
    deep.
    """
    bulkhead = ra.Bulkhead(1, max_queue=n + 1)
    stamps: list[int] = []
    count = 0
    marks = {ops * (k + 1) for k in range(rounds + 1)}
    done = anyio.Event()

    async def worker() -> None:
        nonlocal count
        while not done.is_set():
            async with bulkhead:
                # Holding the slot across a checkpoint lets the others queue behind it.
                await anyio.lowlevel.checkpoint()
                count += 1
                if count in marks:
                    stamps.append(time.thread_time_ns())
                    if len(stamps) == len(marks):
                        done.set()

    # Once done, each worker leaves the next time it gets the slot: the queue drains in
    # order, where cancelling the waiters would measure the teardown instead.
    async with anyio.create_task_group() as tg:
        for _ in range(n + 1):
            tg.start_soon(worker)
    return _rounds(stamps, ops)


async def ratelimit_waiters(n: int, ops: int, rounds: int) -> list[float]:
    """A caller joins the queue of a drained limiter behind `n` waiters, then gives up.

    The limiter refills one token an hour, so the `n` waiters hold reservations far ahead;
    each operation reserves at the tail and is cancelled at once (its wait cancelled, its
    reservation given back).
    """
    limiter = ra.RateLimiter(1, per=3600, burst=1, max_wait=None)
    await limiter.acquire()
    scopes: list[anyio.CancelScope] = []

    async def waiter() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await limiter.acquire()

    async def join_and_leave() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await limiter.acquire()

    async with anyio.create_task_group() as tg:
        await _queue_up(tg, waiter, n, scopes, lambda: limiter.queued)
        result = await _timed(join_and_leave, ops, rounds)
        assert limiter.queued == n, "a cancelled caller left its reservation behind"
        # The last first: a waiter that gives up moves every one behind it.
        for scope in reversed(scopes):
            scope.cancel()
            await anyio.lowlevel.checkpoint()
    return result


async def ratelimit_head_gives_up(n: int, ops: int, rounds: int) -> list[float]:
    """The oldest of `n` waiters of a drained limiter gives up, and a newcomer joins the tail.

    Every waiter behind the one that gave up is ready earlier. A driver that times every
    waiter must move and wake each of them, O(n) per operation; one that times only its
    head waiter moves one (see `bucket_head_withdraws`).
    """
    limiter = ra.RateLimiter(1, per=3600, burst=1, max_wait=None)
    await limiter.acquire()
    # In the order of the queue: a waiter reserves before its first checkpoint.
    scopes: deque[anyio.CancelScope] = deque()

    async def waiter() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await limiter.acquire()

    async with anyio.create_task_group() as tg:

        async def head_leaves_one_joins() -> None:
            scopes.popleft().cancel()
            tg.start_soon(waiter)
            while len(scopes) < n or limiter.queued != n:
                await anyio.sleep(0)

        await _queue_up(tg, waiter, n, scopes, lambda: limiter.queued)
        result = await _timed(head_leaves_one_joins, ops, rounds)
        for scope in reversed(scopes):  # the newest first: nobody behind moves
            scope.cancel()
            await anyio.lowlevel.checkpoint()
    return result


async def bucket_head_withdraws(n: int, ops: int, rounds: int) -> list[float]:
    """The token bucket alone, used as a driver that times only its head waiter uses it.

    `n` reservations wait; the head one is withdrawn (the one behind it becomes the head, its
    ready time moved up) and a newcomer reserves at the tail, so `n` stay queued.
    """
    bucket = TokenBucket(1 / 3600, 1)
    assert bucket.try_take(1, 0.0)
    for _ in range(n):
        bucket.reserve(1, 0.0)

    async def head_leaves_one_joins() -> None:
        head = bucket.head
        assert head is not None
        bucket.withdraw(head, 0.0)
        bucket.reserve(1, 0.0)

    result = await _timed(head_leaves_one_joins, ops, rounds)
    assert bucket.waiting == n
    return result


async def bulkhead_give_up(n: int, ops: int, rounds: int) -> list[float]:
    """A caller queues for a full bulkhead behind `n` waiters, then gives up."""
    bulkhead = ra.Bulkhead(1, max_queue=n + 1)
    release = anyio.Event()
    scopes: list[anyio.CancelScope] = []

    async def holder() -> None:
        async with bulkhead:
            await release.wait()

    async def waiter() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            async with bulkhead:
                pass

    async def join_and_leave() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            async with bulkhead:
                pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        # Tasks may start in any order (trio shuffles them): the holder takes the slot first.
        while bulkhead.in_use < 1:
            await anyio.sleep(0)
        await _queue_up(tg, waiter, n, scopes, lambda: bulkhead.queued)
        result = await _timed(join_and_leave, ops, rounds)
        assert bulkhead.queued == n, "a cancelled caller stayed queued"
        release.set()  # the queue drains in order
    return result


async def keyed_bulkhead_entries(n: int, ops: int, rounds: int) -> list[float]:
    """One call through `keyed[key]` with `n` keys held, cycling over the keys."""
    keyed = ra.Bulkhead.per_key(4, max_keys=n, idle_ttl=3600)
    keys = [f"tenant-{i}" for i in range(n)]
    for key in keys:
        await keyed[key].call(_work)
    i = 0

    async def op() -> int:
        nonlocal i
        i = (i + 1) % n
        return await keyed[keys[i]].call(_work)

    result = await _timed(op, ops, rounds)
    assert len(keyed) == n
    return result


async def keyed_limiter_entries(n: int, ops: int, rounds: int) -> list[float]:
    """One `keyed[key].try_acquire()` with `n` keys held, cycling over the keys."""
    keyed = ra.RateLimiter.per_key(1e9, burst=1e6, max_keys=n, idle_ttl=3600)
    keys = [f"host-{i}" for i in range(n)]
    for key in keys:
        keyed[key].try_acquire()
    i = 0

    async def op() -> bool:
        nonlocal i
        i = (i + 1) % n
        return keyed[keys[i]].try_acquire()

    result = await _timed(op, ops, rounds)
    assert len(keyed) == n
    return result


async def concurrent_deadlines(n: int, ops: int, rounds: int) -> list[float]:
    """`with ra.deadline(10): await f()` while `n` other tasks sit inside a deadline."""
    ready: list[int] = []

    async def parked() -> None:
        with ra.deadline(3600):
            await _park_forever(ready)

    async def op() -> int:
        with ra.deadline(10):
            return await _work()

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(parked)
        while len(ready) < n:
            await anyio.sleep(0)
        result = await _timed(op, ops, rounds)
        tg.cancel_scope.cancel()
    return result


@dataclass
class Scenario:
    run: Callable[[int, int, int], Awaitable[list[float]]]
    largest: int = SIZES[-1]  # loads above this are left out (see `limit`)
    ops_scale: float = 1.0  # a share of the default operations per round, for slow ones
    limit: str = ""  # why the largest loads are left out
    backends: tuple[str, ...] = ("asyncio", "trio")


SCENARIOS: dict[str, Scenario] = {
    "bulkhead: queued waiters (slot hand-off)": Scenario(bulkhead_waiters),
    "rate limiter: queued waiters (join, give up)": Scenario(ratelimit_waiters, ops_scale=0.1),
    "rate limiter: queued waiters (the head gives up, one joins)": Scenario(
        ratelimit_head_gives_up, ops_scale=0.1
    ),
    "token bucket alone: queued reservations (the head withdraws, one joins)": Scenario(
        bucket_head_withdraws, backends=("asyncio",)
    ),
    "bulkhead: queued waiters (join, give up)": Scenario(bulkhead_give_up, ops_scale=0.1),
    "per-key entries: Bulkhead.per_key call": Scenario(keyed_bulkhead_entries),
    "per-key entries: RateLimiter.per_key try_acquire": Scenario(keyed_limiter_entries),
    "concurrent deadlines: with ra.deadline": Scenario(concurrent_deadlines),
}


def run_scaling(
    backends: list[str], *, quick: bool = False, only: str | None = None
) -> list[Point]:
    """Every scenario at every load on every backend."""
    ops, rounds = (100, 2) if quick else (20_000, 5)
    points = []
    for name, scenario in SCENARIOS.items():
        if only and only.lower() not in name.lower():
            continue
        sizes = QUICK_SIZES if quick else [n for n in SIZES if n <= scenario.largest]
        if not quick and scenario.largest not in sizes:
            sizes.append(scenario.largest)
        todo = max(10, int(ops * scenario.ops_scale)) if not quick else ops
        for backend in backends:
            if backend not in scenario.backends:
                continue
            for n in sizes:
                values: list[float] = run_on(backend, scenario.run, n, todo, rounds)  # type: ignore[assignment]
                if n >= 10_000:
                    gc.collect()  # the next load starts without this one's garbage
                points.append(
                    Point(name, backend, n, statistics.median(values), min(values), max(values))
                )
    return points


# --- memory ------------------------------------------------------------------------------


async def _traced(build: Callable[[], Awaitable[object]]) -> int:
    """Bytes still allocated after `build()` returns (its result kept alive meanwhile)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = await build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        del kept
    finally:
        tracemalloc.stop()
    return after - before


async def _memory_idle_keys(n: int) -> list[tuple[str, float]]:
    async def bulkheads() -> object:
        keyed = ra.Bulkhead.per_key(4, max_keys=n, idle_ttl=3600)
        keys = [f"tenant-{i}" for i in range(n)]
        for key in keys:
            await keyed[key].call(_work)
        return keyed, keys

    async def limiters() -> object:
        keyed = ra.RateLimiter.per_key(100, max_keys=n, idle_ttl=3600)
        keys = [f"tenant-{i}" for i in range(n)]
        for key in keys:
            keyed[key].try_acquire()
        return keyed, keys

    async def key_strings() -> object:
        return [f"tenant-{i}" for i in range(n)]

    floor = await _traced(key_strings)
    return [
        ("idle key, Bulkhead.per_key", (await _traced(bulkheads) - floor) / n),
        ("idle key, RateLimiter.per_key", (await _traced(limiters) - floor) / n),
    ]


async def _parked_tasks(n: int, enter: Callable[[], Awaitable[object]] | None) -> int:
    """Bytes held by `n` tasks parked in `enter()` (or on an Event, when None)."""
    event = anyio.Event()
    ready: list[int] = []
    measured = 0

    async def task() -> None:
        ready.append(1)
        await (enter() if enter is not None else event.wait())

    async with anyio.create_task_group() as tg:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(n):
                tg.start_soon(task)
            while len(ready) < n:
                await anyio.sleep(0)
            for _ in range(3):
                await anyio.sleep(0)
            gc.collect()
            measured = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        tg.cancel_scope.cancel()
    return measured


async def _memory_waiters(n: int) -> list[tuple[str, float]]:
    bulkhead = ra.Bulkhead(1, max_queue=n)
    holder = anyio.Event()

    async def hold() -> None:
        async with bulkhead:
            await holder.wait()

    limiter = ra.RateLimiter(1, per=3600, burst=1, max_wait=None)
    await limiter.acquire()
    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        while bulkhead.in_use < 1:
            await anyio.sleep(0)
        parked = await _parked_tasks(n, None)

        async def queue_for_slot() -> None:
            async with bulkhead:
                pass

        queued = await _parked_tasks(n, queue_for_slot)
        limited = await _parked_tasks(n, limiter.acquire)
        holder.set()
    return [
        ("parked task (the floor: a task waiting on an Event)", parked / n),
        ("queued bulkhead waiter, its task included", queued / n),
        ("queued rate-limiter waiter, its task included", limited / n),
    ]


class _Waiter:
    __slots__ = ()


async def _memory_queues(n: int) -> list[tuple[str, float]]:
    """The queue's own share of a waiter: its entry in the ledger or the bucket."""
    waiters = [_Waiter() for _ in range(n)]

    async def fifo() -> object:
        ledger: BulkheadLedger[_Waiter] = BulkheadLedger(1, n)
        for waiter in waiters:
            ledger.enqueue(waiter)
        return ledger

    async def codel() -> object:
        ledger = CoDelLedger(1, n, target=0.005, interval=0.1, dispatch=_Waiter())
        for i, waiter in enumerate(waiters):
            ledger.enqueue_at(waiter, float(i))
        return ledger

    async def bucket() -> object:
        bucket = TokenBucket(1.0, 1.0)
        for _ in range(n):
            bucket.reserve(1, 0.0)
        return bucket

    return [
        ("bulkhead ledger entry of a queued waiter (FIFO)", await _traced(fifo) / n),
        ("bulkhead ledger entry of a queued waiter (CoDel)", await _traced(codel) / n),
        ("token-bucket reservation of a queued waiter", await _traced(bucket) / n),
    ]


async def _memory(n: int) -> list[tuple[str, float]]:
    return [
        *(await _memory_idle_keys(n)),
        *(await _memory_waiters(n)),
        *(await _memory_queues(n)),
    ]


def run_memory(backends: list[str], *, quick: bool = False) -> list[Memory]:
    """Bytes per idle key and per queued waiter, traced with tracemalloc."""
    n = QUICK_MEMORY_N if quick else MEMORY_N
    out = []
    for backend in backends:
        rows: list[tuple[str, float]] = run_on(backend, _memory, n)  # type: ignore[assignment]
        out.extend(Memory(what, backend, each, n) for what, each in rows)
    return out
