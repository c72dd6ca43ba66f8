"""Bulkhead on asyncio and trio (RELIABILITY.md invariant 7, bug class 1).

The ledger (in flight <= limit, queued <= max_queue, submitted = running + queued + rejected
+ completed + failed + cancelled) is checked after every step of a scenario table, after
random action sequences (Hypothesis) and throughout random cancellation storms. A cancelled
or timed-out waiter never keeps a slot, including one woken and cancelled before it resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient_async as ra
from resilient_async._async.bulkhead import Bulkhead, KeyedBulkhead
from resilient_async._async.timeout import deadline
from resilient_async.context import context_of, error_context
from resilient_async.instrumentation import hooks

from ..helpers import BACKENDS, Recorder, run_virtual

pytestmark = pytest.mark.anyio

T = TypeVar("T")


def check_ledger(bulkhead: Bulkhead) -> None:
    m = bulkhead.metrics()
    assert 0 <= m.running <= bulkhead.max_concurrent, m
    assert 0 <= m.queued <= bulkhead.max_queue, m
    assert m.submitted == (
        m.running + m.queued + m.rejected + m.completed + m.failed + m.cancelled
    ), m
    assert (bulkhead.in_use, bulkhead.queued) == (m.running, m.queued)


def watchdog(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Fail, instead of hanging, a test whose tasks all block forever (a leaked slot).

    In virtual time the clock jumps to this deadline as soon as every task is stuck.
    """

    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        with anyio.fail_after(WATCHDOG):
            await test(*args, **kwargs)

    return guarded


WATCHDOG = 100_000.0


def run_guarded(backend: str, fn: Callable[[], Awaitable[T]]) -> T:
    """`run_virtual`, failing instead of hanging when every task blocks forever."""

    async def guarded() -> T:
        with anyio.fail_after(WATCHDOG):
            return await fn()

    return run_virtual(backend, guarded)


async def settle(steps: int = 10) -> None:
    """Let every runnable task go as far as it can without time passing."""
    for _ in range(steps):
        await anyio.lowlevel.checkpoint()


async def returns_at_once() -> str:
    return "done"


async def assert_next_call_is_immediate(bulkhead: Bulkhead) -> None:
    """The next call gets a slot without waiting: no other task runs before it returns."""
    others_ran = False

    async def other() -> None:
        nonlocal others_ran
        others_ran = True

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        assert await bulkhead.call(returns_at_once) == "done"
        assert not others_ran
    assert anyio.current_time() == start
    assert bulkhead.in_use == 0


class Caller:
    """One call through the bulkhead that the test finishes, fails or cancels at will."""

    def __init__(self, bulkhead: Bulkhead, name: str) -> None:
        self.bulkhead = bulkhead
        self.name = name
        self.done = anyio.Event()
        self.fail = False
        self.started = False
        self.outcome: str | None = None
        self.error: BaseException | None = None
        self.scope = anyio.CancelScope()

    async def work(self) -> None:
        self.started = True
        await self.done.wait()
        if self.fail:
            raise RuntimeError(f"{self.name} failed")

    async def run(self) -> None:
        with self.scope:
            try:
                await self.bulkhead.call(self.work)
            except ra.BulkheadFullError as exc:
                self.outcome, self.error = "rejected", exc
            except RuntimeError as exc:
                self.outcome, self.error = "failed", exc
            else:
                self.outcome = "completed"
        if self.scope.cancelled_caught:
            self.outcome = "cancelled"


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_concurrent": 0}, ValueError, "max_concurrent must be >= 1, got 0"),
        ({"max_concurrent": -3}, ValueError, "max_concurrent must be >= 1"),
        ({"max_concurrent": 2.5}, TypeError, "max_concurrent must be an int"),
        ({"max_concurrent": True}, TypeError, "max_concurrent must be an int"),
        ({"max_concurrent": 1, "max_queue": -1}, ValueError, "max_queue must be >= 0, got -1"),
        ({"max_concurrent": 1, "max_queue": None}, TypeError, "max_queue must be an int"),
        ({"max_concurrent": 1, "max_wait": -0.5}, ValueError, "max_wait must be >= 0"),
        ({"max_concurrent": 1, "max_wait": math.nan}, ValueError, "max_wait must be >= 0"),
        ({"max_concurrent": 1, "max_wait": "1"}, TypeError, "max_wait must be a number"),
    ],
)
def test_bad_configuration_fails_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Bulkhead(**kwargs)
    with pytest.raises(error, match=message):
        Bulkhead.per_key(**kwargs)


