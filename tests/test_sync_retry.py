"""The generated sync twin of Retry: same semantics on plain functions, thread-safe budgets.

Time is faked: the sync backend's clock and sleep are patched so that waits take no real time
and their lengths are recorded. The thread tests run on the real clock with zero waits.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resilient_async as ra
from resilient_async import backoff
from resilient_async._sync import _backend as sync_backend
from resilient_async._sync.retry import Retry, RetryBudget, retry
from resilient_async._sync.timeout import deadline
from resilient_async.context import context_of, error_context
from resilient_async.instrumentation import hooks
from resilient_async.testing import set_testing

from .helpers import Recorder

NOTE_PREFIX = "resilient_async context: "


class FakeClock:
    """A monotonic clock that only moves when slept on (or advanced by a call)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[tuple[float, float]] = []  # (start, seconds)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append((self.now, seconds))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(
        sync_backend, "time", SimpleNamespace(monotonic=fake.monotonic, sleep=fake.sleep)
    )
    monkeypatch.setattr(sync_backend, "current_time", fake.monotonic)
    return fake


class Flaky:
    """A sync callable following a script (exception classes to raise, or values)."""

    def __init__(
        self, *script: object, clock: FakeClock | None = None, duration: float = 0.0
    ) -> None:
        self.script = list(script)
        self.clock = clock
        self.duration = duration
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self, *args: object, **kwargs: object) -> object:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.duration
        if isinstance(step, type) and issubclass(step, BaseException):
            step = step("scripted")
        if isinstance(step, BaseException):
            self.raised.append(step)
            raise step
        return step


def run_block(policy: Retry, body: Callable[[int], object]) -> object:
    """Run `body(attempt.number)` in a `Retry.attempts()` loop; return its result."""
    for attempt in policy.attempts():
        with attempt:
            return body(attempt.number)
    raise AssertionError("the attempts loop ended without a result")


def raise_(error: BaseException) -> None:
    raise error


class Throttled(Exception):
    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"slow down for {retry_after}s")
        self.retry_after = retry_after


def fields_of(exc: BaseException) -> dict[str, object]:
    captured = context_of(exc)
    assert captured is not None
    return dict(captured)


# --- the loop ---------------------------------------------------------------------------------


def test_retries_until_success(clock: FakeClock) -> None:
    dependency = Flaky(ConnectionError, ConnectionError, "ok")
    assert Retry(attempts=3, backoff=backoff.constant(2)).call(dependency, 1, k=2) == "ok"
    assert dependency.calls == 3
    assert [seconds for _, seconds in clock.sleeps] == [2.0, 2.0]


def test_last_error_propagates_with_context_events_and_one_note(clock: FakeClock) -> None:
    dependency = Flaky(ConnectionError)
    recorder = Recorder()
    with hooks(recorder), pytest.raises(ConnectionError) as info:
        Retry(attempts=3, backoff=backoff.constant(1), name="s").call(dependency)
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


def test_not_retryable_error_propagates_at_once(clock: FakeClock) -> None:
    dependency = Flaky(KeyError, "ok")
    with pytest.raises(KeyError) as info:
        Retry(attempts=5).call(dependency)
    assert dependency.calls == 1
    assert fields_of(info.value)["stop_reason"] == "not_retryable"
    assert clock.sleeps == []


@pytest.mark.parametrize("signal", [KeyboardInterrupt, SystemExit])
def test_stop_signals_pass_through(clock: FakeClock, signal: type[BaseException]) -> None:
    dependency = Flaky(signal, "ok")
    with pytest.raises(signal) as info:
        Retry(attempts=5, on=lambda exc: True).call(dependency)
    assert dependency.calls == 1
    assert info.value is dependency.raised[0]
    assert context_of(info.value) is None
    with pytest.raises(signal):
        run_block(Retry(attempts=5, on=lambda exc: True), lambda n: raise_(signal()))


def test_attempts_loop(clock: FakeClock) -> None:
    numbers: list[int] = []
    for attempt in Retry(attempts=5, backoff=backoff.constant(1)).attempts():
        with attempt:
            numbers.append(attempt.number)
            if attempt.number < 3:
                raise ConnectionError("reset")
    assert numbers == [1, 2, 3]
    assert len(clock.sleeps) == 2
    policy = Retry(attempts=2, backoff=backoff.constant(0))
    with pytest.raises(ConnectionError) as info:
        run_block(policy, lambda n: raise_(ConnectionError(n)))
    assert info.value.args == (2,)


def test_testing_mode_skips_sleeps(clock: FakeClock) -> None:
    dependency = Flaky(ConnectionError)
    with set_testing(True, attempts=3), pytest.raises(ConnectionError):
        Retry(attempts=10, backoff=backoff.constant(60)).call(dependency)
    assert dependency.calls == 3
    assert clock.sleeps == []


