"""RateLimiter on asyncio and trio (RELIABILITY.md invariant 9, bug class 9).

Everything runs in virtual time, so waits and `retry_after` are exact. The central
invariant, admitted <= rate * W + burst for every window W, is checked over Hypothesis-drawn
arrival times with random cancellations; a cancelled waiter's reservation must come back.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resilient_async as ra
from resilient_async._async.ratelimit import KeyedRateLimiter, RateLimiter
from resilient_async._async.timeout import deadline
from resilient_async.context import context_of, error_context
from resilient_async.instrumentation import hooks
from resilient_async.stores import MemoryStore

from ..core.test_bucket_core import window_violations
from ..helpers import BACKENDS, Recorder, run_virtual

pytestmark = pytest.mark.anyio

T = TypeVar("T")
WATCHDOG = 100_000.0


def watchdog(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Fail, instead of hanging, a test whose tasks all block forever."""

    @functools.wraps(test)
    async def guarded(*args: Any, **kwargs: Any) -> None:
        with anyio.fail_after(WATCHDOG):
            await test(*args, **kwargs)

    return guarded


def run_guarded(backend: str, fn: Callable[[], Awaitable[T]]) -> T:
    async def guarded() -> T:
        with anyio.fail_after(WATCHDOG):
            return await fn()

    return run_virtual(backend, guarded)


async def settle(steps: int = 10) -> None:
    for _ in range(steps):
        await anyio.lowlevel.checkpoint()


async def returns_at_once() -> str:
    return "done"


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((0,), {}, ValueError, "rate must be a finite number > 0, got 0"),
        ((-1,), {}, ValueError, "rate must be"),
        ((math.inf,), {}, ValueError, "rate must be"),
        ((math.nan,), {}, ValueError, "rate must be"),
        (("5",), {}, TypeError, "rate must be a number"),
        ((5, 0), {}, ValueError, "per must be a finite number of seconds >= 1e-06, got 0"),
        ((5, -1.0), {}, ValueError, "per must be"),
        ((5,), {"burst": 0.5}, ValueError, "burst must be a finite number >= 1, got 0.5"),
        ((5,), {"burst": 0}, ValueError, "burst must be"),
        ((5,), {"burst": math.inf}, ValueError, "burst must be"),
        ((5,), {"burst": "2"}, TypeError, "burst must be a number"),
        ((5,), {"max_wait": -1}, ValueError, "max_wait must be >= 0"),
        ((5,), {"max_wait": "1"}, TypeError, "max_wait must be a number"),
    ],
)
def test_bad_configuration_fails_at_construction(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RateLimiter(*args, **kwargs)
    with pytest.raises(error, match=message):
        RateLimiter.per_key(*args, **kwargs)


def test_defaults_and_repr() -> None:
    limiter = RateLimiter(10)
    assert (limiter.rate, limiter.per, limiter.burst, limiter.max_wait) == (10.0, 1.0, 10.0, 0.0)
    assert RateLimiter(0.5, per=60).burst == 1.0  # the bucket holds at least one token
    assert RateLimiter(5, max_wait=None).max_wait is None
    assert repr(RateLimiter(2, per=3, burst=4, name="x")) == (
        "RateLimiter(2.0, per=3.0, burst=4.0, max_wait=0.0, name='x')"
    )


@watchdog
async def test_tokens_out_of_range_fail_at_acquire() -> None:
    limiter = RateLimiter(5, burst=3)
    for bad in (4, 3.5, 0, -1):
        with pytest.raises(ValueError, match=r"tokens must be (> 0|<= burst)"):
            await limiter.acquire(bad)
        with pytest.raises(ValueError, match="tokens must be"):
            limiter.try_acquire(bad)
    with pytest.raises(TypeError):
        await limiter.acquire("1")  # type: ignore[arg-type]
    assert limiter.try_acquire(3)


# --- the bucket through the driver --------------------------------------------------------


@watchdog
async def test_burst_at_once_then_rejection_with_exact_retry_after() -> None:
    limiter = RateLimiter(2, per=1.0, burst=3, name="api")
    recorder = Recorder()
    start = anyio.current_time()
    for _ in range(3):
        await limiter.acquire()
    errors = []
    with hooks(recorder):
        for _ in range(2):
            with pytest.raises(ra.RateLimitedError) as info:
                await limiter.acquire()
            errors.append(info.value)
    assert anyio.current_time() == start
    assert errors[0] is not errors[1]
    assert errors[0].limiter == "api"
    assert errors[0].retry_after == pytest.approx(0.5)
    assert context_of(errors[0]) == {"policy": "api"}
    events = recorder.of("limiter.rejected")
    assert [e.policy for e in events] == ["api", "api"]
    assert events[0].retry_after == pytest.approx(0.5)
    assert events[0].tokens == 1
    await anyio.sleep(0.5)
    await limiter.acquire()
    with pytest.raises(ra.RateLimitedError) as info:
        await limiter.acquire(2)
    assert info.value.retry_after == pytest.approx(1.0)


@watchdog
async def test_idle_time_accumulates_at_most_burst() -> None:
    limiter = RateLimiter(10, burst=4)
    for _ in range(4):
        await limiter.acquire()
    await anyio.sleep(3600)
    assert limiter.try_acquire(4)
    assert not limiter.try_acquire()


@watchdog
async def test_a_wall_clock_jump_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = RateLimiter(1, burst=1)
    assert limiter.try_acquire()
    monkeypatch.setattr(time, "time", lambda: 10.0**12)
    assert not limiter.try_acquire()
    with pytest.raises(ra.RateLimitedError) as info:
        await limiter.acquire()
    assert info.value.retry_after == pytest.approx(1.0)


@watchdog
async def test_waiters_wait_their_turn_in_fifo_order() -> None:
    limiter = RateLimiter(1, per=1.0, burst=1, max_wait=10)
    await limiter.acquire()
    start = anyio.current_time()
    admitted: list[tuple[int, float]] = []

    async def waiter(index: int) -> None:
        await limiter.acquire()
        admitted.append((index, anyio.current_time() - start))

    async with anyio.create_task_group() as tg:
        for index in range(5):
            tg.start_soon(waiter, index)
            await settle()
        assert limiter.queued == 5
        assert not limiter.try_acquire()  # a newcomer does not jump the queue
    assert [index for index, _ in admitted] == list(range(5))
    assert [when for _, when in admitted] == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])


