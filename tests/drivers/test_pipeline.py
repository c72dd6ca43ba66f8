"""Pipelines: order, per-attempt timeouts, cancel sweeps and a seeded soak through
`pipeline(Fallback, Retry, CircuitBreaker, Bulkhead, Timeout)` (invariants 1, 2, 10, 11)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import anyio
import pytest

import resilient_async as ra
from resilient_async import backoff
from resilient_async._async.breaker import BreakerState, CircuitBreaker
from resilient_async._async.bulkhead import Bulkhead
from resilient_async._async.fallback import Fallback, degraded
from resilient_async._async.pipeline import Pipeline, pipeline
from resilient_async._async.policy import MUST_WAIT, Guard, Policy
from resilient_async._async.ratelimit import RateLimiter
from resilient_async._async.retry import Retry
from resilient_async._async.timeout import Timeout
from resilient_async.context import context_of
from resilient_async.instrumentation import hooks

from ..helpers import BACKENDS, Recorder, run_virtual

_request: ContextVar[str] = ContextVar("request", default="none")


class Tracing(Policy):
    """A custom policy that records when it is entered and left."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def call(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        self.log.append(f"enter {self.name}")
        try:
            return await fn(*args, **kwargs)
        finally:
            self.log.append(f"exit {self.name}")


def full_pipeline(
    *, fallback: object = "fallback", attempts: int = 3, timeout: float = 1.0, slots: int = 4
) -> tuple[Pipeline, CircuitBreaker, Bulkhead]:
    breaker = CircuitBreaker("dep", window=20, min_calls=5, open_for=10)
    bulkhead = Bulkhead(slots, max_queue=slots, name="dep")
    guarded = pipeline(
        Fallback(fallback),
        Retry(attempts=attempts, backoff=backoff.constant(0.1)),
        breaker,
        bulkhead,
        Timeout(timeout),
    )
    return guarded, breaker, bulkhead


@pytest.mark.anyio
async def test_policies_apply_outermost_first() -> None:
    log: list[str] = []

    async def work() -> str:
        log.append("call")
        return "done"

    guarded = pipeline(Tracing("a", log), Timeout(5), Tracing("b", log), Bulkhead(2))
    assert await guarded.call(work) == "done"
    assert log == ["enter a", "enter b", "call", "exit b", "exit a"]


@pytest.mark.anyio
async def test_decorator_keeps_metadata_and_arguments() -> None:
    guarded, _, _ = full_pipeline()

    @guarded
    async def add(a: int, *, b: int) -> int:
        """Add."""
        return a + b

    assert add.__name__ == "add"
    assert add.__doc__ == "Add."
    assert await add(1, b=2) == 3


@pytest.mark.anyio
async def test_timeout_inside_retry_bounds_each_attempt() -> None:
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await anyio.sleep(10)
        return "late"

    start = anyio.current_time()
    with pytest.raises(ra.DeadlineExceeded) as info:
        await pipeline(Retry(attempts=3, backoff=backoff.constant(0.5)), Timeout(1)).call(slow)
    assert calls == 3
    assert anyio.current_time() - start == pytest.approx(3 * 1 + 2 * 0.5)
    context = context_of(info.value)
    assert context is not None
    assert context["attempt"] == 3


@pytest.mark.anyio
async def test_breaker_outside_a_timeout_counts_the_expiry_as_a_failure() -> None:
    breaker = CircuitBreaker("slow", window=4, min_calls=2, open_for=10)

    async def hang() -> None:
        await anyio.sleep(100)

    guarded = pipeline(breaker, Timeout(1))
    for _ in range(2):
        with pytest.raises(ra.DeadlineExceeded):
            await guarded.call(hang)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(ra.CircuitOpenError):
        await guarded.call(hang)


@pytest.mark.anyio
async def test_errors_carry_one_merged_context() -> None:
    async def down() -> None:
        raise ConnectionError("down")

    breaker = CircuitBreaker("db", window=10, min_calls=10)
    with pytest.raises(ConnectionError) as info:
        await pipeline(Retry(attempts=2, backoff=backoff.constant(0), name="r"), breaker).call(down)
    context = context_of(info.value)
    assert context is not None
    assert context["attempt"] == 2
    assert context["breaker_state"] == "closed" or context["breaker_state"] == BreakerState.CLOSED
    notes = [n for n in info.value.__notes__ if n.startswith("resilient_async context:")]
    assert len(notes) == 1


