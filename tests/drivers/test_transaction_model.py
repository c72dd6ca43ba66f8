"""Invariant 12 over random sagas: any number of steps, failing compensations, nesting,
an error or a cancel at any time; on both backends, in virtual time."""

from __future__ import annotations

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient_async as ra

from ..helpers import BACKENDS, run_virtual


@settings(max_examples=40, deadline=None)
@given(
    backend=st.sampled_from(BACKENDS),
    steps=st.integers(0, 5),
    nested_from=st.integers(0, 5),
    failing=st.sets(st.integers(0, 4)),
    outcome=st.sampled_from(["success", "error", "cancel"]),
    cancel_at=st.floats(0.1, 12.0),
)
def test_completed_steps_are_compensated_once_in_reverse(
    backend: str,
    steps: int,
    nested_from: int,
    failing: set[int],
    outcome: str,
    cancel_at: float,
) -> None:
    done: list[int] = []
    undone: list[int] = []

    async def undo(step: int) -> None:
        await anyio.sleep(1)
        undone.append(step)
        if step in failing:
            raise OSError(f"undo {step}")

    async def step(tx: ra.Transaction, number: int) -> None:
        await anyio.sleep(1)
        done.append(number)
        tx.on_rollback(undo, number)

    async def saga() -> tuple[str, Exception | None]:
        with anyio.move_on_after(cancel_at if outcome == "cancel" else 1000) as scope:
            try:
                async with ra.Transaction("outer") as outer:
                    for number in range(min(steps, nested_from)):
                        await step(outer, number)
                    async with ra.Transaction("inner") as inner:
                        for number in range(nested_from, steps):
                            await step(inner, number)
                    if outcome == "error":
                        raise ValueError("the block failed")
            except Exception as exc:
                return "error", exc
        return ("cancelled" if scope.cancelled_caught else "ok"), None

    result, raised = run_virtual(backend, saga)
    assert done == list(range(len(done)))
    if result == "ok":
        assert outcome != "error"
        assert done == list(range(steps))
        assert undone == []
        return
    assert undone == list(reversed(done))  # exactly once each, newest first
    failed = [s for s in undone if s in failing]
    if result == "error":
        assert outcome == "error"
        if failed:
            assert isinstance(raised, ra.CompensationError)
            assert [str(e) for e in raised.exceptions[1:]] == [f"undo {s}" for s in failed]
        else:
            assert isinstance(raised, ValueError)
    else:
        assert outcome == "cancel"  # the cancellation propagated as it is