@watchdog
async def test_rejected_at_once_when_the_wait_exceeds_max_wait() -> None:
    limiter = RateLimiter(1, burst=1, max_wait=2.5)
    await limiter.acquire()
    await limiter.acquire()  # waits 1 s
    start = anyio.current_time()

    async def queue_two() -> None:
        await limiter.acquire()

    async with anyio.create_task_group() as tg:
        tg.start_soon(queue_two)  # ready in 1 s
        tg.start_soon(queue_two)  # ready in 2 s
        await settle()
        with pytest.raises(ra.RateLimitedError) as info:
            await limiter.acquire()  # would wait 3 s > 2.5 s
        assert anyio.current_time() == start
        assert info.value.retry_after == pytest.approx(3.0)


@watchdog
async def test_rejected_at_once_when_the_wait_reaches_the_deadline() -> None:
    limiter = RateLimiter(1, burst=1, max_wait=None)
    await limiter.acquire()
    start = anyio.current_time()
    with deadline(0.5):
        with pytest.raises(ra.RateLimitedError) as info:
            await limiter.acquire()
        assert anyio.current_time() == start
    assert info.value.retry_after == pytest.approx(1.0)
    with deadline(1.5):
        await limiter.acquire()  # 1 s fits in 1.5 s
    assert anyio.current_time() - start == pytest.approx(1.0)


@watchdog
async def test_context_manager_call_and_decorator_take_one_token_each() -> None:
    limiter = RateLimiter(1, burst=3)
    async with limiter:
        pass
    assert await limiter.call(returns_at_once) == "done"

    @limiter
    async def fetch(value: int) -> int:
        """Fetch."""
        return value

    assert fetch.__doc__ == "Fetch."
    assert await fetch(7) == 7
    with pytest.raises(ra.RateLimitedError):
        await fetch(8)
    with pytest.raises(ra.RateLimitedError):
        await limiter.call(returns_at_once)
    with pytest.raises(ra.RateLimitedError):
        async with limiter:
            pass


@watchdog
async def test_errors_passing_through_call_carry_the_policy_in_their_context() -> None:
    limiter = RateLimiter(5, name="partner")

    async def down() -> None:
        raise ConnectionError("down")

    with error_context(request="r1"), pytest.raises(ConnectionError) as info:
        await limiter.call(down)
    assert context_of(info.value) == {"request": "r1", "policy": "partner"}


@watchdog
async def test_acquire_with_tokens_to_spare_adds_no_checkpoint() -> None:
    limiter = RateLimiter(100)
    others_ran = False

    async def other() -> None:
        nonlocal others_ran
        others_ran = True

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        await limiter.acquire()
        await limiter.call(returns_at_once)
        async with limiter:
            pass
        assert not others_ran