def test_per_key_validates_its_own_settings() -> None:
    with pytest.raises(ValueError, match="max_keys must be >= 1, got 0"):
        Bulkhead.per_key(1, max_keys=0)
    with pytest.raises(ValueError, match="idle_ttl must be >= 0"):
        Bulkhead.per_key(1, idle_ttl=-1)


def test_built_without_a_loop_and_described() -> None:
    bulkhead = Bulkhead(3, max_queue=2, max_wait=1.5, name="db")
    assert repr(bulkhead) == "Bulkhead(3, max_queue=2, max_wait=1.5, name='db')"
    assert (bulkhead.in_use, bulkhead.queued) == (0, 0)
    metrics = bulkhead.metrics()
    assert (metrics.max_concurrent, metrics.max_queue, metrics.submitted) == (3, 2, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics.running = 1  # type: ignore[misc]


# --- the scenario table -------------------------------------------------------------------

# (action, caller or seconds, expected (running, queued, rejected, completed, failed, cancelled))
SCENARIO: list[tuple[str, Any, tuple[int, int, int, int, int, int]]] = [
    ("start", "A", (1, 0, 0, 0, 0, 0)),
    ("start", "B", (2, 0, 0, 0, 0, 0)),
    ("start", "C", (2, 1, 0, 0, 0, 0)),
    ("start", "D", (2, 2, 0, 0, 0, 0)),
    ("start", "E", (2, 2, 1, 0, 0, 0)),  # no slot, no queue room: rejected at once
    ("finish", "A", (2, 1, 1, 1, 0, 0)),  # A's slot goes to C, the longest waiter
    ("cancel", "D", (2, 0, 1, 1, 0, 1)),  # a queued caller cancelled
    ("fail", "B", (1, 0, 1, 1, 1, 1)),
    ("start", "F", (2, 0, 1, 1, 1, 1)),
    ("start", "G", (2, 1, 1, 1, 1, 1)),
    ("advance", 6.0, (2, 0, 2, 1, 1, 1)),  # G's max_wait (5 s) passes: rejected
    ("cancel", "C", (1, 0, 2, 1, 1, 2)),  # a running call cancelled
    ("start", "H", (2, 0, 2, 1, 1, 2)),
    ("start", "I", (2, 1, 2, 1, 1, 2)),
    ("cancel", "H", (2, 0, 2, 1, 1, 3)),  # cancelled running H hands its slot to I
    ("finish", "F", (1, 0, 2, 2, 1, 3)),
    ("finish", "I", (0, 0, 2, 3, 1, 3)),
]
OUTCOMES = {
    "A": "completed",
    "B": "failed",
    "C": "cancelled",
    "D": "cancelled",
    "E": "rejected",
    "F": "completed",
    "G": "rejected",
    "H": "cancelled",
    "I": "completed",
}


@watchdog
async def test_scenario_table_ledger_after_every_step() -> None:
    bulkhead = Bulkhead(2, max_queue=2, max_wait=5.0, name="table")
    callers: dict[str, Caller] = {}
    async with anyio.create_task_group() as tg:
        for step, (action, arg, expected) in enumerate(SCENARIO):
            before = anyio.current_time()
            if action == "start":
                callers[arg] = caller = Caller(bulkhead, arg)
                tg.start_soon(caller.run)
            elif action in ("finish", "fail"):
                callers[arg].fail = action == "fail"
                callers[arg].done.set()
            elif action == "cancel":
                callers[arg].scope.cancel()
            else:
                await anyio.sleep(arg)
            await settle()
            if action != "advance":
                assert anyio.current_time() == before, f"step {step} waited"
            m = bulkhead.metrics()
            actual = (m.running, m.queued, m.rejected, m.completed, m.failed, m.cancelled)
            assert actual == expected, f"step {step}: {action} {arg}"
            check_ledger(bulkhead)
            running = sorted(n for n, c in callers.items() if c.started and c.outcome is None)
            assert len(running) == m.running, f"step {step}: running {running}"
    assert {name: c.outcome for name, c in callers.items()} == OUTCOMES
    assert not callers["E"].started
    assert not callers["G"].started  # a timed-out waiter never ran
    assert not callers["D"].started
    await assert_next_call_is_immediate(bulkhead)


# --- queueing -----------------------------------------------------------------------------


@watchdog
async def test_waiters_are_served_in_fifo_order() -> None:
    bulkhead = Bulkhead(1, max_queue=10)
    order: list[int] = []
    gate = anyio.Event()

    async def hold() -> None:
        await gate.wait()

    async def queued(index: int) -> None:
        async def work() -> None:
            order.append(index)
            await anyio.sleep(1)

        await bulkhead.call(work)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, hold)
        await settle()
        for index in range(8):
            tg.start_soon(queued, index)
            await settle()
        assert bulkhead.queued == 8
        gate.set()
    assert order == list(range(8))
    check_ledger(bulkhead)


