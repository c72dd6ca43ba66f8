"""Where a deadline reaches and where it does not (issue #13 items 1, 2, 4 and 11).

RELIABILITY.md invariant 8: a scope entered in any task fires no later than its own duration
(an inherited deadline is enforced in that task or not seen at all); shielded code is never
interrupted by it; one policy never mixes times from two clocks.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import trio

import resilient_async as ra
from resilient_async import backoff
from resilient_async import sync as ra_sync

pytestmark = pytest.mark.anyio

# --- item 1: a task that outlives the block whose deadline it inherited --------------------


def _own_scopes() -> dict[str, Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]]:
    async def timeout(body: Callable[[], Awaitable[None]]) -> None:
        await ra.Timeout(0.5).call(body)

    async def retry_timeout(body: Callable[[], Awaitable[None]]) -> None:
        await ra.Retry(attempts=1, timeout=0.5).call(body)

    async def relative(body: Callable[[], Awaitable[None]]) -> None:
        with ra.deadline(0.5):
            await body()

    async def absolute(body: Callable[[], Awaitable[None]]) -> None:
        with ra.deadline_at(anyio.current_time() + 0.5):
            await body()

    return {
        "Timeout": timeout,
        "Retry(timeout)": retry_timeout,
        "deadline": relative,
        "deadline_at": absolute,
    }


@pytest.mark.parametrize("scope", list(_own_scopes()))
async def test_a_task_outliving_the_block_fires_its_own_scope(scope: str) -> None:
    run_in_scope = _own_scopes()[scope]
    outcome: list[object] = []

    async def slow() -> None:
        await anyio.sleep(100)

    async def orphan() -> None:
        await anyio.sleep(2)  # the block that set the deadline has exited by now
        assert ra.remaining() == math.inf  # it no longer applies, so it is not seen
        start = anyio.current_time()
        try:
            await run_in_scope(slow)
        except ra.DeadlineExceeded:
            outcome.append(anyio.current_time() - start)

    async with anyio.create_task_group() as outer:
        with ra.deadline(1):
            outer.start_soon(orphan)
    assert outcome == [pytest.approx(0.5)]


async def test_a_task_started_in_an_outer_group_fires_its_own_longer_scope() -> None:
    # The inherited deadline (10 s) is not enforced in the spawned task: its own scope
    # (15 s) must fire at 15 s at the latest, whether or not the block is still open.
    outcome: list[float] = []

    async def spawned() -> None:
        start = anyio.current_time()
        with pytest.raises(ra.DeadlineExceeded):
            with ra.deadline(15):
                await anyio.sleep(100)
        outcome.append(anyio.current_time() - start)

    async with anyio.create_task_group() as outer:
        with pytest.raises(ra.DeadlineExceeded), ra.deadline(10):
            outer.start_soon(spawned)
            await anyio.sleep(50)
    assert outcome == [pytest.approx(15)]


async def test_a_child_inside_the_block_still_sees_and_obeys_the_deadline() -> None:
    seen: list[float] = []
    start = anyio.current_time()

    async def child() -> None:
        seen.append(ra.remaining())
        with ra.deadline(30):  # longer than the enclosing one: the enclosing one rules
            await anyio.sleep(100)

    with pytest.raises(ra.DeadlineExceeded):
        with ra.deadline(5):
            async with anyio.create_task_group() as group:
                group.start_soon(child)
    assert seen == [pytest.approx(5)]
    assert anyio.current_time() - start == pytest.approx(5)


async def test_retry_in_a_task_outliving_the_block_does_not_stop_for_its_deadline() -> None:
    calls: list[float] = []
    result: list[str] = []

    async def flaky() -> str:
        calls.append(anyio.current_time())
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    retry = ra.Retry(attempts=3, backoff=backoff.constant(1.0))

    async def orphan() -> None:
        await anyio.sleep(2)
        result.append(await retry.call(flaky))

    async with anyio.create_task_group() as outer:
        with ra.deadline(1):
            outer.start_soon(orphan)
    assert result == ["ok"]
    assert len(calls) == 3


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_event_loop_run_inside_a_sync_deadline_enforces_it(backend: str) -> None:
    # Sync code cannot interrupt asyncio.run(); the async scopes inside it must.
    hit: list[str] = []

    async def main() -> None:
        try:
            with ra.deadline(5):
                await anyio.sleep(5)
        except ra.DeadlineExceeded:
            hit.append("inner")

    with ra_sync.deadline(0.2):  # sync: a late block keeps its result, reported as overrun
        anyio.run(main, backend=backend)
    assert hit == ["inner"]


# --- item 11: shielded code is never interrupted by a deadline -----------------------------


async def test_shielded_code_finishes_and_the_deadline_fires_when_the_shield_exits() -> None:
    start = anyio.current_time()
    finished: list[float] = []
    with pytest.raises(ra.DeadlineExceeded):
        with ra.deadline(1):
            with anyio.CancelScope(shield=True):
                await anyio.sleep(2)
                finished.append(anyio.current_time() - start)
            await anyio.sleep(10)
    assert finished == [pytest.approx(2)]
    assert anyio.current_time() - start == pytest.approx(2, abs=0.01)


async def test_a_deadline_inside_a_shield_still_fires() -> None:
    start = anyio.current_time()
    with anyio.CancelScope(shield=True):
        with pytest.raises(ra.DeadlineExceeded):
            with ra.deadline(1):
                await anyio.sleep(5)
    assert anyio.current_time() - start == pytest.approx(1)


async def test_a_timeout_never_interrupts_a_shielded_compensation() -> None:
    steps: list[str] = []

    async def step_with_cleanup() -> None:
        try:
            await anyio.sleep(10)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1)
                steps.append("cleanup done")

    with pytest.raises(ra.DeadlineExceeded):
        await ra.Timeout(0.5).call(step_with_cleanup)
    assert steps == ["cleanup done"]


# --- item 2: one policy, two clocks --------------------------------------------------------


def _run(backend: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn, backend=backend)  # real clocks: trio's has its random offset


@pytest.mark.parametrize(("first", "then"), [("trio", "asyncio"), ("asyncio", "trio")])
def test_a_breaker_keeps_its_open_period_across_backends(first: str, then: str) -> None:
    breaker = ra.CircuitBreaker(failure_rate=1.0, window=1, min_calls=1, open_for=30.0)

    async def fail() -> None:
        raise ConnectionError("down")

    async def trip() -> None:
        with pytest.raises(ConnectionError):
            await breaker.call(fail)

    async def probe() -> float | None:
        with pytest.raises(ra.CircuitOpenError) as info:
            await breaker.call(fail)
        return info.value.retry_after

    _run(first, trip)
    retry_after = _run(then, probe)
    assert retry_after is not None
    assert 0 < retry_after <= 30.0


@pytest.mark.parametrize(("first", "then"), [("trio", "asyncio"), ("asyncio", "trio")])
def test_a_limiter_keeps_its_tokens_across_backends(first: str, then: str) -> None:
    limiter = ra.RateLimiter(1, per=10.0, burst=5)

    async def drain() -> int:
        return sum(limiter.try_acquire() for _ in range(5))

    assert _run(first, drain) == 5
    # Refilling at one token per 10 s: a token can only come back if the second loop took
    # more than 10 s to start (a margin for a loaded machine); the old code refilled all 5.
    assert _run(then, drain) <= 2


def test_a_last_good_result_keeps_its_age_across_backends() -> None:
    fallback = ra.Fallback.last_good(60.0)
    answers: list[object] = ["fresh", ConnectionError("down")]

    async def fetch() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert _run("asyncio", lambda: fallback.call(fetch)) == "fresh"
    assert _run("trio", lambda: fallback.call(fetch)) == "fresh"


def test_sync_code_in_a_worker_thread_sees_the_trio_deadline() -> None:
    async def main() -> tuple[float, float]:
        with ra.deadline(60):
            seen = await trio.to_thread.run_sync(ra_sync.remaining)
            return seen, ra.remaining()

    in_thread, in_task = anyio.run(main, backend="trio")
    # The old code saw about 135000 s here (trio's clock offset); 60 s leaves room for a
    # loaded machine.
    assert 0 < in_thread <= 60.0
    assert 0 < in_task <= 60.0


async def test_current_deadline_is_on_the_loop_clock() -> None:
    with ra.deadline(3):
        assert ra.current_deadline() == pytest.approx(anyio.current_time() + 3)
        with ra.deadline_at(anyio.current_time() + 1):
            assert ra.remaining() == pytest.approx(1)


@pytest.mark.real_time
async def test_current_deadline_is_on_the_real_loop_clock() -> None:
    with ra.deadline(30):
        assert ra.current_deadline() == pytest.approx(anyio.current_time() + 30, abs=10)
        with ra.deadline_at(anyio.current_time() + 20):
            assert 0 < ra.remaining() <= 20


# --- item 4: one async policy, two threads, each with its own loop -------------------------


@pytest.mark.parametrize(
    "backends", [("asyncio", "asyncio"), ("trio", "asyncio"), ("asyncio", "trio")]
)
def test_a_bulkhead_hands_its_slot_to_a_waiter_in_another_thread(
    backends: tuple[str, str],
) -> None:
    bulkhead = ra.Bulkhead(1, max_queue=1)
    holder_in = threading.Event()
    results: dict[str, object] = {}

    async def hold() -> str:
        holder_in.set()
        while bulkhead.queued == 0:  # until the other thread's caller waits for the slot
            await anyio.sleep(0.001)
        return "first"

    async def first() -> None:
        results["first"] = await bulkhead.call(hold)

    async def second() -> None:
        async def work() -> str:
            return "second"

        results["second"] = await bulkhead.call(work)

    def run(backend: str, fn: Callable[[], Awaitable[None]]) -> None:
        options = {"debug": True} if backend == "asyncio" else {}
        try:
            anyio.run(fn, backend=backend, backend_options=options)
        except BaseException as exc:  # reported below, with the thread that saw it
            results[f"error in {fn.__name__}"] = exc

    threads = [threading.Thread(target=run, args=(backends[0], first), daemon=True)]
    threads[0].start()
    assert holder_in.wait(30)
    threads.append(threading.Thread(target=run, args=(backends[1], second), daemon=True))
    threads[1].start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a caller hung"
    assert results == {"first": "first", "second": "second"}
    assert bulkhead.in_use == 0
    assert bulkhead.queued == 0


def test_a_limiter_wakes_a_waiter_on_another_loop_thread() -> None:
    # A waiter is woken by a timer on its own loop; another thread's cancellation of an
    # earlier reservation must not leave it waiting forever either.
    limiter = ra.RateLimiter(20, per=1.0, burst=1, max_wait=5.0)
    results: list[int] = []

    async def take(count: int) -> None:
        for _ in range(count):
            await limiter.acquire()
        results.append(count)

    threads = [
        threading.Thread(target=asyncio.run, args=(take(5),), daemon=True),
        threading.Thread(target=trio.run, args=(take, 5), daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(results) == [5, 5]
