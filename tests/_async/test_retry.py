"""Retry on both flavours: the loop, stop reasons, deadlines, Retry-After, the decorator.

Written once; runs on asyncio and trio here and, generated, on the sync twin (virtual time on
every side: see `_backend.py`).
"""

import inspect
from collections.abc import Callable

import pytest

from resilient_async import backoff
from resilient_async._async.retry import Retry, RetryBudget, retry
from resilient_async._async.timeout import deadline
from resilient_async.context import context_of
from resilient_async.instrumentation import hooks
from resilient_async.testing import set_testing

from ..helpers import Recorder
from ._backend import now
from .scripted import Flaky

NOTE_PREFIX = "resilient_async context: "


class Throttled(Exception):
    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"slow down for {retry_after}s")
        self.retry_after = retry_after


def fields_of(exc: BaseException) -> dict[str, object]:
    captured = context_of(exc)
    assert captured is not None
    return dict(captured)


async def run_block(policy: Retry, body: Callable[[int], object]) -> object:
    """Run `body(attempt.number)` in a `Retry.attempts()` loop; return its result."""
    async for attempt in policy.attempts():
        with attempt:
            return body(attempt.number)
    raise AssertionError("the attempts loop ended without a result")


def raise_(error: BaseException) -> None:
    raise error


# --- the loop ---------------------------------------------------------------------------------


async def test_retries_until_success() -> None:
    dependency = Flaky(ConnectionError, ConnectionError, "ok")
    assert await Retry(attempts=3, backoff=backoff.constant(2)).call(dependency, 1, k=2) == "ok"
    assert dependency.calls == 3
    assert dependency.gaps() == [pytest.approx(2.0), pytest.approx(2.0)]


async def test_last_error_propagates_with_context_events_and_one_note() -> None:
    dependency = Flaky(ConnectionError)
    recorder = Recorder()
    with hooks(recorder), pytest.raises(ConnectionError) as info:
        await Retry(attempts=3, backoff=backoff.constant(1), name="s").call(dependency)
    assert info.value is dependency.raised[-1]
    assert fields_of(info.value) == {"attempt": 3, "policy": "s", "stop_reason": "attempts"}
    assert [n for n in info.value.__notes__ if n.startswith(NOTE_PREFIX)] == [
        f"{NOTE_PREFIX}attempt=3, policy='s', stop_reason='attempts'"
    ]
    assert recorder.kinds() == [
        "retry.attempt_failed",
        "retry.scheduled",
        "retry.attempt_failed",
        "retry.scheduled",
        "retry.attempt_failed",
        "retry.gave_up",
    ]
    assert [(e.attempt, e.delay) for e in recorder.of("retry.scheduled")] == [(1, 1.0), (2, 1.0)]


async def test_not_retryable_error_propagates_at_once() -> None:
    dependency = Flaky(KeyError, "ok")
    start = now()
    with pytest.raises(KeyError) as info:
        await Retry(attempts=5).call(dependency)
    assert dependency.calls == 1
    assert fields_of(info.value)["stop_reason"] == "not_retryable"
    assert now() == start


@pytest.mark.parametrize("signal", [KeyboardInterrupt, SystemExit])
async def test_stop_signals_pass_through(signal: type[BaseException]) -> None:
    dependency = Flaky(signal, "ok")
    with pytest.raises(signal) as info:
        await Retry(attempts=5, on=lambda exc: True).call(dependency)
    assert dependency.calls == 1
    assert info.value is dependency.raised[0]
    assert context_of(info.value) is None
    with pytest.raises(signal):
        await run_block(Retry(attempts=5, on=lambda exc: True), lambda n: raise_(signal()))


async def test_attempts_loop() -> None:
    numbers: list[int] = []
    start = now()
    async for attempt in Retry(attempts=5, backoff=backoff.constant(1)).attempts():
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise ConnectionError("reset")
    assert numbers == [1, 2, 3]
    assert now() - start == pytest.approx(2.0)
    policy = Retry(attempts=2, backoff=backoff.constant(0))
    with pytest.raises(ConnectionError) as info:
        await run_block(policy, lambda n: raise_(ConnectionError(n)))
    assert info.value.args == (2,)


async def test_testing_mode_skips_sleeps() -> None:
    dependency = Flaky(ConnectionError)
    start = now()
    with set_testing(True, attempts=3), pytest.raises(ConnectionError):
        await Retry(attempts=10, backoff=backoff.constant(60)).call(dependency)
    assert dependency.calls == 3
    assert now() == start


# --- deadlines --------------------------------------------------------------------------------


async def test_wait_that_would_cross_the_timeout_raises_at_once() -> None:
    dependency = Flaky(ConnectionError)
    start = now()
    with pytest.raises(ConnectionError) as info:
        await Retry(attempts=10, backoff=backoff.constant(4), timeout=10).call(dependency)
    assert dependency.calls == 3  # at 0, 4, 8; a wait at 8 would end at 12
    assert now() - start == pytest.approx(8.0)
    assert fields_of(info.value)["stop_reason"] == "deadline"


async def test_enclosing_deadline_bounds_the_waits() -> None:
    dependency = Flaky(ConnectionError)
    start = now()
    with pytest.raises(ConnectionError), deadline(5):
        await Retry(attempts=10, backoff=backoff.constant(2)).call(dependency)
    assert now() - start == pytest.approx(4.0)


async def test_attempts_loop_respects_its_timeout() -> None:
    policy = Retry(attempts=10, backoff=backoff.constant(3), timeout=5)
    start = now()
    with pytest.raises(ConnectionError) as info:
        await run_block(policy, lambda n: raise_(ConnectionError(n)))
    assert now() - start == pytest.approx(3.0)
    assert fields_of(info.value)["stop_reason"] == "deadline"


async def test_retry_after_is_honoured_in_full() -> None:
    for hint, schedule in [
        (5, backoff.exponential(0.1, max=10)),
        (50, backoff.exponential(0.1, max=10)),
        (50, backoff.constant(1)),
    ]:
        dependency = Flaky(Throttled(hint), "ok")
        assert await Retry(backoff=schedule).call(dependency) == "ok"
        assert dependency.gaps() == [pytest.approx(hint)]
    start = now()
    with pytest.raises(Throttled) as info:
        await Retry().call(Flaky(Throttled(61), "ok"))
    assert (context_of(info.value) or {})["stop_reason"] == "retry_after"
    with pytest.raises(Throttled) as info:
        await Retry(timeout=10).call(Flaky(Throttled(20), "ok"))
    assert (context_of(info.value) or {})["stop_reason"] == "retry_after"
    assert now() == start


async def test_nested_retries_share_the_budget() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, ttl=10.0)  # two retries
    dependency = Flaky(ConnectionError)
    inner = Retry(attempts=10, backoff=backoff.constant(0.1))

    async def nested() -> object:
        return await inner.call(dependency)

    with pytest.raises(ConnectionError) as info:
        await Retry(attempts=10, backoff=backoff.constant(0.1), budget=budget).call(nested)
    assert dependency.calls == 3
    assert fields_of(info.value)["stop_reason"] == "budget"


# --- the decorator ----------------------------------------------------------------------------


async def test_decorator_keeps_metadata() -> None:
    @retry(attempts=2, backoff=backoff.constant(0))
    async def load(path: str, *, fresh: bool = False) -> str:
        """Load a path."""
        return path

    assert load.__name__ == "load"
    assert load.__doc__ == "Load a path."
    assert inspect.signature(load) == inspect.signature(load.__wrapped__)  # type: ignore[attr-defined]
    assert await load("p") == "p"


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"attempts must be >= 1, got 0"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        retry(timeout=-1)