@watchdog
async def test_timed_out_waiter_is_rejected_and_never_gets_a_slot() -> None:
    bulkhead = Bulkhead(1, max_queue=1, max_wait=2.0, name="pool")
    ran: list[str] = []
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    async def wanted() -> None:
        ran.append("waiter")

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, hold)
        await settle()
        start = anyio.current_time()
        with pytest.raises(ra.BulkheadFullError, match=r"max_wait=2\.0") as info:
            await bulkhead.call(wanted)
        assert anyio.current_time() - start == pytest.approx(2.0)
        assert info.value.bulkhead == "pool"
        assert (bulkhead.in_use, bulkhead.queued) == (1, 0)
        release.set()
    assert ran == []
    assert bulkhead.in_use == 0
    check_ledger(bulkhead)
    await assert_next_call_is_immediate(bulkhead)


@pytest.mark.parametrize("hold_for", [1.999, 2.0, 2.001])
@watchdog
async def test_slot_freed_as_max_wait_passes(hold_for: float) -> None:
    """Release and timeout at (nearly) the same instant: run, or be rejected holding nothing."""
    bulkhead = Bulkhead(1, max_queue=1, max_wait=2.0)
    ran: list[str] = []

    async def hold() -> None:
        await anyio.sleep(hold_for)

    async def wanted() -> None:
        ran.append("waiter")
        await anyio.sleep(1)

    outcome: list[str] = []

    async def waiter() -> None:
        try:
            await bulkhead.call(wanted)
            outcome.append("ran")
        except ra.BulkheadFullError:
            outcome.append("rejected")

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, hold)
        await settle()
        tg.start_soon(waiter)
        await settle()
        assert bulkhead.queued == 1
    assert outcome == (["ran"] if ran else ["rejected"])
    if hold_for > 2.0:
        assert outcome == ["rejected"]
    if hold_for < 2.0:
        assert outcome == ["ran"]
    check_ledger(bulkhead)
    assert (bulkhead.in_use, bulkhead.queued) == (0, 0)


@watchdog
async def test_without_max_wait_the_deadline_bounds_the_wait() -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, hold)
        await settle()
        start = anyio.current_time()
        with pytest.raises(ra.DeadlineExceeded):
            with deadline(3.0):
                await bulkhead.call(returns_at_once)
        assert anyio.current_time() - start == pytest.approx(3.0)
        assert (bulkhead.in_use, bulkhead.queued) == (1, 0)
        assert bulkhead.metrics().cancelled == 1
        release.set()
    check_ledger(bulkhead)
    await assert_next_call_is_immediate(bulkhead)


@watchdog
async def test_no_queue_rejects_at_once_with_fresh_errors_and_events() -> None:
    bulkhead = Bulkhead(1, name="payments")
    recorder = Recorder()
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    errors = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, hold)
        await settle()
        start = anyio.current_time()
        with hooks(recorder):
            for _ in range(2):
                with pytest.raises(ra.BulkheadFullError) as info:
                    await bulkhead.call(returns_at_once)
                errors.append(info.value)
        assert anyio.current_time() == start
        release.set()
    assert errors[0] is not errors[1]
    assert errors[0].__traceback__ is not errors[1].__traceback__
    assert isinstance(errors[0], ra.ResilienceError)
    assert errors[0].bulkhead == "payments"
    assert context_of(errors[0]) == {"policy": "payments"}
    events = recorder.of("bulkhead.rejected")
    assert len(events) == 2
    assert events[0].policy == "payments"
    assert events[0].in_use == 1
    assert events[0].exception is errors[0]
    assert bulkhead.metrics().rejected == 2


