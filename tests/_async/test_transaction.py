"""Transaction on both flavours: compensations run once, in reverse, failures grouped; a
success drops them; a compensation retry."""

import pytest

from resilient_async.instrumentation import hooks

from ..helpers import Recorder
from ._backend import flavour as ra


async def test_compensations_run_once_in_reverse_and_failures_are_grouped() -> None:
    undone: list[int] = []
    recorder = Recorder()

    async def undo(step: int) -> None:
        undone.append(step)
        if step == 1:
            raise OSError("undo 1 failed")

    with hooks(recorder), pytest.raises(ra.CompensationError) as info:
        async with ra.Transaction("order") as tx:
            for step in range(3):
                tx.on_rollback(undo, step)
            raise ValueError("the block failed")
    assert undone == [2, 1, 0]
    original, failed = info.value.exceptions
    assert isinstance(original, ValueError)
    assert str(failed) == "undo 1 failed"
    assert recorder.kinds() == ["compensation.ran", "compensation.failed", "compensation.ran"]


async def test_success_drops_the_compensations() -> None:
    undone: list[int] = []

    async def undo(step: int) -> None:
        undone.append(step)

    async with ra.Transaction() as tx:
        tx.on_rollback(undo, 1)
    assert undone == []


async def test_a_compensation_is_retried_by_the_compensation_retry() -> None:
    attempts: list[int] = []

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 2:
            raise ConnectionError("again")

    retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(0))
    with pytest.raises(KeyError):
        async with ra.Transaction(compensation_retry=retry) as tx:
            tx.on_rollback(flaky)
            raise KeyError("x")
    assert len(attempts) == 2