# --- cancellation -------------------------------------------------------------------------


@watchdog
async def test_cancelled_waiter_returns_its_reservation() -> None:
    limiter = RateLimiter(1, burst=1, max_wait=10)
    await limiter.acquire()
    start = anyio.current_time()
    scope = anyio.CancelScope()
    admitted: dict[str, float] = {}

    async def first() -> None:
        with scope:
            await limiter.acquire()
            admitted["first"] = anyio.current_time() - start

    async def second() -> None:
        await limiter.acquire()
        admitted["second"] = anyio.current_time() - start

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        await settle()
        tg.start_soon(second)
        await settle()
        assert limiter.queued == 2
        await anyio.sleep(0.5)
        scope.cancel()
        await settle()
        assert limiter.queued == 1
    # `second` moved up into the cancelled reservation's place.
    assert admitted == {"second": pytest.approx(1.0)}
    assert limiter.queued == 0
    await anyio.sleep(1.0)
    assert limiter.try_acquire()  # the bucket holds what it should: nothing leaked


@watchdog
async def test_cancelled_last_waiter_frees_its_tokens() -> None:
    limiter = RateLimiter(1, burst=1, max_wait=10)
    await limiter.acquire()
    with anyio.move_on_after(0.5):
        await limiter.acquire()
    assert limiter.queued == 0
    await anyio.sleep(0.5)
    assert limiter.try_acquire()  # without the return it would be owed until t=2


@watchdog
async def test_cancel_sweep_leaks_no_reservation() -> None:
    """Cancel a waiter after k checkpoints, at once or when its tokens come due, for every k.

    Afterwards the bucket must read as if the waiter had never come (cancelled), or as if it
    took its tokens when they came due (served).
    """
    outcomes = []
    for due_first in (False, True):
        k = 0
        while True:
            limiter = RateLimiter(10, burst=2, max_wait=5)
            start = anyio.current_time()
            assert limiter.try_acquire(2)
            got = False
            with anyio.CancelScope() as scope:

                async def cancel_after_k() -> None:
                    if due_first:
                        await anyio.sleep(0.2)  # the instant the waiter's tokens come due
                    for _ in range(k):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(cancel_after_k)
                    await limiter.acquire(2)
                    got = True
                    await anyio.sleep(10)
            assert limiter.queued == 0, f"k={k}"
            await anyio.sleep_until(start + 0.3)
            # Cancelled: 3 s of refill since the first take, a full bucket. Served at 0.2 s:
            # 0.1 s of refill, one token.
            assert limiter.try_acquire(2) is not got, f"k={k}, due_first={due_first}"
            outcomes.append(got)
            if got or (not due_first and k == 5):
                break
            k += 1
            assert k < 100
    assert False in outcomes
    assert outcomes[-1] is True


def test_waiter_cancelled_as_its_tokens_come_due_on_asyncio() -> None:
    """A native `task.cancel()` in the same loop step as the waiter's wake-up."""
    import asyncio

    async def scenario() -> tuple[bool, bool, int]:
        loop = asyncio.get_running_loop()
        limiter = RateLimiter(1, burst=1, max_wait=10)
        await limiter.acquire()
        start = loop.time()
        waiter = asyncio.create_task(limiter.acquire())
        loop.call_at(start + 1.0, waiter.cancel)
        await asyncio.gather(waiter, return_exceptions=True)
        assert loop.time() - start == pytest.approx(1.0)
        return waiter.cancelled(), limiter.try_acquire(), limiter.queued

    cancelled, token_back, queued = run_guarded("asyncio", scenario)
    assert cancelled
    assert token_back  # the token that came due went back to the bucket
    assert queued == 0


# --- admitted <= rate * W + burst (Hypothesis) -----------------------------------------------