@watchdog
async def test_errors_passing_through_carry_the_policy_in_their_context() -> None:
    bulkhead = Bulkhead(1, name="db")

    async def down() -> None:
        raise ConnectionError("down")

    with error_context(request="r1"):
        with pytest.raises(ConnectionError) as info:
            await bulkhead.call(down)
        with pytest.raises(ConnectionError) as info_with:
            async with bulkhead:
                await down()
    assert context_of(info.value) == {"request": "r1", "policy": "db"}
    assert context_of(info_with.value) == {"request": "r1", "policy": "db"}
    assert bulkhead.metrics().failed == 2


# --- the uncontended path -----------------------------------------------------------------


@watchdog
async def test_uncontended_call_adds_no_checkpoint() -> None:
    bulkhead = Bulkhead(2)
    await assert_next_call_is_immediate(bulkhead)

    others_ran = False

    async def other() -> None:
        nonlocal others_ran
        others_ran = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        async with bulkhead:
            assert bulkhead.in_use == 1
        assert not others_ran
    assert bulkhead.metrics().completed == 2


@watchdog
async def test_context_manager_counts_outcomes() -> None:
    bulkhead = Bulkhead(1)
    async with bulkhead:
        pass
    with pytest.raises(KeyError):
        async with bulkhead:
            raise KeyError("x")
    with anyio.CancelScope() as scope:
        async with bulkhead:
            scope.cancel()
            await anyio.lowlevel.checkpoint()
    m = bulkhead.metrics()
    assert (m.completed, m.failed, m.cancelled, m.running) == (1, 1, 1, 0)
    check_ledger(bulkhead)


@watchdog
async def test_decorator_keeps_metadata_and_limits() -> None:
    bulkhead = Bulkhead(1)
    peak = 0
    current = 0

    @bulkhead
    async def fetch(value: int) -> int:
        """Fetch a value."""
        nonlocal peak, current
        current += 1
        peak = max(peak, current)
        await anyio.sleep(1)
        current -= 1
        return value * 2

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch a value."
    results: list[int] = []

    async def run(value: int) -> None:
        try:
            results.append(await fetch(value))
        except ra.BulkheadFullError:
            results.append(-1)

    async with anyio.create_task_group() as tg:
        for value in range(3):
            tg.start_soon(run, value)
    assert sorted(results)[:2] == [-1, -1]  # one ran (trio starts tasks in any order)
    assert sorted(results)[2] in (0, 2, 4)
    assert peak == 1


def test_decorator_rejects_sync_functions() -> None:
    def plain() -> None:
        return None

    with pytest.raises(TypeError, match="async"):
        Bulkhead(1)(plain)  # type: ignore[arg-type]


async def test_a_sync_callable_counts_as_nothing_run_cancelled_not_failed() -> None:
    """A sync callable never ran as a call: withdrawn, counted like a cancelled call.

    The sync twin counts an async callable the same way (test_sync_bulkhead.py).
    """

    def returns() -> str:
        return "value"

    def raises() -> str:
        raise ConnectionError("down")

    plain = Bulkhead(1)
    adaptive = Bulkhead.adaptive(initial=2, algorithm="aimd")
    for bulkhead in (plain, adaptive):
        for fn in (returns, raises):
            with pytest.raises(TypeError, match=r"Bulkhead\.call needs an async callable"):
                await bulkhead.call(fn)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"Pipeline\.call needs an async callable"):
                await ra.pipeline(bulkhead).call(fn)  # type: ignore[arg-type]
        m = bulkhead.metrics()
        assert (m.cancelled, m.failed, m.completed, m.running) == (4, 0, 0, 0), m
    assert adaptive.limit == 2  # no sample: the limit did not move


