"""Hedge: one result, losers cancelled and awaited, own context per attempt (invariant 11)."""

from __future__ import annotations

from contextvars import ContextVar

import anyio
import pytest
import trio.testing

import resilient_async as ra
from resilient_async._async.retry import RetryBudget
from resilient_async.context import context_of
from resilient_async.hedging import Hedge
from resilient_async.instrumentation import hooks

from ..helpers import Recorder

pytestmark = pytest.mark.anyio

_marker: ContextVar[str] = ContextVar("marker", default="caller")


class Dependency:
    """Answers each attempt after the scripted latency, or fails, and records its fate."""

    def __init__(self, *script: tuple[float, object]) -> None:
        self.script = list(script)
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []
        self.contexts: list[str] = []

    async def __call__(self) -> str:
        number = len(self.started) + 1
        self.started.append(number)
        latency, outcome = self.script[number - 1]
        self.contexts.append(_marker.get())
        _marker.set(f"attempt-{number}")
        try:
            await anyio.sleep(latency)
        except BaseException:
            self.cancelled.append(number)
            raise
        self.finished.append(number)
        if isinstance(outcome, BaseException):
            raise outcome
        return str(outcome)


async def test_fast_first_attempt_starts_no_hedge() -> None:
    dependency = Dependency((0.5, "first"))
    assert await Hedge(1).call(dependency) == "first"
    assert dependency.started == [1]


async def test_slow_first_attempt_is_hedged_and_the_loser_awaited() -> None:
    dependency = Dependency((10, "slow"), (1, "fast"))
    recorder = Recorder()
    start = anyio.current_time()
    with hooks(recorder):
        assert await Hedge(2, name="quotes").call(dependency) == "fast"
    assert anyio.current_time() - start == pytest.approx(3)
    assert dependency.finished == [2]
    assert dependency.cancelled == [1]  # cancelled and awaited before the call returned
    assert recorder.kinds() == ["hedge.started"]
    assert recorder.events[0].attempt == 2


async def test_matched_failure_starts_the_next_attempt_at_once() -> None:
    dependency = Dependency((1, ConnectionError("a")), (1, "b"))
    start = anyio.current_time()
    assert await Hedge(100).call(dependency) == "b"
    assert anyio.current_time() - start == pytest.approx(2)


async def test_unmatched_failure_is_final_and_cancels_the_others() -> None:
    dependency = Dependency((10, "slow"), (0.5, KeyError("bad request")), (1, "never"))
    with pytest.raises(KeyError):
        await Hedge(1, max_attempts=3).call(dependency)
    assert dependency.cancelled == [1]
    assert dependency.started == [1, 2]


async def test_every_attempt_failing_raises_the_last_to_fail() -> None:
    dependency = Dependency((5, ConnectionError("first")), (1, TimeoutError("second")))
    with pytest.raises(ConnectionError, match="first") as info:
        await Hedge(1, name="h").call(dependency)
    context = context_of(info.value)
    assert context is not None
    assert context["attempt"] == 1


async def test_caller_cancellation_cancels_and_awaits_every_attempt() -> None:
    dependency = Dependency((10, "a"), (10, "b"), (10, "c"))
    with anyio.move_on_after(5) as scope:
        await Hedge(1, max_attempts=3).call(dependency)
    assert scope.cancelled_caught
    assert sorted(dependency.cancelled) == [1, 2, 3]
    assert dependency.finished == []


async def test_each_attempt_runs_in_its_own_copy_of_the_context() -> None:
    dependency = Dependency((10, "a"), (10, "b"), (1, "c"))
    token = _marker.set("request-7")
    try:
        assert await Hedge(1, max_attempts=3).call(dependency) == "c"
        assert _marker.get() == "request-7"
    finally:
        _marker.reset(token)
    assert dependency.contexts == ["request-7"] * 3


async def test_deadline_applies_to_all_attempts_and_stops_new_ones() -> None:
    dependency = Dependency((10, "a"), (10, "b"), (10, "c"))
    with pytest.raises(ra.DeadlineExceeded):
        with ra.deadline(1.5):
            await Hedge(1, max_attempts=3).call(dependency)
    assert dependency.started == [1, 2]


async def test_budget_refusal_stops_hedges() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, ttl=10)
    dependency = Dependency((3, "only"))
    assert await Hedge(1, budget=budget).call(dependency) == "only"
    assert dependency.started == [1]


async def test_decorator_and_results_per_call_are_independent() -> None:
    hedge = Hedge(1)
    results: list[str] = []

    @hedge
    async def echo(value: str, latency: float) -> str:
        await anyio.sleep(latency)
        return value

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(lambda i=i: _collect(results, echo(str(i), 0.5)))
    assert sorted(results, key=int) == [str(i) for i in range(20)]


async def _collect(into: list[str], awaitable: object) -> None:
    into.append(await awaitable)  # type: ignore[misc]


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="delay must be >= 0"):
        Hedge(-1)
    with pytest.raises(ValueError, match="max_attempts must be >= 1"):
        Hedge(1, max_attempts=0)
    with pytest.raises(TypeError, match="max_attempts must be an int"):
        Hedge(1, max_attempts=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="budget must be a RetryBudget"):
        Hedge(1, budget=0.2)  # type: ignore[arg-type]


def plain_lookup(key: str) -> str:
    return f"value of {key}"


def plain_failure(key: str) -> str:
    raise ConnectionError(key)


async def test_a_sync_callable_is_refused_by_its_own_name() -> None:
    # Regression: the error named the hedge's internal lambda, and a sync function that
    # raised passed its own error through as if it had been awaited.
    hedge = Hedge(0.1, max_attempts=2)
    with pytest.raises(TypeError, match=r"Hedge\.call needs an async callable, but "
                       r"plain_lookup returned a value") as caught:  # fmt: skip
        await hedge.call(plain_lookup, "k")  # type: ignore[arg-type]
    assert "lambda" not in str(caught.value)
    with pytest.raises(TypeError, match=r"plain_failure is a sync function"):
        await hedge.call(plain_failure, "k")  # type: ignore[arg-type]


@pytest.mark.parametrize("signal", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_stop_signal_in_an_attempt_leaves_the_hedge_unwrapped(
    backend: str, signal: type[BaseException]
) -> None:
    # Issue #13 item 6: trio's nursery wrapped it in a BaseExceptionGroup. Run outside the
    # test runner: on asyncio the signal also stops the event loop, as it should.
    raised = signal("stop")

    async def attempt() -> str:
        await anyio.sleep(0.01)
        raise raised

    async def main() -> None:
        await Hedge(1.0, max_attempts=2).call(attempt)

    options = {"clock": trio.testing.MockClock(autojump_threshold=0)} if backend == "trio" else {}
    with pytest.raises(signal) as caught:
        anyio.run(main, backend=backend, backend_options=options)
    assert caught.value is raised
    assert type(caught.value) is signal