ARRIVALS = st.lists(
    st.tuples(
        st.integers(0, 40).map(lambda t: t / 4),  # arrival time
        st.sampled_from([1, 1, 1, 2]),  # tokens
        st.one_of(st.none(), st.integers(0, 12).map(lambda t: t / 4)),  # cancel after
    ),
    max_size=40,
)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(
    arrivals=ARRIVALS,
    rate=st.sampled_from([1.0, 2.0, 4.0]),
    per=st.sampled_from([1.0, 2.0]),
    burst=st.sampled_from([2.0, 3.0]),
    max_wait=st.sampled_from([0.0, 1.0, 3.0, None]),
)
def test_admitted_never_exceeds_rate_times_window_plus_burst(
    backend: str,
    arrivals: list[tuple[float, int, float | None]],
    rate: float,
    per: float,
    burst: float,
    max_wait: float | None,
) -> None:
    async def scenario() -> tuple[list[tuple[float, float]], int]:
        limiter = RateLimiter(rate, per, burst=burst, max_wait=max_wait)
        start = anyio.current_time()
        admitted: list[tuple[float, float]] = []
        retry_afters: list[float | None] = []

        async def arrive(at: float, tokens: int, cancel_after: float | None) -> None:
            await anyio.sleep(at)
            with anyio.CancelScope() as scope:
                if cancel_after is not None:
                    scope.deadline = anyio.current_time() + cancel_after
                try:
                    await limiter.acquire(tokens)
                except ra.RateLimitedError as exc:
                    retry_afters.append(exc.retry_after)
                    return
                admitted.append((anyio.current_time() - start, tokens))

        async with anyio.create_task_group() as tg:
            for at, tokens, cancel_after in arrivals:
                tg.start_soon(arrive, at, tokens, cancel_after)
        # Nothing leaked: after a full refill the whole burst is there again.
        await anyio.sleep(burst * per / rate)
        full = limiter.try_acquire(burst)
        assert all(r is not None and r > 0 for r in retry_afters)
        return admitted, limiter.queued if full else -1

    admitted, queued = run_guarded(backend, scenario)
    assert queued == 0
    assert not window_violations(admitted, rate / per, burst)


# --- shared state and per key -------------------------------------------------------------


@watchdog
async def test_limiters_sharing_a_store_and_name_share_one_bucket() -> None:
    store = MemoryStore()
    first = RateLimiter(2, burst=2, name="partner", store=store)
    second = RateLimiter(2, burst=2, name="partner", store=store)
    other = RateLimiter(2, burst=2, name="other", store=store)
    assert first.try_acquire()
    assert second.try_acquire()
    assert not first.try_acquire()
    assert other.try_acquire()
    with pytest.raises(ValueError, match="another configuration"):
        RateLimiter(3, burst=2, name="partner", store=store)
    with pytest.raises(TypeError, match="needs a name"):
        RateLimiter(2, store=store)
    with pytest.raises(TypeError, match="store must be a MemoryStore"):
        RateLimiter(2, name="x", store=object())  # type: ignore[arg-type]
    # Same rate per second, expressed differently: the same configuration.
    assert not RateLimiter(4, per=2, burst=2, name="partner", store=store).try_acquire()


@watchdog
async def test_per_key_limits_each_key_separately_and_forgets_full_buckets() -> None:
    keyed = RateLimiter.per_key(1, burst=1, name="host", idle_ttl=5.0, max_keys=100)
    assert isinstance(keyed, KeyedRateLimiter)
    await keyed["a"].acquire()
    with pytest.raises(ra.RateLimitedError) as info:
        await keyed["a"].acquire()
    assert info.value.limiter == "host['a']"
    await keyed["b"].acquire()
    assert keyed["a"] is keyed["a"]
    assert "a" in keyed
    assert len(keyed) == 2
    assert repr(keyed) == "KeyedRateLimiter(name='host', keys=2)"
    await anyio.sleep(10)
    for _ in range(4):
        keyed["c"]
    assert len(keyed) == 1  # a and b were full again: dropping them lost nothing


@watchdog
async def test_per_key_keeps_a_bucket_that_is_still_refilling() -> None:
    keyed: KeyedRateLimiter[str] = KeyedRateLimiter(1, per=100, burst=1, idle_ttl=1.0, max_keys=1)
    limiter = keyed["slow"]
    await limiter.acquire()
    await anyio.sleep(10)
    for index in range(10):
        keyed[f"k{index}"]
    assert keyed["slow"] is limiter  # forgetting it would hand out a fresh token early
    with pytest.raises(ra.RateLimitedError):
        await keyed["slow"].acquire()


@watchdog
async def test_per_key_holds_at_most_max_keys_even_when_every_bucket_refills() -> None:
    # Issue #13 item 3: a limiter never dropped a key still refilling, so 4000 distinct keys
    # were held under max_keys=1000 and each new key cost O(keys).
    keyed: KeyedRateLimiter[str] = KeyedRateLimiter(1, per=100, burst=1, max_keys=1000)
    for index in range(4000):
        await keyed[f"ip-{index}"].acquire()
        assert len(keyed) <= 1000
    assert len(keyed) == 1000
    assert "ip-3999" in keyed
    assert "ip-0" not in keyed
    # An evicted key that nobody holds starts again with a full bucket, as documented.
    await keyed["ip-0"].acquire()
    with pytest.raises(ra.RateLimitedError):
        await keyed["ip-0"].acquire()