async def test_async_with_nests_and_interleaves_across_tasks() -> None:
    """`async with` holds its slot until its own block ends, nested or in parallel tasks."""
    bulkhead = Bulkhead(3)
    adaptive = Bulkhead.adaptive(initial=3, algorithm="aimd")
    held, release = anyio.Event(), anyio.Event()

    async def hold() -> None:
        async with bulkhead, adaptive:
            held.set()
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold)
        async with bulkhead:
            async with bulkhead as inner:
                assert inner is bulkhead
                await held.wait()
                assert bulkhead.in_use == 3
            assert bulkhead.in_use == 2
        release.set()
    assert (bulkhead.in_use, adaptive.in_use) == (0, 0)
    assert bulkhead.metrics().completed == 3
    assert adaptive.metrics().completed == 1
    with pytest.raises(RuntimeError, match="without a matching enter"):
        await adaptive.__aexit__(None, None, None)  # a guard with tokens matches its exits
    assert adaptive.metrics().completed == 1  # an unmatched exit frees nothing


async def test_blocks_of_different_guards_may_leave_out_of_order() -> None:
    """Each guard's exit finds its own token, whatever was entered after it."""
    bulkhead, limiter = Bulkhead(1), ra.RateLimiter(10)
    breaker = ra.CircuitBreaker(window_type="time", window=10)  # timed: a (ticket, start) token
    await bulkhead.__aenter__()
    await breaker.__aenter__()
    await limiter.__aenter__()
    await bulkhead.__aexit__(None, None, None)  # the outermost leaves first
    assert bulkhead.in_use == 0
    await breaker.__aexit__(None, None, None)
    await limiter.__aexit__(None, None, None)
    assert breaker.metrics().calls == 1
    with pytest.raises(RuntimeError, match="without a matching enter"):
        await breaker.__aexit__(None, None, None)


# --- cancellation -------------------------------------------------------------------------


@watchdog
async def test_cancel_sweep_leaves_no_slot_and_no_waiter() -> None:
    """Cancel a queued caller after k checkpoints, for every k until it completes first."""
    completed_first = False
    k = 0
    while not completed_first:
        bulkhead = Bulkhead(1, max_queue=2)
        behind_ran = anyio.Event()

        async def hold() -> None:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()

        async def victim_work() -> None:
            for _ in range(3):
                await anyio.lowlevel.checkpoint()

        async def behind() -> None:
            behind_ran.set()

        victim_scope = anyio.CancelScope()
        victim_done = False

        async def victim() -> None:
            nonlocal victim_done
            with victim_scope:
                await bulkhead.call(victim_work)
                victim_done = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(bulkhead.call, hold)
            tg.start_soon(victim)
            tg.start_soon(bulkhead.call, behind)
            for _ in range(k):
                await anyio.lowlevel.checkpoint()
            victim_scope.cancel()
        completed_first = victim_done
        assert behind_ran.is_set(), f"k={k}: the caller behind never got a slot"
        check_ledger(bulkhead)
        assert (bulkhead.in_use, bulkhead.queued) == (0, 0), f"k={k}"
        m = bulkhead.metrics()
        assert m.completed + m.cancelled == 3, f"k={k}: {m}"
        await assert_next_call_is_immediate(bulkhead)
        k += 1
        assert k < 100
    assert k > 3


@watchdog
async def test_woken_then_cancelled_waiter_passes_the_slot_on() -> None:
    """A scope cancelled right after the slot was handed over, before the waiter resumes."""
    bulkhead = Bulkhead(1, max_queue=2)
    scope = anyio.CancelScope()
    outcomes: list[str] = []

    async def first() -> None:
        with scope:
            await bulkhead.call(returns_at_once)
            outcomes.append("first ran")
        if scope.cancelled_caught:
            outcomes.append("first cancelled")

    async def second() -> None:
        await bulkhead.call(returns_at_once)
        outcomes.append("second ran")

    async with anyio.create_task_group() as tg:
        await bulkhead.__aenter__()
        tg.start_soon(first)
        await settle()
        tg.start_soon(second)
        await settle()
        assert bulkhead.queued == 2
        await bulkhead.__aexit__(None, None, None)  # hands the slot to `first` ...
        scope.cancel()  # ... which is cancelled before it resumes
    assert "second ran" in outcomes
    check_ledger(bulkhead)
    assert (bulkhead.in_use, bulkhead.queued) == (0, 0)
    await assert_next_call_is_immediate(bulkhead)


