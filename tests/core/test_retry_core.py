"""The pure retry core: `RetryPlan.decide`, `settle`, `attempt_limit` (no clock, no I/O)."""

from __future__ import annotations

import ast
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from resilient_async import backoff
from resilient_async._core import retry as core
from resilient_async._core.retry import GIVE_UP, RETRY_NOW, Decision, RetryPlan


class Recorder(backoff.Backoff):
    """A schedule that records what the plan passes in and answers a fixed delay."""

    def __init__(self, delay: float) -> None:
        self.value = delay
        self.calls: list[tuple[int, float]] = []

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        self.calls.append((attempt, previous))
        return self.value


def plan(
    delay: float = 1.0,
    *,
    limit: int = 3,
    max_retry_after: float = 60.0,
    no_wait: bool = False,
) -> RetryPlan:
    return RetryPlan(
        backoff.constant(delay),
        random.Random(0),
        limit=limit,
        max_retry_after=max_retry_after,
        no_wait=no_wait,
    )


def test_the_module_reads_no_clock_context_or_io() -> None:
    tree = ast.parse(Path(core.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "random", "typing", "backoff"}


def test_a_retryable_failure_retries_after_the_backoff_delay() -> None:
    decision = plan(0.5).decide("retryable", None, 0.0, math.inf)
    assert decision.retries
    assert decision.delay == 0.5
    assert decision.stop_reason is None
    assert repr(decision) == "Decision(retry after 0.5 s)"


@pytest.mark.parametrize("outcome", ["not_retryable", "circuit_open"])
def test_a_failure_that_is_not_retryable_gives_up_at_once(outcome: core.Outcome) -> None:
    schedule = Recorder(1.0)
    retry_plan = RetryPlan(schedule, random.Random(0), limit=5, max_retry_after=60.0)
    decision = retry_plan.decide(outcome, None, 0.0, math.inf)
    assert decision is GIVE_UP[outcome]
    assert not decision.retries
    assert decision.stop_reason == outcome
    assert repr(decision) == f"Decision(give up: {outcome})"
    assert schedule.calls == []  # no delay drawn


def test_attempts_run_out_at_the_limit() -> None:
    retry_plan = plan(limit=3)
    assert retry_plan.decide("retryable", None, 0.0, math.inf).retries
    assert retry_plan.next_attempt() == 2
    assert retry_plan.decide("retryable", None, 0.0, math.inf).retries
    assert retry_plan.next_attempt() == 3
    assert retry_plan.decide("retryable", None, 0.0, math.inf) is GIVE_UP["attempts"]
    assert plan(limit=1).decide("retryable", None, 0.0, math.inf) is GIVE_UP["attempts"]


def test_the_backoff_gets_the_attempt_and_its_previous_delay() -> None:
    schedule = Recorder(0.25)
    retry_plan = RetryPlan(schedule, random.Random(0), limit=4, max_retry_after=60.0)
    for _ in range(3):
        retry_plan.decide("retryable", None, 0.0, math.inf)
        retry_plan.next_attempt()
    assert schedule.calls == [(1, 0.0), (2, 0.25), (3, 0.25)]


def test_a_hint_raises_the_delay_in_full_and_a_shorter_one_is_ignored() -> None:
    assert plan(1.0).decide("retryable", 30.0, 0.0, math.inf).delay == 30.0
    assert plan(1.0).decide("retryable", 0.5, 0.0, math.inf).delay == 1.0


def test_a_hint_longer_than_max_retry_after_gives_up() -> None:
    assert (
        plan(max_retry_after=5.0).decide("retryable", 5.5, 0.0, math.inf) is GIVE_UP["retry_after"]
    )
    assert plan(max_retry_after=5.0).decide("retryable", 5.0, 0.0, math.inf).delay == 5.0


def test_a_wait_that_would_reach_the_deadline_gives_up() -> None:
    assert plan(1.0).decide("retryable", None, 10.0, 11.0) is GIVE_UP["deadline"]
    assert plan(1.0).decide("retryable", None, 10.0, 11.5).delay == 1.0
    # A hint that crosses the deadline gives up as "retry_after": the server's wait is the cause.
    assert plan(1.0).decide("retryable", 3.0, 10.0, 12.0) is GIVE_UP["retry_after"]


def test_no_wait_makes_every_wait_zero_but_a_zero_wait_still_cannot_pass_the_deadline() -> None:
    assert plan(5.0, no_wait=True).decide("retryable", 30.0, 0.0, math.inf).delay == 0.0
    # Hinted, but the wait is zero: the deadline, not the hint, stops the loop.
    assert plan(5.0, no_wait=True).decide("retryable", 30.0, 3.0, 3.0) is GIVE_UP["deadline"]


def test_a_zero_wait_retry_is_one_shared_decision() -> None:
    assert plan(0.0).decide("retryable", None, 0.0, math.inf) is RETRY_NOW
    assert plan(5.0, no_wait=True).decide("retryable", None, 0.0, math.inf) is RETRY_NOW
    assert RETRY_NOW.retries
    assert RETRY_NOW.delay == 0.0


def test_settle_keeps_an_allowed_retry_and_turns_a_refused_one_into_a_budget_stop() -> None:
    retry = Decision(0.5)
    assert RetryPlan.settle(retry, True) is retry
    assert RetryPlan.settle(retry, False) is GIVE_UP["budget"]
    assert RetryPlan.settle(GIVE_UP["deadline"], False) is GIVE_UP["deadline"]


@settings(max_examples=200, deadline=None)
@given(
    delay=st.floats(0.0, 100.0),
    hint=st.none() | st.floats(0.0, 1000.0),
    max_retry_after=st.floats(0.0, 1000.0),
    now=st.floats(0.0, 1e6),
    left=st.none() | st.floats(0.0, 1000.0),
    no_wait=st.booleans(),
)
def test_a_retry_never_waits_past_the_deadline_nor_less_than_a_hint(
    delay: float,
    hint: float | None,
    max_retry_after: float,
    now: float,
    left: float | None,
    no_wait: bool,
) -> None:
    deadline = math.inf if left is None else now + left
    retry_plan = plan(delay, max_retry_after=max_retry_after, no_wait=no_wait)
    decision = retry_plan.decide("retryable", hint, now, deadline)
    if hint is not None and hint > max_retry_after:
        assert decision is GIVE_UP["retry_after"]
    elif decision.retries:
        assert now + decision.delay < deadline
        if no_wait:
            assert decision.delay == 0.0
        else:
            assert decision.delay == max(delay, hint or 0.0)
    else:
        expected = max(delay, hint or 0.0)
        wait = 0.0 if no_wait else expected
        assert now + wait >= deadline
        hinted = hint is not None and hint >= delay and wait > 0.0
        assert decision is GIVE_UP["retry_after" if hinted else "deadline"]


class RetryLoopModel(RuleBasedStateMachine):
    """A loop driven through random failures, budget answers and clocks, against a model."""

    @initialize(
        limit=st.integers(1, 6),
        delay=st.floats(0.0, 2.0),
        no_wait=st.booleans(),
        window=st.none() | st.floats(0.0, 20.0),
    )
    def start(self, limit: int, delay: float, no_wait: bool, window: float | None) -> None:
        self.limit = limit
        self.delay = delay
        self.no_wait = no_wait
        self.plan = plan(delay, limit=limit, max_retry_after=10.0, no_wait=no_wait)
        self.now = 0.0
        self.deadline = math.inf if window is None else window
        self.retries = 0
        self.stopped: str | None = None

    @rule(
        outcome=st.sampled_from(["retryable", "retryable", "not_retryable", "circuit_open"]),
        hint=st.none() | st.floats(0.0, 12.0),
        allowed=st.booleans(),
    )
    def fail(self, outcome: core.Outcome, hint: float | None, allowed: bool) -> None:
        if self.stopped is not None:
            return
        attempt = self.plan.attempt
        decision = RetryPlan.settle(
            self.plan.decide(outcome, hint, self.now, self.deadline), allowed
        )
        wait = 0.0 if self.no_wait else max(self.delay, hint or 0.0)
        if outcome != "retryable":
            expected: str | None = outcome
        elif attempt >= self.limit:
            expected = "attempts"
        elif hint is not None and hint > 10.0:
            expected = "retry_after"
        elif self.now + wait >= self.deadline:
            hinted = hint is not None and hint >= self.delay and wait > 0.0
            expected = "retry_after" if hinted else "deadline"
        elif not allowed:
            expected = "budget"
        else:
            expected = None
        assert decision.stop_reason == expected
        if expected is None:
            assert decision.delay == wait
            self.now += decision.delay
            self.retries += 1
            assert self.plan.next_attempt() == attempt + 1
        else:
            assert decision.delay == 0.0
            self.stopped = expected

    @rule(seconds=st.floats(0.0, 5.0))
    def attempt_runs(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def attempts_stay_within_the_limit(self) -> None:
        if hasattr(self, "plan"):
            assert self.plan.attempt == self.retries + 1 <= self.limit


TestRetryLoopModel = RetryLoopModel.TestCase
TestRetryLoopModel.settings = settings(max_examples=100, stateful_step_count=15, deadline=None)
