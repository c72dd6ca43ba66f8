"""Retry's sync twin, where it differs from the async one (the shared behaviour is tested
once for both, in tests/_async): a deadline that cannot interrupt, async callables refused,
thread-safe budgets and attempt state.

The single-thread tests run on the virtual `clock`; the thread tests on the real clock with
zero waits.
"""

from __future__ import annotations

import contextlib
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resilient_async as ra
from resilient_async import backoff
from resilient_async._sync.retry import Retry, RetryBudget
from resilient_async.context import context_of, error_context
from resilient_async.instrumentation import hooks

from .._sync._backend import VirtualClock
from .._sync.scripted import Flaky
from ..helpers import Recorder
from .threads import run_threads


def fields_of(exc: BaseException) -> dict[str, object]:
    captured = context_of(exc)
    assert captured is not None
    return dict(captured)


# --- deadlines --------------------------------------------------------------------------------


def test_attempt_running_past_the_timeout(clock: VirtualClock) -> None:
    failing = Flaky(ConnectionError, duration=6.0)
    with pytest.raises(ConnectionError) as info:
        Retry(attempts=10, backoff=backoff.constant(1), timeout=10).call(failing)
    assert failing.calls == 2  # the second returned at 13, past the deadline: no third
    assert fields_of(info.value)["stop_reason"] == "deadline"
    # A sync deadline cannot interrupt a call, and never turns one that completed into an
    # error (issue 12, defect 7): the late success is returned and the overrun reported.
    late = Flaky(ConnectionError, "ok", duration=6.0)
    recorder = Recorder()
    with hooks(recorder):
        assert Retry(attempts=10, backoff=backoff.constant(1), timeout=10).call(late) == "ok"
    assert late.calls == 2
    (overrun,) = recorder.of("timeout.overrun")
    assert overrun.overrun == pytest.approx(3.0)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    attempts=st.integers(1, 6),
    initial=st.floats(0, 3),
    cap=st.floats(3, 20),
    jitter=st.sampled_from(backoff.JITTERS),
    timeout=st.one_of(st.none(), st.floats(0, 30)),
    durations=st.lists(st.sampled_from([0.0, 0.5, 2.0]), min_size=1, max_size=6),
    succeed_at=st.integers(1, 8),
)
def test_sync_loops_keep_their_bounds(
    clock: VirtualClock,
    attempts: int,
    initial: float,
    cap: float,
    jitter: str,
    timeout: float | None,
    durations: list[float],
    succeed_at: int,
) -> None:
    clock.sleeps.clear()
    start = clock.now
    calls = 0

    def dependency() -> str:
        nonlocal calls
        calls += 1
        clock.now += durations[min(calls, len(durations)) - 1]
        if calls < succeed_at:
            raise ConnectionError("reset")
        return "ok"

    schedule = backoff.exponential(initial, max=cap, jitter=jitter)  # type: ignore[arg-type]
    with contextlib.suppress(ConnectionError, ra.DeadlineExceeded):
        Retry(attempts=attempts, backoff=schedule, timeout=timeout).call(dependency)
    assert 1 <= calls <= attempts
    assert len(clock.sleeps) <= calls - 1
    for began, seconds in clock.sleeps:
        assert 0.0 < seconds <= cap
        if timeout is not None:
            assert began + seconds < start + timeout


# --- the decorator ----------------------------------------------------------------------------


def test_an_async_budget_is_refused() -> None:
    with pytest.raises(TypeError, match="budget must be a RetryBudget"):
        Retry(budget=ra_async_budget())  # type: ignore[arg-type]


def ra_async_budget() -> object:
    from resilient_async._async.retry import RetryBudget as AsyncRetryBudget

    return AsyncRetryBudget()


# --- threads ----------------------------------------------------------------------------------


def test_budget_bound_holds_under_threads() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.5, ttl=60.0)  # floor 30
    policy = Retry(attempts=5, backoff=backoff.constant(0), budget=budget)
    lock = threading.Lock()
    attempts = 0
    stops: list[object] = []

    def failing() -> None:
        nonlocal attempts
        with lock:
            attempts += 1
        raise ConnectionError("down")

    def worker(i: int) -> None:
        for _ in range(25):
            try:
                policy.call(failing)
            except ConnectionError as exc:
                stops.append(fields_of(exc)["stop_reason"])

    run_threads(8, worker)
    calls = 8 * 25
    assert len(stops) == calls
    assert attempts <= calls * 1.2 + 30
    assert attempts >= calls * 1.2 + 30 - 1  # the budget was the limit, and it was used
    assert "budget" in stops


def test_threads_sharing_one_retry_never_share_attempt_state() -> None:
    policy = Retry(attempts=4, backoff=backoff.constant(0))
    outcomes: dict[int, list[int]] = {}

    def worker(i: int) -> None:
        recorder = Recorder()
        for round_ in range(30):
            failures = (i + round_) % 6
            dependency = Flaky(*([ConnectionError] * failures), i)
            outcome: object
            with hooks(recorder), error_context(thread=i):
                try:
                    outcome = ("ok", policy.call(dependency))
                except ConnectionError as exc:
                    outcome = ("gave up at", fields_of(exc)["attempt"])
            assert outcome == (("ok", i) if failures < 4 else ("gave up at", 4))
            failed = [e.attempt for e in recorder.of("retry.attempt_failed")]
            assert failed == list(range(1, min(failures, 4) + 1))
            assert all(e.context["thread"] == i for e in recorder.events)
            recorder.events.clear()
        outcomes[i] = [1]

    run_threads(16, worker)
    assert len(outcomes) == 16


def test_real_short_waits() -> None:
    dependency = Flaky(ConnectionError, ConnectionError, "ok")
    assert Retry(attempts=3, backoff=backoff.constant(0.001)).call(dependency) == "ok"
    assert dependency.calls == 3
