"""Retry on asyncio and trio, in virtual time (RELIABILITY.md invariants 1 and 3, bug classes 3,
8 and 12): stop reasons, deadlines, Retry-After, events, error context, cancellation, the
`attempts()` form, concurrency, decorator metadata and typing, bad input.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import anyio
import anyio.lowlevel
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import resilient_async as ra
from resilient_async import backoff
from resilient_async._async import _backend
from resilient_async._async.retry import Retry, RetryBudget, retry
from resilient_async._async.timeout import Timeout, deadline
from resilient_async.classify import ErrorClass
from resilient_async.context import context_of, error_context
from resilient_async.instrumentation import hooks
from resilient_async.testing import set_testing

from .._async.scripted import Flaky
from ..helpers import BACKENDS, Recorder, asyncio_only, run_virtual

pytestmark = pytest.mark.anyio

NOTE_PREFIX = "resilient_async context: "


class Throttled(Exception):
    """An error carrying a server's hint, classified THROTTLED by the default rules (429)."""

    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"slow down for {retry_after}s")
        self.retry_after = retry_after


def _active_budgets() -> tuple[RetryBudget, ...]:
    from resilient_async._async.retry import _ACTIVE_BUDGETS

    return _ACTIVE_BUDGETS.get()


def notes_of(exc: BaseException) -> list[str]:
    return [n for n in getattr(exc, "__notes__", []) if n.startswith(NOTE_PREFIX)]


def fields_of(exc: BaseException) -> dict[str, object]:
    captured = context_of(exc)
    assert captured is not None, f"no context on {exc!r}"
    return dict(captured)


# --- the basic loop ---------------------------------------------------------------------------


async def test_success_at_first_try_calls_once_and_emits_nothing() -> None:
    dependency = Flaky("ok")
    recorder = Recorder()
    start = anyio.current_time()
    with hooks(recorder):
        assert await Retry().call(dependency, 1, key="k") == "ok"
    assert dependency.calls == 1
    assert recorder.events == []
    assert anyio.current_time() == start


async def test_retries_until_success_and_passes_arguments() -> None:
    seen: list[tuple[object, ...]] = []

    async def add(a: int, b: int = 0) -> int:
        seen.append((a, b))
        if len(seen) < 3:
            raise ConnectionError("reset")
        return a + b

    assert await Retry(attempts=3, backoff=backoff.constant(1)).call(add, 2, b=5) == 7
    assert seen == [(2, 5)] * 3


async def test_last_real_exception_propagates_unwrapped_with_context() -> None:
    dependency = Flaky(ConnectionError)
    with pytest.raises(ConnectionError) as info:
        await Retry(attempts=4, backoff=backoff.constant(0.5), name="db").call(dependency)
    assert dependency.calls == 4
    assert info.value is dependency.raised[-1]
    assert fields_of(info.value) == {"attempt": 4, "policy": "db", "stop_reason": "attempts"}
    assert notes_of(info.value) == [f"{NOTE_PREFIX}attempt=4, policy='db', stop_reason='attempts'"]
    assert len(info.value.__notes__) == 1


async def test_context_keeps_the_callers_fields_and_the_policy_defaults_to_retry() -> None:
    dependency = Flaky(ConnectionError)
    with pytest.raises(ConnectionError) as info, error_context(order=7):
        await Retry(attempts=2, backoff=backoff.constant(0)).call(dependency)
    assert fields_of(info.value) == {
        "order": 7,
        "attempt": 2,
        "policy": "Retry",
        "stop_reason": "attempts",
    }
    assert len(notes_of(info.value)) == 1


async def test_fields_captured_at_the_raise_site_win() -> None:
    async def failing() -> None:
        with error_context(attempt="inner", step="charge"):
            raise ConnectionError("reset")

    with pytest.raises(ConnectionError) as info:
        await Retry(attempts=2, backoff=backoff.constant(0)).call(failing)
    fields = fields_of(info.value)
    assert fields["attempt"] == "inner"
    assert fields["step"] == "charge"
    assert fields["stop_reason"] == "attempts"
    assert len(notes_of(info.value)) == 1


async def test_attempts_one_means_no_retry() -> None:
    dependency = Flaky(ConnectionError)
    with pytest.raises(ConnectionError) as info:
        await Retry(attempts=1).call(dependency)
    assert dependency.calls == 1
    assert fields_of(info.value)["stop_reason"] == "attempts"


async def test_each_raise_of_the_last_error_happens_once() -> None:
    """Bug class 12: the propagated error's traceback does not grow with the attempts."""
    few, many = Flaky(ConnectionError), Flaky(ConnectionError)
    depth: list[int] = []
    for dependency, attempts in ((few, 2), (many, 30)):
        with pytest.raises(ConnectionError) as info:
            await Retry(attempts=attempts, backoff=backoff.constant(0)).call(dependency)
        depth.append(len(list(_walk(info.value.__traceback__))))
    assert depth[0] == depth[1]


