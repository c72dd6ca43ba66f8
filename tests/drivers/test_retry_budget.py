"""Retry budgets: the pure state against a brute-force recount, and the bound on real loops.

RELIABILITY.md invariant 4 (N failing callers make <= N * (1 + ratio) + floor attempts) and
bug class 8 (nested retries multiply; retries bypass the budget).
"""

from __future__ import annotations

import math

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_async._async.retry import Retry, RetryBudget
from resilient_async._core.budget import RetryBudgetState
from resilient_async.backoff import constant
from resilient_async.context import context_of
from resilient_async.stores import MemoryStore

from ..helpers import asyncio_only

# --- the pure state ---------------------------------------------------------------------------


class Model:
    """Every event kept forever; counts recomputed from scratch with the bucket rule."""

    def __init__(self, ratio: float, min_per_second: float, ttl: float, buckets: int) -> None:
        self.ratio = ratio
        self.floor = min_per_second * ttl
        self.ttl = ttl
        self.width = ttl / buckets
        self.buckets = buckets
        self.calls: list[float] = []
        self.retries: list[float] = []

    def _kept(self, events: list[float], now: float) -> int:
        # An event stays counted while fewer than `buckets + 1` bucket boundaries separate it
        # from now, and never less than `ttl`.
        epoch = math.floor(now / self.width)
        return sum(1 for t in events if epoch - math.floor(t / self.width) <= self.buckets)

    def counts(self, now: float) -> tuple[int, int]:
        return self._kept(self.calls, now), self._kept(self.retries, now)

    def within(self, events: list[float], now: float, age: float) -> int:
        return sum(1 for t in events if now - t <= age)


events = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "withdraw", "withdraw", "withdraw"]),
        st.one_of(st.just(0.0), st.floats(min_value=0, max_value=4), st.just(25.0)),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(
    script=events,
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0]),
    min_per_second=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    ttl=st.sampled_from([1.0, 5.0, 10.0]),
    buckets=st.integers(1, 12),
)
def test_state_matches_a_brute_force_recount(
    script: list[tuple[str, float]],
    ratio: float,
    min_per_second: float,
    ttl: float,
    buckets: int,
) -> None:
    state = RetryBudgetState(ratio, min_per_second, ttl, buckets=buckets)
    model = Model(ratio, min_per_second, ttl, buckets)
    now = 100.0
    for op, dt in script:
        now += dt
        calls, retries = model.counts(now)
        assert state.counts(now) == (calls, retries)
        if op == "deposit":
            state.deposit(now)
            model.calls.append(now)
            continue
        allowed = retries + 1 <= ratio * calls + model.floor
        assert state.try_withdraw(now) is allowed
        if allowed:
            model.retries.append(now)
            # The Finagle bound over the last `ttl`: retries <= ratio * calls + floor, where
            # calls may include ones up to one bucket older than `ttl`.
            recent_retries = model.within(model.retries, now, ttl)
            recent_calls = model.within(model.calls, now, ttl + model.width)
            assert recent_retries <= ratio * recent_calls + model.floor + 1e-9
        assert state.available(now) == pytest.approx(
            max(0.0, ratio * model.counts(now)[0] + model.floor - model.counts(now)[1])
        )


def test_floor_allows_retries_without_calls_and_refills_after_ttl() -> None:
    state = RetryBudgetState(0.0, 0.5, 10.0)  # floor: 5 retries per 10 s
    assert [state.try_withdraw(1.0) for _ in range(6)] == [True] * 5 + [False]
    assert not state.try_withdraw(10.9)  # still inside the window
    assert state.try_withdraw(12.0)  # one bucket past ttl: forgotten


def test_ratio_earns_retries_per_call() -> None:
    state = RetryBudgetState(0.25, 0.0, 10.0)
    for _ in range(8):
        state.deposit(0.0)
    assert [state.try_withdraw(0.0) for _ in range(3)] == [True, True, False]