@pytest.mark.anyio
async def test_fallback_answers_after_retries_and_sees_the_callers_context() -> None:
    seen: list[object] = []

    async def handler(exc: Exception, key: str) -> str:
        seen.append((type(exc).__name__, _request.get(), degraded()))
        return f"fallback:{key}"

    async def down(key: str) -> str:
        raise ConnectionError(key)

    guarded = pipeline(Fallback(handler=handler), Retry(attempts=2, backoff=backoff.constant(0)))
    token = _request.set("req-1")
    try:
        assert await guarded.call(down, "k") == "fallback:k"
    finally:
        _request.reset(token)
    assert seen == [("ConnectionError", "req-1", True)]


@pytest.mark.anyio
async def test_rate_limiter_and_bulkhead_fold_into_the_guard_run() -> None:
    limiter = RateLimiter(2, per=1.0)
    guarded = pipeline(limiter, Bulkhead(1), Timeout(1))

    async def ok() -> str:
        return "ok"

    assert [await guarded.call(ok) for _ in range(2)] == ["ok", "ok"]
    with pytest.raises(ra.RateLimitedError):
        await guarded.call(ok)
    # They keep the base's `call`, which is what lets a pipeline fold them (no frame each).
    for guard in (limiter, Bulkhead(1), Bulkhead.adaptive(), Bulkhead(1, queue="codel")):
        assert type(guard).call is Guard.call, guard


@pytest.mark.anyio
async def test_folded_adaptive_bulkhead_learns_and_frees_its_slot() -> None:
    adaptive = Bulkhead.adaptive(initial=2, min_limit=1, max_limit=10, algorithm="aimd")
    guarded = pipeline(Timeout(1), adaptive)

    async def ok() -> str:
        return "ok"

    async def down() -> str:
        raise ConnectionError("down")

    assert await guarded.call(ok) == "ok"
    assert adaptive.limit == 3  # a success adds one (1 of 2 in use: half)
    with pytest.raises(ConnectionError):
        await guarded.call(down)
    assert adaptive.limit == 2  # a drop backs off (3 * 0.9)
    m = adaptive.metrics()
    assert (m.completed, m.failed, m.running) == (1, 1, 0)


def test_bad_pipelines_are_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="at least one policy"):
        pipeline()
    with pytest.raises(TypeError, match="argument 1 must be a policy"):
        pipeline(Timeout(1), "retry")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="position 0 can never run"):
        pipeline(Fallback(1), Retry(), Fallback(2))
    # A narrower inner one, or last_good inside a value fallback, leaves the outer reachable.
    pipeline(Fallback(1), Fallback(2, on=KeyError))
    pipeline(Fallback(1), Fallback.last_good(10))


# --- cancellation through the whole pipeline ----------------------------------------------