def _walk(tb: Any) -> Iterator[Any]:
    while tb is not None:
        yield tb
        tb = tb.tb_next


# --- what is retried --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionError, True),  # TRANSIENT
        (TimeoutError, True),  # TIMEOUT
        (ra.DeadlineExceeded, True),  # TIMEOUT: a per-attempt Timeout inside the loop
        (lambda _: ra.RateLimitedError("api", 1.0), True),  # THROTTLED
        (ValueError, False),  # PERMANENT
        (KeyError, False),  # PERMANENT
        (RuntimeError, False),  # UNKNOWN
    ],
)
async def test_default_on_retries_transient_throttled_and_timeouts(
    error: Any, retried: bool
) -> None:
    async def failing() -> None:
        raise (error(None) if error is ra.DeadlineExceeded else error("x"))

    with pytest.raises(Exception) as info:
        await Retry(attempts=3, backoff=backoff.constant(0)).call(failing)
    expected = "attempts" if retried else "not_retryable"
    assert fields_of(info.value)["stop_reason"] == expected
    assert fields_of(info.value)["attempt"] == (3 if retried else 1)


@pytest.mark.parametrize(
    "on",
    [
        KeyError,
        (ValueError, KeyError),
        lambda exc: isinstance(exc, KeyError),
        ErrorClass.PERMANENT,
        {ErrorClass.PERMANENT, ErrorClass.TRANSIENT},
    ],
)
async def test_on_accepts_every_kind_of_spec(on: Any) -> None:
    dependency = Flaky(KeyError, KeyError, "ok")
    assert await Retry(attempts=3, on=on, backoff=backoff.constant(0)).call(dependency) == "ok"
    assert dependency.calls == 3
    other = Flaky(OSError)
    with pytest.raises(OSError) as info:
        await Retry(attempts=3, on=on, backoff=backoff.constant(0)).call(other)
    assert other.calls == 1 or on == {ErrorClass.PERMANENT, ErrorClass.TRANSIENT}
    assert fields_of(info.value)["stop_reason"] in {"not_retryable", "attempts"}


async def test_not_retryable_error_propagates_at_once() -> None:
    dependency = Flaky(ValueError, "ok")
    recorder = Recorder()
    with hooks(recorder), pytest.raises(ValueError) as info:
        await Retry(attempts=5, name="p").call(dependency)
    assert dependency.calls == 1
    assert fields_of(info.value) == {"attempt": 1, "policy": "p", "stop_reason": "not_retryable"}
    assert recorder.kinds() == ["retry.attempt_failed", "retry.gave_up"]


# --- cancellation and stop signals (invariant 1, bug class 3) ---------------------------------


