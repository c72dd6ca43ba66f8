"""Transaction and its compensations, on both backends in virtual time (RELIABILITY.md #12)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import anyio
import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync
from resilient_async.instrumentation import hooks

from ..helpers import Recorder, asyncio_only

pytestmark = pytest.mark.anyio


class Saga:
    """Three steps that each take a second, each compensated by an undo that takes a second."""

    def __init__(self, *, undo_seconds: float = 1.0, fail_undo: set[int] | None = None) -> None:
        self.done: list[int] = []
        self.undone: list[int] = []
        self.undo_seconds = undo_seconds
        self.fail_undo = fail_undo or set()

    async def undo(self, step: int) -> None:
        await anyio.sleep(self.undo_seconds)
        self.undone.append(step)
        if step in self.fail_undo:
            raise OSError(f"undo {step} failed")

    async def run(self, tx: ra.Transaction, *, fail_at_end: bool = False) -> None:
        for step in range(3):
            await anyio.sleep(1)
            self.done.append(step)
            tx.on_rollback(self.undo, step)
        if fail_at_end:
            raise ValueError("the block failed")

    def check_compensated(self) -> None:
        """Invariant 12: every completed step undone exactly once, newest first."""
        assert self.undone == list(reversed(self.done))


async def test_success_commits_and_runs_no_compensation() -> None:
    saga = Saga()
    async with ra.Transaction("order") as tx:
        await saga.run(tx)
    assert saga.done == [0, 1, 2]
    assert saga.undone == []


async def test_failure_compensates_in_reverse_once_and_reraises_the_same_error() -> None:
    saga = Saga()
    with pytest.raises(ValueError, match="the block failed") as info:
        async with ra.Transaction("order") as tx:
            await saga.run(tx, fail_at_end=True)
    assert not isinstance(info.value, ra.CompensationError)
    saga.check_compensated()
    assert saga.undone == [2, 1, 0]


async def test_only_completed_steps_are_compensated() -> None:
    undone: list[str] = []

    async def step(name: str, fail: bool = False) -> None:
        await anyio.sleep(1)
        if fail:
            raise ConnectionError(name)

    with pytest.raises(ConnectionError):
        async with ra.Transaction() as tx:
            await step("reserve")
            tx.on_rollback(undone.append, "reserve")
            await step("charge", fail=True)
            tx.on_rollback(undone.append, "charge")
    assert undone == ["reserve"]


async def test_failed_compensations_are_grouped_after_all_were_tried() -> None:
    saga = Saga(fail_undo={2, 0})
    recorder = Recorder()
    with hooks(recorder), pytest.raises(ra.CompensationError) as info:
        async with ra.Transaction("order") as tx:
            await saga.run(tx, fail_at_end=True)
    saga.check_compensated()
    group = info.value
    assert isinstance(group, ExceptionGroup)
    assert isinstance(group, ra.ResilienceError)
    original, *failed = group.exceptions
    assert isinstance(original, ValueError)
    assert [str(e) for e in failed] == ["undo 2 failed", "undo 0 failed"]
    assert recorder.kinds() == ["compensation.failed", "compensation.ran", "compensation.failed"]
    assert {e.compensation for e in recorder.events} == {"Saga.undo"}
    assert all(e.policy == "order" for e in recorder.events)
    assert ra.context_of(failed[0])["compensation"] == "Saga.undo"  # type: ignore[index]


async def test_sync_and_async_callables_and_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    async def undo_async(a: int, *, b: int) -> None:
        await anyio.sleep(0)
        calls.append(("async", a, b))

    with pytest.raises(KeyError):
        async with ra.Transaction() as tx:
            tx.on_rollback(lambda: calls.append(("lambda",)))
            tx.on_rollback(undo_async, 1, b=2)
            raise KeyError("x")
    assert calls == [("async", 1, 2), ("lambda",)]


async def test_cancel_sweep_over_the_block() -> None:
    """Cancel after k seconds (k checkpoints of the block): completed steps undone once each."""
    for k in range(6):
        saga = Saga()
        completed = False
        with anyio.move_on_after(k + 0.5) as scope:
            async with ra.Transaction() as tx:
                await saga.run(tx)
            completed = True
        if completed:
            assert saga.undone == []
            assert saga.done == [0, 1, 2]
            assert k >= 3
            break
        assert scope.cancelled_caught
        assert saga.done == list(range(k))
        saga.check_compensated()
    else:
        pytest.fail("the sweep never reached the end of the block")


async def test_cancel_sweep_over_the_rollback_including_during_a_compensation() -> None:
    """The block fails at t=3; cancels at every point of the 3 s rollback cut nothing short."""
    for k in range(3, 8):
        saga = Saga()
        raised: BaseException | None = None
        with anyio.move_on_after(k + 0.5) as scope:
            try:
                async with ra.Transaction() as tx:
                    await saga.run(tx, fail_at_end=True)
            except ValueError as exc:
                raised = exc
        saga.check_compensated()
        assert saga.undone == [2, 1, 0]
        if k < 6:
            # The cancel arrived during the rollback: it is raised once the rollback is over.
            assert scope.cancelled_caught
            assert raised is None
        else:
            assert isinstance(raised, ValueError)


async def test_a_cancel_during_a_compensation_still_reports_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saga = Saga(fail_undo={1})
    recorder = Recorder()
    with hooks(recorder), anyio.move_on_after(4.5) as scope:
        async with ra.Transaction("order") as tx:
            await saga.run(tx, fail_at_end=True)
    assert scope.cancelled_caught
    saga.check_compensated()
    assert recorder.kinds() == ["compensation.ran", "compensation.failed", "compensation.ran"]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert str(failures[0].exc_info[1]) == "undo 1 failed"


async def test_double_cancel_during_the_rollback() -> None:
    """The block is cancelled at 2.5 s, the enclosing scope at 3.5 s, during the rollback."""
    saga = Saga()
    start = anyio.current_time()

    async def cancel_later(scope: anyio.CancelScope) -> None:
        await anyio.sleep(3.5)
        scope.cancel()

    with anyio.CancelScope() as outer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_later, outer)
            with anyio.move_on_after(2.5):
                async with ra.Transaction() as tx:
                    await saga.run(tx)
            pytest.fail("the second cancel was lost")  # pragma: no cover
    assert outer.cancelled_caught
    saga.check_compensated()
    assert saga.undone == [1, 0]
    assert anyio.current_time() - start == pytest.approx(4.5)


@asyncio_only
async def test_native_task_cancel_during_a_compensation_is_held_until_the_end() -> None:
    saga = Saga()

    async def body() -> None:
        async with ra.Transaction() as tx:
            await saga.run(tx)

    task = asyncio.create_task(body())
    await asyncio.sleep(2.5)
    task.cancel()  # the block is cancelled: the rollback starts
    await asyncio.sleep(0.5)
    task.cancel()  # again, in the middle of the first compensation
    with pytest.raises(asyncio.CancelledError):
        await task
    saga.check_compensated()
    assert saga.undone == [1, 0]
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_compensations_get_their_own_time_after_fail_after() -> None:
    seen: list[float] = []

    async def slow_undo() -> None:
        seen.append(ra.remaining())
        await anyio.sleep(10)  # far longer than what was left of the deadline
        seen.append(anyio.current_time())

    start = anyio.current_time()
    with pytest.raises(TimeoutError), anyio.fail_after(2):
        async with ra.Transaction() as tx:
            tx.on_rollback(slow_undo)
            await anyio.sleep(5)
    assert seen[0] == math.inf
    assert seen[1] - start == pytest.approx(12)


@asyncio_only
async def test_compensations_get_their_own_time_after_asyncio_timeout() -> None:
    done: list[float] = []

    async def slow_undo() -> None:
        await asyncio.sleep(10)
        done.append(anyio.current_time())

    start = anyio.current_time()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(2):
            async with ra.Transaction() as tx:
                tx.on_rollback(slow_undo)
                await asyncio.sleep(5)
    assert done == [pytest.approx(start + 12)]


async def test_compensations_get_their_own_time_after_ra_deadline() -> None:
    done: list[float] = []

    async def slow_undo() -> None:
        assert ra.remaining() == math.inf
        await anyio.sleep(10)
        done.append(anyio.current_time())

    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded), ra.deadline(2):
        async with ra.Transaction() as tx:
            tx.on_rollback(slow_undo)
            await anyio.sleep(5)
    assert len(done) == 1
    assert done[0] - start == pytest.approx(12)


async def test_compensations_run_in_the_transactions_error_context() -> None:
    seen: list[dict[str, object]] = []

    def undo() -> None:
        seen.append(dict(ra.current_context()))

    with ra.error_context(request="r-1"), pytest.raises(ValueError):
        async with ra.Transaction("order") as tx:
            with ra.error_context(step="charge"):
                tx.on_rollback(undo)
            raise ValueError("x")
    assert seen == [{"request": "r-1", "transaction": "order"}]


async def test_compensation_retry_runs_each_compensation_under_the_retry() -> None:
    attempts: list[int] = []

    async def flaky_undo() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("try again")

    retry = ra.Retry(attempts=3, backoff=ra.backoff.constant(1))
    with pytest.raises(ValueError):
        async with ra.Transaction(compensation_retry=retry) as tx:
            tx.on_rollback(flaky_undo)
            raise ValueError("x")
    assert len(attempts) == 3


async def test_nested_transactions() -> None:
    undone: list[str] = []
    async with ra.Transaction("outer") as outer:
        outer.on_rollback(undone.append, "a")
        with pytest.raises(KeyError):
            async with ra.Transaction("inner") as inner:
                inner.on_rollback(undone.append, "b")
                raise KeyError("inner fails")
        assert undone == ["b"]
    assert undone == ["b"]  # the outer one succeeded: "a" is dropped

    undone.clear()
    with pytest.raises(ValueError):
        async with ra.Transaction("outer") as outer:
            outer.on_rollback(undone.append, "a")
            async with ra.Transaction("inner") as inner:
                inner.on_rollback(undone.append, "b")
            outer.on_rollback(undone.append, "c")
            raise ValueError("outer fails")
    assert undone == ["c", "b", "a"]


async def test_bad_input_is_refused_and_nothing_registered_is_lost() -> None:
    with pytest.raises(TypeError, match="name"):
        ra.Transaction(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="journal"):
        ra.Transaction(journal="x.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="compensation_retry"):
        ra.Transaction(compensation_retry=ra_sync.Retry())  # type: ignore[arg-type]
    undone: list[int] = []
    with pytest.raises(ValueError):
        async with ra.Transaction() as tx:
            tx.on_rollback(undone.append, 1)
            with pytest.raises(TypeError, match="callable"):
                tx.on_rollback("not callable")  # type: ignore[arg-type]
            raise ValueError("x")
    assert undone == [1]
    with pytest.raises(RuntimeError, match="block"):
        tx.on_rollback(undone.append, 2)
    with pytest.raises(RuntimeError, match="already entered"):
        async with tx:
            pass


async def test_enlist_refuses_other_objects(anyio_backend: Any) -> None:
    async with ra.Transaction() as tx:
        if anyio_backend[0] == "trio":
            with pytest.raises(RuntimeError, match="asyncio"):
                await tx.enlist(object())
        else:
            with pytest.raises(TypeError, match="aiosqlite or asyncpg"):
                await tx.enlist(object())
