"""Bulkhead.adaptive and the CoDel queue, on asyncio and trio, in virtual time.

The figures of docs/adaptive.md come from the scenarios in benchmarks/adaptive.py; these
tests run the same scenarios, shorter, and check the properties the page states. The bulkhead
ledger (RELIABILITY.md 7) is checked throughout, CoDel included.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import resilient_async as ra
from benchmarks.adaptive import SERVICE_TIME, limit_curve, overload
from resilient_async._async.adaptive import AdaptiveBulkhead
from resilient_async._async.bulkhead import Bulkhead
from resilient_async.instrumentation import hooks

from ..helpers import BACKENDS, Recorder, run_virtual

pytestmark = pytest.mark.anyio


def check_ledger(bulkhead: Bulkhead) -> None:
    m = bulkhead.metrics()
    assert 0 <= m.running <= bulkhead.max_concurrent, m
    assert 0 <= m.queued <= bulkhead.max_queue, m
    assert m.submitted == (
        m.running + m.queued + m.rejected + m.completed + m.failed + m.cancelled
    ), m


async def settle(steps: int = 10) -> None:
    for _ in range(steps):
        await anyio.lowlevel.checkpoint()


async def returns_at_once() -> str:
    return "done"


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"min_limit": 10, "max_limit": 2}, ValueError, "min_limit must be <= max_limit"),
        ({"initial": 0}, ValueError, "initial must be >= 1, got 0"),
        ({"initial": 5, "min_limit": 6}, ValueError, "initial must be between min_limit"),
        ({"initial": 2000}, ValueError, r"initial must be between .*\(1\.\.1000\), got 2000"),
        ({"algorithm": "vegas"}, ValueError, "algorithm must be one of 'aimd', 'gradient'"),
        ({"queue": "lifo"}, ValueError, "queue must be 'fifo' or 'codel', got 'lifo'"),
        ({"codel_target": 0}, ValueError, "codel_target must be a finite number > 0, got 0"),
        ({"codel_interval": -1.0}, ValueError, "codel_interval must be a finite number > 0"),
        ({"codel_interval": math.inf}, ValueError, "codel_interval must be a finite number"),
        ({"codel_target": "5ms"}, TypeError, "codel_target must be a number"),
        ({"max_queue": -1}, ValueError, "max_queue must be >= 0"),
    ],
)
def test_bad_configuration_fails_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Bulkhead.adaptive(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue": "LIFO"}, "queue must be 'fifo' or 'codel', got 'LIFO'"),
        ({"codel_target": -0.005}, "codel_target must be a finite number > 0"),
        ({"codel_interval": 0.0}, "codel_interval must be a finite number > 0"),
    ],
)
def test_plain_bulkhead_checks_its_queue_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Bulkhead(2, max_queue=2, **kwargs)


def test_built_without_a_loop_and_described() -> None:
    adaptive = ra.Bulkhead.adaptive(initial=8, max_limit=64, max_queue=4, name="search")
    assert isinstance(adaptive, AdaptiveBulkhead)
    assert isinstance(adaptive, ra.Bulkhead)
    assert adaptive.limit == 8
    assert adaptive.max_concurrent == 64
    assert adaptive.metrics().max_concurrent == 8
    assert repr(adaptive).startswith("Bulkhead.adaptive(initial=8, min_limit=1, max_limit=64")
    codel = ra.Bulkhead(3, max_queue=5, queue="codel")
    assert codel.limit == 3
    assert "queue='codel', codel_target=0.005, codel_interval=0.1" in repr(codel)
    assert ra.Bulkhead(3).limit == 3


# --- the adaptive driver ------------------------------------------------------------------


async def test_limit_grows_at_no_load_latency_and_reports_each_change() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=2, max_limit=40, max_queue=30, name="svc")
    recorder = Recorder()

    async def work() -> None:
        await anyio.sleep(SERVICE_TIME)

    async def client() -> None:
        for _ in range(30):
            with contextlib.suppress(ra.BulkheadFullError):
                await bulkhead.call(work)
            await anyio.sleep(0.001)

    with hooks(recorder):
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(client)
    assert bulkhead.limit > 10
    changes = recorder.of("bulkhead.limit_changed")
    assert changes
    assert changes[0].old_limit == 2
    assert changes[-1].new_limit == bulkhead.limit
    assert all(e.policy == "svc" and e.algorithm == "gradient" for e in changes)
    assert all(e.latency == pytest.approx(SERVICE_TIME) for e in changes)
    for before, after in itertools.pairwise(changes):
        assert after.old_limit == before.new_limit
    check_ledger(bulkhead)


async def test_capacity_ten_settles_near_the_capacity() -> None:
    curve = await limit_curve(capacity=10, clients=50, initial=100, duration=2.0)
    mean, low, high = curve.settled(1.0)
    assert low >= 10, (mean, low, high)
    assert high <= 25, (mean, low, high)
    assert curve.points[0][1] == 100


async def test_flat_latency_grows_past_what_the_clients_can_use() -> None:
    curve = await limit_curve(capacity=None, clients=50, initial=5, duration=1.0)
    assert curve.points[0][1] == 5
    assert curve.settled(0.5)[1] > 50


async def test_aimd_backs_off_on_refusals_beyond_the_capacity() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=40, algorithm="aimd", max_queue=50)
    inside = 0
    limits: list[int] = []

    async def dependency() -> None:
        nonlocal inside
        if inside >= 10:
            raise ConnectionRefusedError("over capacity")
        inside += 1
        try:
            await anyio.sleep(SERVICE_TIME)
        finally:
            inside -= 1

    async def client() -> None:
        for _ in range(60):
            with contextlib.suppress(ConnectionError):
                await bulkhead.call(dependency)
            limits.append(bulkhead.limit)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(client)
    # A sawtooth around the capacity: +1 a success, times 0.9 a refusal.
    settled = limits[len(limits) // 2 :]
    assert min(settled) >= 3
    assert max(settled) <= 25
    assert 8 <= sum(settled) / len(settled) <= 15
    check_ledger(bulkhead)


async def test_cancelled_calls_and_unknown_errors_are_not_samples() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=4, max_limit=100)
    recorder = Recorder()

    async def slow() -> None:
        await anyio.sleep(10)

    async def odd() -> None:
        raise RuntimeError("says nothing about load")

    with hooks(recorder):
        for _ in range(20):
            with anyio.move_on_after(0.5):
                await bulkhead.call(slow)
            with anyio.move_on_after(0.5):
                async with bulkhead:
                    await slow()
            with pytest.raises(RuntimeError):
                await bulkhead.call(odd)
    assert bulkhead.limit == 4
    assert recorder.of("bulkhead.limit_changed") == []
    m = bulkhead.metrics()
    assert (m.cancelled, m.failed, m.running) == (40, 20, 0)


async def test_drops_shrink_the_limit_and_permanent_errors_count_as_answers() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=20, max_limit=100)

    async def refused() -> None:
        await anyio.sleep(SERVICE_TIME)
        raise ConnectionResetError("overloaded")

    async def not_found() -> None:
        await anyio.sleep(SERVICE_TIME)
        raise KeyError("no such thing")

    for _ in range(10):
        with pytest.raises(ConnectionResetError):
            await bulkhead.call(refused)
    shrunk = bulkhead.limit
    assert shrunk < 20
    # A lone caller: too little traffic to grow on, but a PERMANENT error is a sample (the
    # estimate is blended), and the limit does not fall on it.
    for _ in range(10):
        with pytest.raises(KeyError):
            await bulkhead.call(not_found)
    assert bulkhead.limit == shrunk


async def test_context_manager_and_pipeline_paths_learn_too() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=10, max_limit=100)
    recorder = Recorder()

    async def timed_out() -> None:
        await anyio.sleep(SERVICE_TIME)
        raise TimeoutError

    with hooks(recorder):
        for _ in range(5):
            with pytest.raises(TimeoutError):
                async with bulkhead:
                    await timed_out()
        after_with = bulkhead.limit
        guarded = ra.pipeline(bulkhead, ra.Timeout(5))
        for _ in range(5):
            with pytest.raises(TimeoutError):
                await guarded.call(timed_out)
    assert after_with < 10
    assert bulkhead.limit < after_with
    assert bulkhead.in_use == 0
    assert len(recorder.of("bulkhead.limit_changed")) >= 2


async def test_a_growing_limit_hands_slots_to_waiters() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=1, max_limit=10, algorithm="aimd", max_queue=10)
    started: list[tuple[int, float]] = []

    async def hold(index: int) -> None:
        started.append((index, anyio.current_time()))
        await anyio.sleep(1)

    async with anyio.create_task_group() as tg:
        for index in range(4):
            tg.start_soon(bulkhead.call, hold, index)
            await settle()
        assert (bulkhead.in_use, bulkhead.queued) == (1, 3)
        await anyio.sleep(1.5)
        # The first success raised the limit to 2: its slot and the new one went to waiters.
        assert (bulkhead.limit, bulkhead.in_use, bulkhead.queued) == (2, 2, 1)
    assert sorted(started) == [(0, 0.0), (1, 1.0), (2, 1.0), (3, 2.0)]
    check_ledger(bulkhead)


async def test_a_shrinking_limit_takes_slots_back_as_calls_finish() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=3, algorithm="aimd", max_queue=5)
    gates = [anyio.Event() for _ in range(3)]
    ran: list[str] = []

    async def held(gate: anyio.Event) -> None:
        await gate.wait()
        raise ConnectionResetError("overloaded")

    async def waiter() -> None:
        ran.append("waiter")

    async def call_held(gate: anyio.Event) -> None:
        with contextlib.suppress(ConnectionError):
            await bulkhead.call(held, gate)

    async with anyio.create_task_group() as tg:
        for gate in gates:
            tg.start_soon(call_held, gate)
        await settle()
        tg.start_soon(bulkhead.call, waiter)
        await settle()
        assert (bulkhead.in_use, bulkhead.queued) == (3, 1)
        gates[0].set()
        await settle()
        # 3 * 0.9: the limit is 2 and the freed slot is taken back, not handed on.
        assert (bulkhead.limit, bulkhead.in_use, bulkhead.queued) == (2, 2, 1)
        assert ran == []
        gates[1].set()
        await settle()
        # 2.43: still 2, so this freed slot goes to the waiter, whose success adds one.
        assert ran == ["waiter"]
        assert bulkhead.limit == 3
        gates[2].set()
    check_ledger(bulkhead)
    assert bulkhead.in_use == 0


# --- CoDel ------------------------------------------------------------------------------------


async def test_codel_is_fifo_while_the_queue_drains() -> None:
    bulkhead = ra.Bulkhead(1, max_queue=10, queue="codel")
    order: list[int] = []

    async def quick(index: int) -> None:
        order.append(index)
        await anyio.sleep(0.001)  # each waits < 5 ms target... at first

    async with anyio.create_task_group() as tg:
        for index in range(4):
            tg.start_soon(bulkhead.call, quick, index)
            await settle()
    assert order == [0, 1, 2, 3]
    check_ledger(bulkhead)


async def test_codel_serves_newest_first_and_sheds_under_a_standing_queue() -> None:
    bulkhead = ra.Bulkhead(1, max_queue=10, queue="codel", name="api")
    outcomes: dict[int, tuple[str, float]] = {}
    reasons: list[str] = []
    start = anyio.current_time()

    async def hold() -> None:
        await anyio.sleep(0.250)

    async def caller(index: int) -> None:
        try:
            await bulkhead.call(anyio.sleep, 0.001)
        except ra.BulkheadFullError as exc:
            outcomes[index] = ("shed", anyio.current_time() - start)
            reasons.append(str(exc))
        else:
            outcomes[index] = ("ran", anyio.current_time() - start)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, hold)
        await settle()
        for index in range(6):  # arrive at 0, 40, 80, 120, 160, 200 ms
            tg.start_soon(caller, index)
            await anyio.sleep(0.040)
    # The queue stands from 105 ms: callers 0..3 have waited 100 ms by 250 ms and are shed
    # when they reach it; at 250 ms the slot goes to the newest (5), then to 4.
    shed = {i for i, (what, _) in outcomes.items() if what == "shed"}
    assert shed == {0, 1, 2, 3}
    assert all("in a standing queue (codel)" in reason for reason in reasons)
    for index in shed:
        assert outcomes[index][1] == pytest.approx(max(0.105, index * 0.040 + 0.100))
    assert outcomes[5][1] < outcomes[4][1]
    assert bulkhead.metrics().rejected == 4
    check_ledger(bulkhead)


@pytest.mark.parametrize("backend", BACKENDS)
def test_overload_figures_fifo_slow_codel_fast(backend: str) -> None:
    fifo = run_virtual(backend, lambda: overload(queue="fifo", duration=2.0))
    codel = run_virtual(backend, lambda: overload(queue="codel", duration=2.0))
    assert fifo.shed == 0
    assert 0.9 <= fifo.percentile(0.5) <= 1.1
    assert codel.percentile(0.5) < 0.1
    assert codel.percentile(0.99) < 0.1 + 0.005 + SERVICE_TIME
    assert codel.shed > len(codel.latencies)
    # The dependency stays busy either way: about 2 slots / 10 ms for 2 s.
    assert len(codel.latencies) >= 0.9 * 400


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("adaptive", [False, True])
def test_codel_random_cancellations_leak_nothing(backend: str, adaptive: bool) -> None:
    rng = random.Random(19)
    bulkhead = (
        ra.Bulkhead.adaptive(initial=3, max_limit=6, max_queue=8, queue="codel", max_wait=0.3)
        if adaptive
        else ra.Bulkhead(3, max_queue=8, queue="codel", max_wait=0.3)
    )
    plans = [
        (
            0.01 * rng.randrange(100) + 2.0 * (index // 200),
            rng.choice([0.0, 0.02, 0.05, 0.2]),
            rng.random() < 0.2,
            rng.choice([None, None, 0.0, 0.01, 0.05, 0.15]),
        )
        for index in range(1000)
    ]
    entered = 0
    peak = running = 0

    async def work(duration: float, fail: bool) -> None:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        try:
            await anyio.sleep(duration)
            if fail:
                raise ConnectionError("boom")
        finally:
            running -= 1

    async def caller(arrival: float, duration: float, fail: bool, cancel: float | None) -> None:
        nonlocal entered
        await anyio.sleep(arrival)
        entered += 1
        with anyio.CancelScope() as scope:
            if cancel is not None:
                scope.deadline = anyio.current_time() + cancel
            with contextlib.suppress(ra.BulkheadFullError, ConnectionError):
                await bulkhead.call(work, duration, fail)
        check_ledger(bulkhead)

    async def scenario() -> None:
        async with anyio.create_task_group() as tg:
            for plan in plans:
                tg.start_soon(caller, *plan)
        check_ledger(bulkhead)
        assert (bulkhead.in_use, bulkhead.queued) == (0, 0)
        before = anyio.current_time()
        assert await bulkhead.call(returns_at_once) == "done"
        assert anyio.current_time() == before

    run_virtual(backend, scenario)
    m = bulkhead.metrics()
    assert peak <= bulkhead.max_concurrent
    assert m.submitted == entered + 1
    assert min(m.cancelled, m.rejected, m.failed, m.completed) > 20, m