@pytest.mark.parametrize("signal", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("form", ["call", "attempts"])
async def test_stop_signals_pass_through_unchanged(signal: type[BaseException], form: str) -> None:
    dependency = Flaky(signal, "ok")
    policy = Retry(attempts=5, on=lambda exc: True, backoff=backoff.constant(0))
    recorder = Recorder()
    with hooks(recorder), pytest.raises(signal) as info:
        await run_form(policy, dependency, form)
    assert dependency.calls == 1
    assert info.value is dependency.raised[0]
    assert context_of(info.value) is None
    assert not hasattr(info.value, "__notes__")
    assert recorder.events == []


class CancelAtCheckpoint:
    """Requests a cancel of `scope` just before checkpoint number `k` of the retry loop.

    The checkpoints are those of the dependency and of the loop's waits (`_backend.sleep` and
    `_backend.yield_now` are patched to count them).
    """

    def __init__(self, k: int, dependency: Flaky) -> None:
        self.k = k
        self.count = 0
        self.dependency = dependency
        self.scope = anyio.CancelScope()
        self.calls_at_cancel: int | None = None
        self.events_at_cancel: int | None = None
        self.recorder = Recorder()

    def before_checkpoint(self) -> None:
        if self.count == self.k:
            self.calls_at_cancel = self.dependency.calls
            self.events_at_cancel = len(self.recorder.events)
            self.scope.cancel()
        self.count += 1


@pytest.fixture
def patched_checkpoints(monkeypatch: pytest.MonkeyPatch) -> list[CancelAtCheckpoint]:
    """Route the loop's waits through the current sweep step's counter."""
    current: list[CancelAtCheckpoint] = []
    real_sleep, real_yield = _backend.sleep, _backend.yield_now

    async def sleep(seconds: float) -> None:
        current[-1].before_checkpoint()
        await real_sleep(seconds)

    async def yield_now() -> None:
        current[-1].before_checkpoint()
        await real_yield()

    monkeypatch.setattr(_backend, "sleep", sleep)
    monkeypatch.setattr(_backend, "yield_now", yield_now)
    return current


async def run_form(policy: Retry, fn: Callable[[], Awaitable[object]], form: str) -> object:
    if form == "call":
        return await policy.call(fn)
    if form == "decorator":
        return await policy(fn)()
    async for attempt in policy.attempts():
        with attempt:
            return await fn()
    raise AssertionError("the attempts loop ended without a result")


@pytest.mark.parametrize("form", ["call", "decorator", "attempts"])
@pytest.mark.parametrize("timeout", [None, 100.0])
@pytest.mark.parametrize("wait", [0.0, 1.0])
async def test_cancel_sweep_cancellation_is_never_retried(
    patched_checkpoints: list[CancelAtCheckpoint], form: str, timeout: float | None, wait: float
) -> None:
    completed_without_cancel = False
    for k in range(100):
        dependency = Flaky(ConnectionError, ConnectionError, ConnectionError, "ok")
        sweep = CancelAtCheckpoint(k, dependency)
        patched_checkpoints.append(sweep)

        async def attempt_body(
            sweep: CancelAtCheckpoint = sweep, dependency: Flaky = dependency
        ) -> object:
            sweep.before_checkpoint()
            await anyio.sleep(0.5)
            return await dependency()

        policy = Retry(attempts=5, backoff=backoff.constant(wait), timeout=timeout)
        escaped: list[BaseException] = []
        result: list[object] = []
        with hooks(sweep.recorder), sweep.scope:
            try:
                result.append(await run_form(policy, attempt_body, form))
            except BaseException as exc:
                escaped.append(exc)
                raise
        if sweep.calls_at_cancel is None:
            assert result == ["ok"]
            assert dependency.calls == 4
            completed_without_cancel = True
            break
        # The cancel was requested: it propagated as itself, and no attempt started after it.
        assert sweep.scope.cancelled_caught, f"k={k}: the cancellation was swallowed"
        assert result == []
        assert len(escaped) == 1
        assert not isinstance(escaped[0], Exception), f"k={k}: replaced by {escaped[0]!r}"
        assert context_of(escaped[0]) is None
        assert dependency.calls == sweep.calls_at_cancel, f"k={k}: retried after the cancel"
        late = sweep.recorder.events[sweep.events_at_cancel :]
        assert late == [], f"k={k}: events after the cancel: {late}"
    assert completed_without_cancel, "the sweep never reached the end of the call"


@asyncio_only
async def test_native_task_cancel_is_never_retried() -> None:
    for timeout in (None, 100.0):
        dependency = Flaky(ConnectionError, duration=1.0)
        policy = Retry(attempts=100, backoff=backoff.constant(1), timeout=timeout)
        task = asyncio.get_running_loop().create_task(policy.call(dependency))
        await asyncio.sleep(3.5)  # inside the second attempt
        calls = dependency.calls
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        await asyncio.sleep(10)
        assert dependency.calls == calls


@asyncio_only
async def test_native_double_cancel_during_a_wait() -> None:
    dependency = Flaky(ConnectionError)
    policy = Retry(attempts=100, backoff=backoff.constant(1))
    task = asyncio.get_running_loop().create_task(policy.call(dependency))
    await asyncio.sleep(0.5)  # in the first wait
    task.cancel()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert dependency.calls == 1


# --- deadlines (invariant 3: no sleep crosses the effective deadline) -------------------------


async def test_timeout_expiring_during_an_attempt_raises_deadline_exceeded() -> None:
    dependency = Flaky(ConnectionError, duration=3.0)
    recorder = Recorder()
    start = anyio.current_time()
    with hooks(recorder), pytest.raises(ra.DeadlineExceeded) as info:
        await Retry(attempts=10, backoff=backoff.constant(1), timeout=10, name="t").call(dependency)
    assert anyio.current_time() - start == pytest.approx(10)
    assert dependency.calls == 3  # attempts at 0-3, 4-7, 8-(cancelled at 10)
    assert info.value.timeout == 10
    assert fields_of(info.value) == {"attempt": 3, "policy": "t", "stop_reason": "deadline"}
    assert len(notes_of(info.value)) == 1
    assert recorder.kinds()[-1] == "retry.gave_up"
    assert recorder.events[-1].stop_reason == "deadline"
    assert recorder.events[-1].exception is info.value


async def test_wait_that_would_cross_the_timeout_raises_the_last_error_at_once() -> None:
    dependency = Flaky(ConnectionError)
    start = anyio.current_time()
    with pytest.raises(ConnectionError) as info:
        await Retry(attempts=10, backoff=backoff.constant(4), timeout=10).call(dependency)
    assert anyio.current_time() - start == pytest.approx(8)  # attempts at 0, 4, 8
    assert info.value is dependency.raised[-1]
    assert fields_of(info.value) == {"attempt": 3, "policy": "Retry", "stop_reason": "deadline"}


async def test_enclosing_deadline_bounds_the_waits() -> None:
    dependency = Flaky(ConnectionError)
    start = anyio.current_time()
    with pytest.raises(ConnectionError) as info, deadline(5):
        await Retry(attempts=10, backoff=backoff.constant(2)).call(dependency)
    assert anyio.current_time() - start == pytest.approx(4)  # a wait at 4 would end at 6
    assert fields_of(info.value)["stop_reason"] == "deadline"


async def test_wait_ending_exactly_at_the_deadline_is_not_made() -> None:
    dependency = Flaky(ConnectionError)
    start = anyio.current_time()
    with pytest.raises(ConnectionError):
        await Retry(attempts=10, backoff=backoff.constant(5), timeout=10).call(dependency)
    assert anyio.current_time() - start == pytest.approx(5)
    assert dependency.calls == 2


async def test_enclosing_deadline_expiring_in_an_attempt_is_the_enclosing_scopes() -> None:
    dependency = Flaky(ConnectionError, duration=3.0)
    with pytest.raises(ra.DeadlineExceeded) as info, deadline(4):
        await Retry(attempts=10, backoff=backoff.constant(0), timeout=100).call(dependency)
    assert info.value.timeout == 4  # raised by the enclosing scope, not the retry's
    assert "stop_reason" not in (context_of(info.value) or {})


async def test_per_attempt_timeout_inside_the_loop_is_retried() -> None:
    dependency = Flaky("ok", duration=5.0)
    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded) as info:
        await Retry(attempts=3, backoff=backoff.constant(1)).call(Timeout(2).call, dependency)
    assert dependency.calls == 3
    assert anyio.current_time() - start == pytest.approx(2 + 1 + 2 + 1 + 2)
    assert fields_of(info.value)["stop_reason"] == "attempts"