def test_woken_then_task_cancelled_on_asyncio() -> None:
    """gh-90155: release, then `task.cancel()` the woken waiter before it runs."""

    async def scenario() -> tuple[list[str], Bulkhead]:
        bulkhead = Bulkhead(1, max_queue=2)
        outcomes: list[str] = []

        async def call(label: str) -> None:
            try:
                await bulkhead.call(returns_at_once)
                outcomes.append(f"{label} ran")
            except asyncio.CancelledError:
                outcomes.append(f"{label} cancelled")
                raise

        await bulkhead.__aenter__()
        first = asyncio.create_task(call("first"))
        await asyncio.sleep(0)
        second = asyncio.create_task(call("second"))
        await asyncio.sleep(0)
        assert bulkhead.queued == 2
        await bulkhead.__aexit__(None, None, None)
        assert bulkhead.in_use == 1  # handed to `first`, which has not resumed yet
        first.cancel()
        first.cancel()  # a double cancel changes nothing
        await asyncio.gather(first, second, return_exceptions=True)
        assert first.cancelled()
        await asyncio.sleep(0)
        return outcomes, bulkhead

    outcomes, bulkhead = run_guarded("asyncio", scenario)
    assert outcomes == ["first cancelled", "second ran"]
    check_ledger(bulkhead)
    assert (bulkhead.in_use, bulkhead.queued) == (0, 0)
    assert bulkhead.metrics().cancelled == 1


def test_woken_then_cancelled_on_trio() -> None:
    """The same race on trio, through a cancel scope."""
    import trio

    async def scenario() -> tuple[list[str], Bulkhead]:
        bulkhead = Bulkhead(1, max_queue=2)
        outcomes: list[str] = []
        scope = trio.CancelScope()

        async def first() -> None:
            with scope:
                await bulkhead.call(returns_at_once)
                outcomes.append("first ran")
            if scope.cancelled_caught:
                outcomes.append("first cancelled")

        async def second() -> None:
            await bulkhead.call(returns_at_once)
            outcomes.append("second ran")

        async with trio.open_nursery() as nursery:
            await bulkhead.__aenter__()
            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            await bulkhead.__aexit__(None, None, None)
            scope.cancel()
        return outcomes, bulkhead

    outcomes, bulkhead = run_guarded("trio", scenario)
    assert "second ran" in outcomes
    check_ledger(bulkhead)
    assert (bulkhead.in_use, bulkhead.queued) == (0, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_cancellations_leak_nothing(backend: str) -> None:
    """2000 callers with random arrivals, durations, failures and cancels (native on asyncio)."""
    rng = random.Random(2024)
    limit, max_queue = 3, 5
    bulkhead = Bulkhead(limit, max_queue=max_queue, max_wait=1.5)
    peak = 0
    running = 0
    times = [0.0, 0.5, 1.0, 1.5, 2.0]

    async def work(duration: float, fail: bool) -> None:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        check_ledger(bulkhead)
        try:
            if duration:
                await anyio.sleep(duration)
            if fail:
                raise RuntimeError("boom")
        finally:
            running -= 1

    entered = 0

    async def caller(arrival: float, duration: float, fail: bool) -> None:
        nonlocal entered
        await anyio.sleep(arrival)
        entered += 1
        with contextlib.suppress(ra.BulkheadFullError, RuntimeError):
            await bulkhead.call(work, duration, fail)
        check_ledger(bulkhead)

    plans = [
        (
            0.5 * rng.randrange(20) + 10.0 * (index // 100),
            rng.choice(times),
            rng.random() < 0.2,
            rng.choice([None, *times]),
        )
        for index in range(2000)
    ]

    async def on_asyncio() -> None:
        loop = asyncio.get_running_loop()
        tasks = []
        for arrival, duration, fail, cancel_after in plans:
            task = asyncio.create_task(caller(arrival, duration, fail))
            if cancel_after is not None:
                loop.call_at(loop.time() + arrival + cancel_after, task.cancel)
            tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def on_trio() -> None:
        import trio

        async def cancellable(plan: tuple[float, float, bool, float | None]) -> None:
            arrival, duration, fail, cancel_after = plan
            with trio.CancelScope() as scope:
                if cancel_after is not None:
                    scope.deadline = trio.current_time() + arrival + cancel_after
                await caller(arrival, duration, fail)

        async with trio.open_nursery() as nursery:
            for plan in plans:
                nursery.start_soon(cancellable, plan)

    async def scenario() -> None:
        await (on_asyncio() if backend == "asyncio" else on_trio())
        check_ledger(bulkhead)
        assert (bulkhead.in_use, bulkhead.queued) == (0, 0)
        await assert_next_call_is_immediate(bulkhead)

    run_guarded(backend, scenario)
    m = bulkhead.metrics()
    assert peak <= limit
    assert m.submitted == entered + 1
    assert m.cancelled > 100
    assert m.rejected > 100
    assert m.failed > 20
    assert m.completed > 100


# --- random action sequences (Hypothesis) --------------------------------------------------

ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["start", "finish", "fail", "cancel", "advance"]),
        st.integers(0, 7),
    ),
    max_size=30,
)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(
    actions=ACTIONS,
    limit=st.integers(1, 3),
    max_queue=st.integers(0, 3),
    max_wait=st.sampled_from([None, 0.0, 1.0, 2.5]),
)
def test_random_scenarios_keep_the_ledger(
    backend: str,
    actions: list[tuple[str, int]],
    limit: int,
    max_queue: int,
    max_wait: float | None,
) -> None:
    async def scenario() -> None:
        bulkhead = Bulkhead(limit, max_queue=max_queue, max_wait=max_wait if max_queue else None)
        callers: list[Caller] = []
        async with anyio.create_task_group() as tg:
            for action, index in actions:
                if action == "start":
                    caller = Caller(bulkhead, str(len(callers)))
                    callers.append(caller)
                    tg.start_soon(caller.run)
                elif action == "advance":
                    await anyio.sleep(index / 2)
                elif callers:
                    target = callers[index % len(callers)]
                    if action == "cancel":
                        target.scope.cancel()
                    else:
                        target.fail = action == "fail"
                        target.done.set()
                await settle()
                check_ledger(bulkhead)
                live = [c for c in callers if c.started and c.outcome is None]
                assert len(live) == bulkhead.in_use
            for caller in callers:
                caller.done.set()
        check_ledger(bulkhead)
        assert (bulkhead.in_use, bulkhead.queued) == (0, 0)
        m = bulkhead.metrics()
        assert m.submitted == len(callers)
        counts = {
            outcome: sum(c.outcome == outcome for c in callers)
            for outcome in ("rejected", "completed", "failed", "cancelled")
        }
        assert counts == {
            "rejected": m.rejected,
            "completed": m.completed,
            "failed": m.failed,
            "cancelled": m.cancelled,
        }
        for caller in callers:
            if caller.outcome == "rejected":
                assert not caller.started
        await assert_next_call_is_immediate(bulkhead)

    run_guarded(backend, scenario)