def test_clock_jumps_and_clock_going_back() -> None:
    state = RetryBudgetState(0.0, 0.1, 10.0)  # one retry per window
    assert state.try_withdraw(5.0)
    assert not state.try_withdraw(4.0)  # a clock going back expires nothing
    assert state.try_withdraw(1e9)  # a jump far past the window forgets everything
    assert not state.try_withdraw(1e9)
    assert not state.try_withdraw(math.nan)  # a broken reading counts in the current bucket


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ratio": -0.1}, ValueError, r"ratio must be a finite number >= 0, got -0.1"),
        ({"ratio": math.nan}, ValueError, "ratio"),
        ({"ratio": math.inf}, ValueError, "ratio"),
        ({"min_per_second": -1}, ValueError, r"min_per_second must be a finite number >= 0"),
        ({"ttl": 0}, ValueError, r"ttl must be a finite number of seconds >= 1e-06, got 0"),
        ({"ttl": -5}, ValueError, "ttl"),
        ({"ttl": math.inf}, ValueError, "ttl"),
        ({"ratio": "0.2"}, TypeError, "ratio must be a number"),
        ({"ttl": None}, TypeError, "ttl"),
        ({"min_per_second": True}, TypeError, "min_per_second"),
    ],
)
def test_bad_budget_input(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=message):
        RetryBudgetState(**{"ratio": 0.2, "min_per_second": 1.0, "ttl": 1.0, **kwargs})  # type: ignore[arg-type]


def test_bad_buckets() -> None:
    with pytest.raises(ValueError, match="buckets must be an int >= 1"):
        RetryBudgetState(0.2, 1.0, 1.0, buckets=0)


# --- the public budget and its store ---------------------------------------------------------


def test_budget_defaults_and_repr() -> None:
    budget = RetryBudget()
    assert (budget.ratio, budget.min_per_second, budget.ttl, budget.name) == (0.2, 10.0, 10.0, None)
    assert repr(budget) == "RetryBudget(ratio=0.2, min_per_second=10.0, ttl=10.0, name=None)"


def test_budgets_share_state_through_a_store() -> None:
    store = MemoryStore()
    first = RetryBudget(0.0, 0.1, 10.0, name="api", store=store)
    second = RetryBudget(0.0, 0.1, 10.0, name="api", store=store)
    other = RetryBudget(0.0, 0.1, 10.0, name="other", store=store)
    assert first.try_withdraw(0.0)
    assert not second.try_withdraw(0.0)  # one retry per window, already used by `first`
    assert other.try_withdraw(0.0)
    with pytest.raises(ValueError, match="already exists"):
        RetryBudget(0.5, 0.1, 10.0, name="api", store=store)
    with pytest.raises(ValueError, match="name is required"):
        RetryBudget(store=store)
    with pytest.raises(TypeError, match="store must be a MemoryStore"):
        RetryBudget(name="x", store="redis://")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name"):
        RetryBudget(name=3)  # type: ignore[arg-type]


# --- the bound on real retry loops (both backends, virtual time) -----------------------------