async def test_zero_timeout() -> None:
    with pytest.raises(ra.DeadlineExceeded):
        await Retry(timeout=0).call(Flaky("ok", duration=1.0))
    assert await Retry(timeout=0).call(Flaky("ok")) == "ok"  # no checkpoint: it finishes


# --- Retry-After ------------------------------------------------------------------------------


async def test_retry_after_hint_raises_the_wait() -> None:
    dependency = Flaky(Throttled(5), "ok")
    recorder = Recorder()
    start = anyio.current_time()
    with hooks(recorder):
        await Retry(backoff=backoff.exponential(0.1, max=10)).call(dependency)
    assert anyio.current_time() - start == pytest.approx(5)
    assert [e.delay for e in recorder.of("retry.scheduled")] == [5.0]


async def test_retry_after_hint_is_honoured_in_full_past_the_backoff_max() -> None:
    # Regression (issue 12, defect 6): a 60 s hint was shortened to the backoff's 10 s max.
    dependency = Flaky(Throttled(60), "ok")
    start = anyio.current_time()
    await Retry(backoff=backoff.exponential(0.1, max=10)).call(dependency)
    assert anyio.current_time() - start == pytest.approx(60)
    assert dependency.calls == 2


async def test_a_hint_longer_than_max_retry_after_gives_up_at_once() -> None:
    dependency = Flaky(Throttled(61), "ok")
    start = anyio.current_time()
    with pytest.raises(Throttled) as info:
        await Retry().call(dependency)
    assert anyio.current_time() == start
    assert dependency.calls == 1
    assert fields_of(info.value)["stop_reason"] == "retry_after"
    relaxed = Flaky(Throttled(100), "ok")
    await Retry(max_retry_after=timedelta(minutes=2)).call(relaxed)
    assert anyio.current_time() - start == pytest.approx(100)


async def test_retry_after_hint_shorter_than_the_backoff_changes_nothing() -> None:
    dependency = Flaky(Throttled(1), "ok")
    start = anyio.current_time()
    await Retry(backoff=backoff.constant(3)).call(dependency)
    assert anyio.current_time() - start == pytest.approx(3)


async def test_a_hint_crossing_the_deadline_gives_up_at_once() -> None:
    dependency = Flaky(Throttled(30), "ok")
    start = anyio.current_time()
    await Retry(backoff=backoff.constant(1)).call(dependency)
    assert anyio.current_time() - start == pytest.approx(30)
    capped = Flaky(Throttled(30), "ok")
    with pytest.raises(Throttled) as info:
        await Retry(backoff=backoff.constant(1), timeout=20).call(capped)
    assert capped.calls == 1  # the hinted wait would cross the deadline: no wait at all
    assert fields_of(info.value)["stop_reason"] == "retry_after"


async def test_retry_after_header_on_an_http_error() -> None:
    class Response:
        status_code = 503
        headers: ClassVar[dict[str, str]] = {"Retry-After": "7"}

    class HTTPError(Exception):
        response = Response()

    dependency = Flaky(HTTPError, "ok")
    start = anyio.current_time()
    await Retry(backoff=backoff.exponential(0.1, max=60)).call(dependency)
    assert anyio.current_time() - start == pytest.approx(7)


# --- events -----------------------------------------------------------------------------------