# --- per key ------------------------------------------------------------------------------


@watchdog
async def test_per_key_limits_each_key_separately() -> None:
    keyed = Bulkhead.per_key(1, name="tenant")
    assert isinstance(keyed, KeyedBulkhead)
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(keyed["a"].call, hold)
        await settle()
        with pytest.raises(ra.BulkheadFullError) as info:
            await keyed["a"].call(returns_at_once)
        assert info.value.bulkhead == "tenant['a']"
        assert await keyed["b"].call(returns_at_once) == "done"
        assert keyed["a"] is keyed["a"]
        assert "a" in keyed
        release.set()
    assert len(keyed) == 2
    assert repr(keyed) == "KeyedBulkhead(name='tenant', keys=2)"


@watchdog
async def test_per_key_forgets_idle_keys_and_keeps_busy_ones() -> None:
    keyed: KeyedBulkhead[str] = KeyedBulkhead(1, max_keys=2, idle_ttl=10.0)
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    async with anyio.create_task_group() as tg:
        busy = keyed["busy"]
        tg.start_soon(busy.call, hold)
        await settle()
        for index in range(50):
            await keyed[f"k{index}"].call(returns_at_once)
        assert len(keyed) <= 3
        await anyio.sleep(20)
        for _ in range(4):
            keyed["fresh"]
        assert keyed["busy"] is busy  # never dropped while in use
        assert busy.in_use == 1
        release.set()
    await anyio.sleep(20)
    for _ in range(4):
        keyed["fresh"]
    assert "busy" not in keyed
    assert len(keyed) == 1