# --- deadlines --------------------------------------------------------------------------------


def test_wait_that_would_cross_the_timeout_raises_at_once(clock: FakeClock) -> None:
    dependency = Flaky(ConnectionError)
    with pytest.raises(ConnectionError) as info:
        Retry(attempts=10, backoff=backoff.constant(4), timeout=10).call(dependency)
    assert dependency.calls == 3  # at 0, 4, 8; a wait at 8 would end at 12
    assert clock.now == 1008.0
    assert fields_of(info.value)["stop_reason"] == "deadline"


def test_attempt_running_past_the_timeout(clock: FakeClock) -> None:
    failing = Flaky(ConnectionError, clock=clock, duration=6.0)
    with pytest.raises(ConnectionError) as info:
        Retry(attempts=10, backoff=backoff.constant(1), timeout=10).call(failing)
    assert failing.calls == 2  # the second returned at 13, past the deadline: no third
    assert fields_of(info.value)["stop_reason"] == "deadline"
    # A sync deadline cannot interrupt a call, and never turns one that completed into an
    # error (issue 12, defect 7): the late success is returned and the overrun reported.
    late = Flaky(ConnectionError, "ok", clock=clock, duration=6.0)
    recorder = Recorder()
    with hooks(recorder):
        assert Retry(attempts=10, backoff=backoff.constant(1), timeout=10).call(late) == "ok"
    assert late.calls == 2
    (overrun,) = recorder.of("timeout.overrun")
    assert overrun.overrun == pytest.approx(3.0)


def test_enclosing_deadline_bounds_the_waits(clock: FakeClock) -> None:
    dependency = Flaky(ConnectionError)
    with pytest.raises(ConnectionError), deadline(5):
        Retry(attempts=10, backoff=backoff.constant(2)).call(dependency)
    assert clock.now == 1004.0


def test_attempts_loop_respects_its_timeout(clock: FakeClock) -> None:
    policy = Retry(attempts=10, backoff=backoff.constant(3), timeout=5)
    with pytest.raises(ConnectionError) as info:
        run_block(policy, lambda n: raise_(ConnectionError(n)))
    assert clock.now == 1003.0
    assert fields_of(info.value)["stop_reason"] == "deadline"


def test_retry_after_is_honoured_in_full(clock: FakeClock) -> None:
    Retry(backoff=backoff.exponential(0.1, max=10)).call(Flaky(Throttled(5), "ok"))
    Retry(backoff=backoff.exponential(0.1, max=10)).call(Flaky(Throttled(50), "ok"))
    Retry(backoff=backoff.constant(1)).call(Flaky(Throttled(50), "ok"))
    assert [seconds for _, seconds in clock.sleeps] == [5.0, 50.0, 50.0]
    with pytest.raises(Throttled) as info:
        Retry().call(Flaky(Throttled(61), "ok"))
    assert (context_of(info.value) or {})["stop_reason"] == "retry_after"
    with pytest.raises(Throttled) as info:
        Retry(timeout=10).call(Flaky(Throttled(20), "ok"))
    assert (context_of(info.value) or {})["stop_reason"] == "retry_after"
    assert len(clock.sleeps) == 3


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
    clock: FakeClock,
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


def test_decorator_keeps_metadata_and_rejects_async_functions(clock: FakeClock) -> None:
    @retry(attempts=2, backoff=backoff.constant(0))
    def load(path: str, *, fresh: bool = False) -> str:
        """Load a path."""
        return path

    assert load.__name__ == "load"
    assert load.__doc__ == "Load a path."
    assert inspect.signature(load) == inspect.signature(load.__wrapped__)  # type: ignore[attr-defined]
    assert load("p") == "p"

    async def fetch() -> None:
        return None

    with pytest.raises(TypeError, match="sync callable"):
        retry()(fetch)


def test_bad_input(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match=r"attempts must be >= 1, got 0"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        retry(timeout=-1)
    with pytest.raises(TypeError, match="budget must be a RetryBudget"):
        Retry(budget=ra_async_budget())  # type: ignore[arg-type]


def ra_async_budget() -> object:
    from resilient_async._async.retry import RetryBudget as AsyncRetryBudget

    return AsyncRetryBudget()


# --- threads ----------------------------------------------------------------------------------


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # report it to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


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


def test_nested_sync_retries_share_the_budget(clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.2, ttl=10.0)  # two retries
    dependency = Flaky(ConnectionError)
    inner = Retry(attempts=10, backoff=backoff.constant(0.1))
    with pytest.raises(ConnectionError) as info:
        Retry(attempts=10, backoff=backoff.constant(0.1), budget=budget).call(
            lambda: inner.call(dependency)
        )
    assert dependency.calls == 3
    assert fields_of(info.value)["stop_reason"] == "budget"