async def test_events_have_the_documented_fields_in_order() -> None:
    dependency = Flaky(ConnectionError, ConnectionError, ConnectionError)
    recorder = Recorder()
    times: list[float] = []

    def clock(event: Any) -> None:
        times.append(anyio.current_time())

    start = anyio.current_time()
    with hooks(recorder, clock), pytest.raises(ConnectionError):
        await Retry(attempts=3, backoff=backoff.constant(2), name="api").call(dependency)
    assert recorder.kinds() == [
        "retry.attempt_failed",
        "retry.scheduled",
        "retry.attempt_failed",
        "retry.scheduled",
        "retry.attempt_failed",
        "retry.gave_up",
    ]
    assert {e.policy for e in recorder.events} == {"api"}
    failed = recorder.of("retry.attempt_failed")
    assert [e.attempt for e in failed] == [1, 2, 3]
    assert [e.exception for e in failed] == dependency.raised
    scheduled = recorder.of("retry.scheduled")
    assert [(e.attempt, e.delay) for e in scheduled] == [(1, 2.0), (2, 2.0)]
    assert [e.exception for e in scheduled] == dependency.raised[:2]
    # Each retry.scheduled fires before its wait.
    assert [t - start for t in times] == pytest.approx([0, 0, 2, 2, 4, 4])
    [gave_up] = recorder.of("retry.gave_up")
    assert (gave_up.attempt, gave_up.stop_reason) == (3, "attempts")
    assert gave_up.exception is dependency.raised[-1]


async def test_event_context_is_the_callers_context() -> None:
    recorder = Recorder()
    with hooks(recorder), error_context(request="r1"), pytest.raises(ConnectionError):
        await Retry(attempts=2, backoff=backoff.constant(0)).call(Flaky(ConnectionError))
    assert all(e.context["request"] == "r1" for e in recorder.events)


async def test_a_failing_hook_never_breaks_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("hook bug")

    dependency = Flaky(ConnectionError, "ok")
    with hooks(broken):
        assert await Retry(backoff=backoff.constant(0)).call(dependency) == "ok"
    assert "hook" in caplog.text


# --- testing mode -----------------------------------------------------------------------------


async def test_testing_mode_skips_waits_and_caps_attempts() -> None:
    dependency = Flaky(ConnectionError)
    recorder = Recorder()
    start = anyio.current_time()
    with set_testing(True, attempts=2), hooks(recorder), pytest.raises(ConnectionError):
        await Retry(attempts=10, backoff=backoff.constant(60)).call(dependency)
    assert dependency.calls == 2
    assert anyio.current_time() == start
    assert [e.delay for e in recorder.of("retry.scheduled")] == [0.0]
    with set_testing(True):
        other = Flaky(ConnectionError)
        with pytest.raises(ConnectionError):
            await Retry(attempts=4, backoff=backoff.constant(60)).call(other)
        assert other.calls == 4
    assert anyio.current_time() == start


@pytest.mark.real_time  # a loop that never idles never moves a virtual clock
async def test_testing_mode_still_lets_cancellation_land_between_attempts() -> None:
    dependency = Flaky(ConnectionError)  # never awaits: only the loop itself checkpoints
    scope = anyio.CancelScope()

    async def cancel_soon() -> None:
        for _ in range(50):
            await anyio.lowlevel.checkpoint()
        scope.cancel()

    # Virtual time cannot move while a task is always ready, so the cancel comes from a task.
    with set_testing(True):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_soon)
            with scope:
                await Retry(attempts=10**9, backoff=backoff.constant(60)).call(dependency)
    assert scope.cancelled_caught
    assert 1 < dependency.calls < 10**9


# --- the attempts() form ----------------------------------------------------------------------


async def test_attempts_loop_retries_a_block() -> None:
    numbers: list[int] = []
    start = anyio.current_time()
    async for attempt in Retry(attempts=5, backoff=backoff.constant(1)).attempts():
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise ConnectionError("reset")
    assert numbers == [1, 2, 3]
    assert anyio.current_time() - start == pytest.approx(2)


async def test_attempts_loop_stops_with_the_error_out_of_the_with_block() -> None:
    raised: list[BaseException] = []
    seen_after_block: list[int] = []

    async def loop() -> None:
        async for attempt in Retry(attempts=3, backoff=backoff.constant(0), name="b").attempts():
            with attempt:
                raised.append(ConnectionError(attempt.number))
                raise raised[-1]
            seen_after_block.append(attempt.number)  # runs after a swallowed failure

    with pytest.raises(ConnectionError) as info:
        await loop()
    assert info.value is raised[-1]
    assert len(raised) == 3
    assert seen_after_block == [1, 2]
    assert fields_of(info.value) == {"attempt": 3, "policy": "b", "stop_reason": "attempts"}