@pytest.mark.anyio
async def test_cancel_sweep_through_the_full_pipeline() -> None:
    """Cancel at every point of a call's life: nothing leaks, nothing falls back."""
    recorder = Recorder()

    async def dependency() -> str:
        await anyio.sleep(0.3)
        raise ConnectionError("flaky")  # two failures, then the fallback

    k = 0
    while True:
        guarded, breaker, bulkhead = full_pipeline()
        with hooks(recorder), anyio.CancelScope() as scope:
            scope.deadline = anyio.current_time() + k * 0.05
            result = await guarded.call(dependency)
        assert bulkhead.in_use == 0
        assert bulkhead.queued == 0
        if not scope.cancelled_caught:
            assert result == "fallback"  # the call completed before the cancel
            break
        assert "fallback.used" not in recorder.kinds()  # cancellation never falls back
        assert breaker.metrics().calls <= 3
        k += 1
    assert k > 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_soak_with_seeded_faults_leaks_nothing(backend: str) -> None:
    """Many calls with errors, slow calls, hangs and cancels: the ledgers balance."""

    async def scenario() -> tuple[int, int, int, int, int]:
        rng = random.Random(20261129)
        breaker = CircuitBreaker("soak", window=50, min_calls=20, open_for=1)
        bulkhead = Bulkhead(16, max_queue=16)
        guarded = pipeline(
            Fallback("fallback"),
            Retry(attempts=2, backoff=backoff.constant(0.1)),
            breaker,
            bulkhead,
            Timeout(0.5),
        )
        concurrent = peak = 0
        outcomes = {"ok": 0, "fallback": 0, "cancelled": 0, "error": 0}

        async def dependency(i: int) -> str:
            nonlocal concurrent, peak
            concurrent += 1
            peak = max(peak, concurrent)
            try:
                draw = rng.random()
                if draw < 0.1:
                    raise ConnectionError("fault")
                if draw < 0.15:
                    await anyio.sleep(2)  # slower than the timeout
                await anyio.sleep(rng.uniform(0.001, 0.05))
                return "ok"
            finally:
                concurrent -= 1

        async def client(i: int) -> None:
            with anyio.CancelScope() as scope:
                if rng.random() < 0.1:
                    scope.deadline = anyio.current_time() + rng.uniform(0, 0.2)
                try:
                    result = await guarded.call(dependency, i)
                except ra.ResilienceError:
                    outcomes["error"] += 1
                    return
                outcomes["ok" if result == "ok" else "fallback"] += 1
            if scope.cancelled_caught:
                outcomes["cancelled"] += 1

        async with anyio.create_task_group() as tg:
            for i in range(2000):
                tg.start_soon(client, i)
                if i % 2 == 0:
                    await anyio.sleep(0.01)
        assert bulkhead.in_use == 0
        assert bulkhead.queued == 0
        assert concurrent == 0
        metrics = bulkhead.metrics()
        assert metrics.submitted == (
            metrics.rejected + metrics.completed + metrics.failed + metrics.cancelled
        )
        assert breaker.metrics().probes_in_flight == 0
        return (
            outcomes["ok"],
            outcomes["fallback"],
            outcomes["cancelled"],
            outcomes["error"],
            peak,
        )

    ok, fallback, cancelled, errors, peak = run_virtual(backend, scenario)
    assert ok + fallback + cancelled + errors == 2000
    assert peak <= 16
    assert ok > 1000, (ok, fallback, cancelled, errors)
    assert cancelled > 0


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["call", "async with", "pipeline"])
async def test_guards_add_their_context_to_a_failure_on_every_path(form: str) -> None:
    """Regression: the pipeline and `async with` paths used to drop the guard's context."""

    async def down() -> None:
        raise ConnectionError("down")

    for guard in (Bulkhead(2, name="pool"), RateLimiter(10, name="quota")):
        with pytest.raises(ConnectionError) as info:
            if form == "call":
                await guard.call(down)
            elif form == "async with":
                async with guard:
                    await down()
            else:
                await pipeline(guard, Timeout(5)).call(down)
        context = context_of(info.value)
        assert context is not None, (form, guard)
        assert context["policy"] == guard.name


# --- which guards fold into the guard run ------------------------------------------------


class Deferred(Guard):
    """A guard whose outcome is recorded by an awaited step (as a breaker on a server)."""

    def __init__(self) -> None:
        self._name = None
        self._hooks = ()
        self.log: list[str] = []

    def enter_nowait(self) -> Any:
        return "token"

    def exit(self, token: Any, error: BaseException | None) -> Any:
        self.log.append(f"exit {type(error).__name__}")
        return MUST_WAIT

    async def finish(self, token: Any, error: BaseException | None) -> None:
        await anyio.lowlevel.checkpoint()
        self.log.append(f"finish {token} {type(error).__name__}")

    @property
    def exit_may_wait(self) -> bool:
        return True


@pytest.mark.anyio
async def test_a_memory_breaker_folds_into_the_guard_run() -> None:
    # Regression: the breaker's own `call` kept it out of the guard run (a frame of its own).
    assert type(CircuitBreaker()).call is Guard.call
    breaker, timeout = CircuitBreaker("b"), Timeout(1)
    guarded = pipeline(timeout, breaker)
    assert guarded._run.__self__._guards == (timeout, breaker)  # type: ignore[attr-defined]

    def sync_ok() -> str:
        return "ok"

    with pytest.raises(TypeError, match=r"Pipeline\.call needs an async callable"):
        await guarded.call(sync_ok)  # type: ignore[arg-type]
    assert breaker.metrics().calls == 0  # a misuse counts as nothing


@pytest.mark.anyio
async def test_a_guard_whose_exit_waits_is_finished_on_every_path() -> None:
    guard = Deferred()

    async def ok() -> str:
        return "ok"

    async def boom() -> str:
        raise KeyError("x")

    assert await guard.call(ok) == "ok"
    with pytest.raises(KeyError):
        await guard.call(boom)
    async with guard:
        pass
    timeout = Timeout(1)
    guarded = pipeline(timeout, guard, Timeout(2))
    assert guarded._run.__self__._guards == (timeout,)  # type: ignore[attr-defined]
    assert await guarded.call(ok) == "ok"
    assert guard.log == [
        "exit NoneType",
        "finish token NoneType",
        "exit KeyError",
        "finish token KeyError",
        "exit NoneType",
        "finish token NoneType",
        "exit NoneType",
        "finish token NoneType",
    ]