class Dependency:
    """A dependency that always fails, counting the calls that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        await anyio.sleep(0.001)
        raise ConnectionError("down")


async def run_callers(n: int, call: object) -> list[BaseException]:
    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await call()  # type: ignore[operator]
        except ConnectionError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(caller)
    return errors


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("n", "ratio", "min_per_second"), [(100, 0.2, 1.0), (50, 0.0, 0.5), (200, 0.5, 0.0)]
)
async def test_n_failing_callers_stay_within_the_budget(
    n: int, ratio: float, min_per_second: float
) -> None:
    budget = RetryBudget(ratio, min_per_second, ttl=10.0)
    policy = Retry(attempts=5, backoff=constant(0.01), budget=budget)
    dependency = Dependency()
    errors = await run_callers(n, lambda: policy.call(dependency))
    floor = min_per_second * 10.0
    assert len(errors) == n
    assert dependency.calls <= n * (1 + ratio) + floor
    # The budget is the binding limit here, so it is used up, not wasted.
    assert dependency.calls >= math.floor(n * (1 + ratio) + floor) - 1
    reasons = {context_of(e)["stop_reason"] for e in errors}  # type: ignore[index]
    assert "budget" in reasons


@pytest.mark.anyio
async def test_policies_sharing_a_budget_share_the_bound() -> None:
    budget = RetryBudget(0.1, 0.5, ttl=10.0)  # floor 5
    users = Retry(attempts=4, backoff=constant(0.01), budget=budget, name="users")
    orders = Retry(attempts=4, backoff=constant(0.01), budget=budget, name="orders")
    dependency = Dependency()
    errors = await run_callers(40, lambda: users.call(dependency))
    errors += await run_callers(60, lambda: orders.call(dependency))
    assert len(errors) == 100
    assert dependency.calls <= 100 * 1.1 + 5


@pytest.mark.anyio
@pytest.mark.parametrize("inner_has_budget", [True, False])
async def test_nested_retries_do_not_multiply_beyond_the_budget(inner_has_budget: bool) -> None:
    budget = RetryBudget(0.2, 0.0, ttl=10.0)
    inner = Retry(attempts=3, backoff=constant(0.01), budget=budget if inner_has_budget else None)
    dependency = Dependency()

    async def service() -> None:
        await inner.call(dependency)

    outer = Retry(attempts=3, backoff=constant(0.01), budget=budget)
    errors = await run_callers(50, lambda: outer.call(service))
    assert len(errors) == 50
    # Without the budget: 3 x 3 = 9 calls per request. With it: 1 + ratio per request.
    assert dependency.calls <= 50 * 1.2
    assert budget.available() == pytest.approx(0.0)


@pytest.mark.anyio
async def test_nested_loop_with_its_own_budget_draws_on_both() -> None:
    outer_budget = RetryBudget(0.0, 0.2, ttl=10.0)  # 2 retries in the window
    inner_budget = RetryBudget(0.0, 10.0, ttl=10.0)  # plenty
    inner = Retry(attempts=10, backoff=constant(0.01), budget=inner_budget)
    dependency = Dependency()

    async def service() -> None:
        await inner.call(dependency)

    with pytest.raises(ConnectionError) as info:
        await Retry(attempts=10, backoff=constant(0.01), budget=outer_budget).call(service)
    assert dependency.calls == 3  # the first call, then the 2 retries the outer budget has
    assert context_of(info.value)["stop_reason"] == "budget"  # type: ignore[index]


@pytest.mark.anyio
async def test_attempts_loop_draws_on_the_budget() -> None:
    budget = RetryBudget(0.0, 0.2, ttl=10.0)  # 2 retries in the window
    dependency = Dependency()

    async def loop() -> None:
        async for attempt in Retry(attempts=10, backoff=constant(0.01), budget=budget).attempts():
            with attempt:
                await dependency()

    with pytest.raises(ConnectionError):
        await loop()
    assert dependency.calls == 3


@pytest.mark.anyio
async def test_budget_refills_after_ttl() -> None:
    budget = RetryBudget(0.0, 0.1, ttl=10.0)  # one retry per window
    policy = Retry(attempts=5, backoff=constant(0.5), budget=budget)
    dependency = Dependency()
    with pytest.raises(ConnectionError):
        await policy.call(dependency)
    assert dependency.calls == 2
    assert budget.available() == 0.0
    await anyio.sleep(12)
    assert budget.available() == pytest.approx(1.0)
    with pytest.raises(ConnectionError):
        await policy.call(dependency)
    assert dependency.calls == 4


@pytest.mark.anyio
async def test_success_deposits_and_earns_retries() -> None:
    budget = RetryBudget(0.5, 0.0, ttl=10.0)

    async def ok() -> int:
        return 1

    policy = Retry(budget=budget)
    for _ in range(4):
        assert await policy.call(ok) == 1
    assert budget.available() == pytest.approx(2.0)


# --- the public driver methods: deposit, try_withdraw, withdraw -------------------------------


@pytest.mark.anyio
async def test_deposit_earns_and_withdrawals_spend_retries() -> None:
    budget = RetryBudget(0.5, 0.0, ttl=10.0)
    assert not budget.shared
    assert not budget.try_withdraw()  # nothing earned yet, no floor
    budget.deposit()
    budget.deposit()
    assert budget.available() == pytest.approx(1.0)
    assert budget.try_withdraw()
    assert not await budget.withdraw()  # the one retry earned is spent
    budget.deposit()
    budget.deposit()
    assert await budget.withdraw()
    assert budget.available() == pytest.approx(0.0)


@pytest.mark.anyio
async def test_withdrawals_at_a_given_time_forget_what_is_older_than_ttl() -> None:
    budget = RetryBudget(0.0, 0.1, ttl=10.0)  # one retry per window
    assert budget.try_withdraw(0.0)
    assert not budget.try_withdraw(5.0)
    assert not await budget.withdraw(9.0)
    assert await budget.withdraw(21.0)  # past the window (and one bucket)


@asyncio_only
@pytest.mark.redis
@pytest.mark.anyio
async def test_a_budget_shared_through_a_server_withdraws_only_in_an_awaited_step() -> None:
    from resilient_async.stores import RedisStore

    from ..redis_helpers import URL, prefix_on

    with prefix_on() as prefix:
        store = RedisStore(URL, prefix=prefix, timeout=2.0)
        try:
            budget = RetryBudget(0.0, 0.1, ttl=10.0, name="api", store=store)
            assert budget.shared
            with pytest.raises(RuntimeError, match=r"shared through a server: .*withdraw\(\)"):
                budget.try_withdraw()
            assert await budget.withdraw()
            assert not await budget.withdraw()  # one retry per window, already used
        finally:
            await store.close()