async def test_attempts_loop_not_retryable_and_events() -> None:
    recorder = Recorder()

    async def loop() -> None:
        async for attempt in Retry(attempts=3).attempts():
            with attempt:
                raise ValueError("bad")

    with hooks(recorder), pytest.raises(ValueError) as info:
        await loop()
    assert fields_of(info.value)["stop_reason"] == "not_retryable"
    assert recorder.kinds() == ["retry.attempt_failed", "retry.gave_up"]


async def test_attempts_loop_timeout_during_an_attempt() -> None:
    numbers: list[int] = []

    async def loop() -> None:
        async for attempt in Retry(attempts=10, backoff=backoff.constant(1), timeout=5).attempts():
            with attempt:
                numbers.append(attempt.number)
                await anyio.sleep(2)
                raise ConnectionError("reset")

    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded) as info:
        await loop()
    assert anyio.current_time() - start == pytest.approx(5)
    assert numbers == [1, 2]
    assert fields_of(info.value) == {"attempt": 2, "policy": "Retry", "stop_reason": "deadline"}


async def test_attempts_loop_wait_crossing_the_deadline() -> None:
    async def loop() -> None:
        async for attempt in Retry(attempts=10, backoff=backoff.constant(3), timeout=5).attempts():
            with attempt:
                raise ConnectionError(attempt.number)

    start = anyio.current_time()
    with pytest.raises(ConnectionError) as info:
        await loop()
    assert anyio.current_time() - start == pytest.approx(3)
    assert fields_of(info.value)["stop_reason"] == "deadline"


async def test_attempts_misuse_is_reported() -> None:
    iterator = Retry().attempts()
    attempt = await iterator.__anext__()
    with pytest.raises(RuntimeError, match="never entered"):
        await iterator.__anext__()
    with attempt:
        pass
    with pytest.raises(RuntimeError, match="only once"), attempt:
        pass
    with pytest.raises(StopAsyncIteration):
        await iterator.__anext__()
    with pytest.raises(StopAsyncIteration):
        await iterator.__anext__()
    assert repr(attempt) == "<Attempt 1>"


async def test_breaking_out_of_an_attempts_loop_leaves_nothing_behind() -> None:
    budget = RetryBudget(0.0, 1.0)
    async for attempt in Retry(timeout=5, budget=budget).attempts():
        with attempt:
            raise ConnectionError("reset")
        break
    assert budget.available() == pytest.approx(9.0)  # one retry was granted, none made
    assert ra.current_deadline() == math.inf
    assert _active_budgets() == ()
    await anyio.sleep(10)  # the loop's deadline is not armed any more: no cancel arrives


# --- per-call state: 1000 concurrent calls with independent fault scripts ---------------------


async def test_thousand_concurrent_calls_share_one_retry_without_sharing_state() -> None:
    policy = Retry(attempts=4, backoff=backoff.exponential(0.05, max=0.5))
    recorder = Recorder()
    results: dict[int, object] = {}
    errors: dict[int, BaseException] = {}
    dependencies: dict[int, Flaky] = {}

    async def caller(i: int) -> None:
        failures = i % 6  # 0..3 succeed, 4 and 5 run out of attempts
        dependency = Flaky(*([ConnectionError] * failures), i, duration=(i % 7) * 0.01)
        dependencies[i] = dependency
        with error_context(task=i):
            try:
                if i % 2:
                    results[i] = await policy.call(dependency)
                else:
                    results[i] = await run_form(policy, dependency, "attempts")
            except ConnectionError as exc:
                errors[i] = exc

    with hooks(recorder):
        async with anyio.create_task_group() as tg:
            for i in range(1000):
                tg.start_soon(caller, i)

    for i in range(1000):
        failures = i % 6
        failed = [e for e in recorder.of("retry.attempt_failed") if e.context["task"] == i]
        assert [e.attempt for e in failed] == list(range(1, min(failures, 4) + 1))
        if failures < 4:
            assert results[i] == i
            assert dependencies[i].calls == failures + 1
        else:
            assert dependencies[i].calls == 4
            assert errors[i] is dependencies[i].raised[-1]
            assert fields_of(errors[i])["task"] == i
            assert fields_of(errors[i])["attempt"] == 4


# --- Hypothesis: policies x fault scripts (invariant 3) ---------------------------------------

schedules = st.one_of(
    st.builds(
        backoff.exponential,
        st.floats(0, 3),
        multiplier=st.floats(1, 4),
        max=st.floats(3, 20),
        jitter=st.sampled_from(backoff.JITTERS),
    ),
    st.builds(backoff.constant, st.floats(0, 6)),
    st.builds(backoff.linear, st.floats(0, 3), st.floats(0, 3), max=st.floats(3, 10)),
)
steps = st.tuples(
    st.sampled_from(["transient", "transient", "hint", "permanent", "ok"]),
    st.sampled_from([0.0, 0.0, 0.5, 1.0, 3.0]),  # how long the attempt takes
    st.floats(0, 30),  # the hint, for "hint"
)


@settings(max_examples=200, deadline=None)
@example(  # issue #13 item 13: found once in ~1300 random runs, a flaky failure
    attempts=3,
    schedule=backoff.constant(0.0),
    timeout=None,
    enclosing=1.2303859518321457e-107,
    script=[("transient", 0.0, 0.0)],
    backend="asyncio",
    form="call",
)
@given(
    attempts=st.integers(1, 6),
    schedule=schedules,
    timeout=st.one_of(st.none(), st.floats(0, 25)),
    enclosing=st.one_of(st.none(), st.floats(0, 25)),
    script=st.lists(steps, min_size=1, max_size=8),
    backend=st.sampled_from(BACKENDS),
    form=st.sampled_from(["call", "attempts"]),
)
def test_retry_loops_keep_their_bounds(
    attempts: int,
    schedule: backoff.Backoff,
    timeout: float | None,
    enclosing: float | None,
    script: list[tuple[str, float, float]],
    backend: str,
    form: str,
) -> None:
    policy = Retry(attempts=attempts, backoff=schedule, timeout=timeout)
    waits: list[tuple[float, float]] = []  # (start, seconds) of every wait, zero ones too
    raised: list[BaseException] = []
    hints: list[float | None] = []
    calls: list[float] = []
    real_sleep, real_yield = _backend.sleep, _backend.yield_now

    async def sleep(seconds: float) -> None:
        waits.append((anyio.current_time(), seconds))
        await real_sleep(seconds)

    async def yield_now() -> None:
        waits.append((anyio.current_time(), 0.0))
        await real_yield()

    async def dependency() -> str:
        kind, duration, hint = script[min(len(calls), len(script) - 1)]
        calls.append(anyio.current_time())
        if duration:
            await anyio.sleep(duration)
        if kind == "ok":
            return "ok"
        error: Exception
        if kind == "permanent":
            error = ValueError("bad")
        elif kind == "hint":
            error = Throttled(hint)
        else:
            error = ConnectionError("reset")
        raised.append(error)
        hints.append(hint if kind == "hint" else None)
        raise error

    async def scenario() -> tuple[float, float, object, list[Any]]:
        recorder = Recorder()
        start = anyio.current_time()
        outcome: object
        with hooks(recorder):
            try:
                if enclosing is None:
                    outcome = await run_form(policy, dependency, form)
                else:
                    with deadline(enclosing):
                        outcome = await run_form(policy, dependency, form)
            except Exception as exc:
                outcome = exc
        return start, anyio.current_time(), outcome, recorder.events

    with (
        mock.patch.object(_backend, "sleep", sleep),
        mock.patch.object(_backend, "yield_now", yield_now),
    ):
        start, end, outcome, events = run_virtual(backend, scenario)

    limits = [x for x in (timeout, enclosing) if x is not None]
    budget = min(limits) if limits else math.inf
    assert 1 <= len(calls) <= attempts
    assert end - start <= budget + 1e-9
    # One wait per retry, each scheduled once, none crossing the deadline, all in bounds.
    scheduled = [e for e in events if e.kind == "retry.scheduled"]
    assert len(waits) == len(scheduled)
    # A deadline a hair after the start is not crossed by a zero wait, yet on asyncio its
    # timer, due at once, runs after the task's next step: it can expire during that wait,
    # and then no attempt follows the wait.
    expired_in_wait = isinstance(outcome, ra.DeadlineExceeded) and outcome not in raised
    assert len(waits) == len(calls) - 1 or (expired_in_wait and len(waits) == len(calls))
    cap = schedule.max if schedule.max is not None else math.inf
    for (began, seconds), event, hint in zip(waits, scheduled, hints, strict=False):
        assert event.delay == seconds
        assert math.isfinite(seconds)
        assert seconds >= 0.0
        assert began + seconds < start + budget
        if hint is not None and hint > 60.0:
            raise AssertionError("a hint past max_retry_after is never waited for")
        if isinstance(schedule, backoff.Constant):
            assert seconds == max(schedule.seconds, hint or 0.0)
        else:
            assert seconds <= max(cap, hint or 0.0)
            if hint is not None:
                assert seconds >= hint  # in full, never shortened to the backoff's max
    if outcome == "ok":
        return
    assert isinstance(outcome, Exception)
    gave_up = [e for e in events if e.kind == "retry.gave_up"]
    if isinstance(outcome, ra.DeadlineExceeded) and outcome not in raised:
        # A deadline expired during an attempt: the retry's own (with context) or the
        # enclosing one (without).
        assert end - start == pytest.approx(budget)
        return
    assert outcome is raised[-1]
    reason = fields_of(outcome)["stop_reason"]
    assert [e.stop_reason for e in gave_up] == [reason]
    assert len(notes_of(outcome)) == 1
    if isinstance(outcome, ValueError):
        assert reason == "not_retryable"
    elif reason == "attempts":
        assert len(calls) == attempts
    elif reason == "retry_after":
        assert hints[-1] is not None
        assert budget < math.inf
    else:
        assert reason == "deadline"
        assert budget < math.inf


# --- the decorator ----------------------------------------------------------------------------


async def test_decorator_keeps_metadata_and_signature() -> None:
    @retry(attempts=2, backoff=backoff.constant(0))
    async def fetch(key: str, *, fresh: bool = False) -> str:
        """Fetch a key."""
        return key

    assert fetch.__name__ == "fetch"
    assert fetch.__qualname__.endswith("fetch")
    assert fetch.__doc__ == "Fetch a key."
    assert fetch.__module__ == __name__
    assert inspect.signature(fetch) == inspect.signature(fetch.__wrapped__)  # type: ignore[attr-defined]
    assert inspect.iscoroutinefunction(fetch)
    assert await fetch("k") == "k"


@pytest.mark.parametrize("guarded", [False, True])
async def test_decorator_retries_and_works_on_methods(guarded: bool) -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @retry(attempts=3, backoff=backoff.constant(0), timeout=10 if guarded else None)
        async def get(self, key: str) -> str:
            self.calls += 1
            if self.calls < 3:
                raise ConnectionError("reset")
            return key.upper()

    client = Client()
    assert await client.get("a") == "A"
    assert client.calls == 3


def test_decorator_rejects_sync_functions() -> None:
    def sync() -> None:
        return None

    with pytest.raises(TypeError, match="async function"):
        retry()(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="async callable"):
        Retry()(42)  # type: ignore[arg-type]


def test_retry_and_policies_are_built_without_a_loop() -> None:
    policy = retry(attempts=5, timeout=3.5, name="n")
    assert isinstance(policy, Retry)
    assert (policy.max_attempts, policy.timeout, policy.name, policy.budget) == (5, 3.5, "n", None)
    assert policy.backoff == backoff.exponential()
    assert repr(policy).startswith("Retry(attempts=5, backoff=exponential(")
    with pytest.raises(AttributeError):
        policy.timeout = 1  # type: ignore[misc]


def test_typing_of_retry_is_checked_by_mypy(tmp_path: Path) -> None:
    """tests/typing_retry.py type-checks, and a wrong claim in the same style is caught."""
    repo = Path(__file__).resolve().parents[2]

    def mypy(path: Path) -> tuple[str, int]:
        # In a child process: mypy's objects would slow down every later test's gc.
        command = [sys.executable, "-m", "mypy", "--config-file", str(repo / "pyproject.toml")]
        command += ["--follow-imports=silent", "--cache-dir", str(tmp_path / "mypy-cache")]
        done = subprocess.run(
            [*command, str(path)], capture_output=True, text=True, cwd=repo, check=False
        )
        return done.stdout + done.stderr, done.returncode

    output, status = mypy(repo / "tests" / "typing_retry.py")
    assert status == 0, output
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from typing import assert_type\n"
        "from resilient_async._async.retry import retry\n\n\n"
        "@retry()\n"
        "async def fetch(url: str) -> bytes:\n"
        "    return b''\n\n\n"
        "async def use() -> None:\n"
        "    assert_type(await fetch('x'), str)\n"
        "    await fetch(1)\n",
        encoding="utf-8",
    )
    output, status = mypy(wrong)
    assert status == 1, output
    assert "assert-type" in output
    assert "arg-type" in output


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"attempts": 0}, ValueError, r"attempts must be >= 1, got 0"),
        ({"attempts": -3}, ValueError, r"attempts must be >= 1, got -3"),
        ({"attempts": 2.5}, TypeError, r"attempts must be an int >= 1, got 2.5"),
        ({"attempts": True}, TypeError, "attempts"),
        ({"attempts": "3"}, TypeError, "attempts"),
        ({"timeout": -1}, ValueError, r"timeout must be >= 0, got -1"),
        ({"timeout": math.nan}, ValueError, "timeout"),
        ({"timeout": "5"}, TypeError, "timeout"),
        ({"on": "ConnectionError"}, TypeError, "on must be"),
        ({"on": ()}, ValueError, "on"),
        ({"on": ErrorClass.CANCELLED}, ValueError, "CANCELLED"),
        ({"on": asyncio.CancelledError}, ValueError, "never matched"),
        ({"on": KeyboardInterrupt}, ValueError, "never matched"),
        ({"backoff": 0.5}, TypeError, "backoff must be a schedule"),
        ({"backoff": [0.1, 0.2]}, TypeError, "backoff"),
        ({"budget": 0.2}, TypeError, "budget must be a RetryBudget"),
        ({"name": 3}, TypeError, "name must be a str"),
    ],
)
def test_bad_input_is_rejected_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Retry(**kwargs)
    with pytest.raises(error, match=message):
        retry(**kwargs)


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        Retry(3)  # type: ignore[call-arg]
