"""The pure token bucket and bulkhead ledger (RELIABILITY.md invariants 7 and 9, bug class 9).

No event loop here: time is a number passed in. The Hypothesis state machines drive the pure
objects the way the drivers do (a waiter is admitted at its ready time, or gives up) and
check the invariants after every step.
"""

from __future__ import annotations

import gc
import itertools
import math
from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from resilient_async._core.bucket import Reservation, TokenBucket
from resilient_async._core.bulkhead import BulkheadLedger
from resilient_async._core.keyed import KeyedRegistry

EPS = 1e-6


def window_violations(
    admitted: list[tuple[float, float]], rate: float, burst: float
) -> list[tuple[float, float, float]]:
    """Return every window [a, b] in which more than rate * (b - a) + burst was admitted."""
    events = sorted(admitted)
    bad = []
    for i, (start, _) in enumerate(events):
        total = 0.0
        for end, tokens in events[i:]:
            total += tokens
            if total > rate * (end - start) + burst + EPS:
                bad.append((start, end, total))
    return bad


# --- token bucket: examples ---------------------------------------------------------------


def test_bucket_starts_full_and_hands_out_burst_at_once() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.try_take(1, 100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.level(100.0) == 0.0


def test_bucket_refills_at_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert bucket.try_take(3, 0.0)
    assert not bucket.try_take(1, 0.25)
    assert bucket.try_take(1, 0.5)
    assert bucket.level(1.0) == pytest.approx(1.0)


def test_idle_time_accumulates_at_most_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=4.0)
    assert bucket.try_take(4, 0.0)
    assert bucket.level(3600.0) == 4.0
    assert bucket.try_take(4, 3600.0)
    assert not bucket.try_take(1, 3600.0)


def test_a_clock_stepping_back_mints_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=5.0)
    assert bucket.try_take(5, 100.0)
    assert not bucket.try_take(1, 50.0)  # earlier reading: no refill, no error
    assert bucket.level(50.0) == 0.0
    assert not bucket.try_take(1, 100.5)  # and the clock's return refills only from 100
    assert bucket.try_take(1, 101.0)


def test_try_take_refuses_non_positive_requests() -> None:
    bucket = TokenBucket(rate=1.0, burst=5.0)
    assert not bucket.try_take(0, 0.0)
    assert not bucket.try_take(-3, 0.0)
    assert bucket.level(0.0) == 5.0


def test_wait_time_counts_earlier_reservations() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0)
    assert bucket.wait_time(2, 0.0) == 0.0
    assert bucket.try_take(2, 0.0)
    assert bucket.wait_time(1, 0.0) == pytest.approx(0.5)
    first = bucket.reserve(2, 0.0)
    assert first.ready_at == pytest.approx(1.0)
    assert bucket.wait_time(1, 0.0) == pytest.approx(1.5)
    second = bucket.reserve(1, 0.0)
    assert second.ready_at == pytest.approx(1.5)
    assert bucket.waiting == 2


def test_newcomer_never_overtakes_a_waiter() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.try_take(1, 0.0)
    waiter = bucket.reserve(1, 0.0)
    assert not bucket.try_take(1, 0.9)
    assert not bucket.try_take(1, 1.0)  # the refilled token is the waiter's
    bucket.admit(waiter)
    assert not bucket.try_take(1, 1.5)
    assert bucket.try_take(1, 2.0)


def test_cancel_returns_tokens_and_moves_later_waiters_up() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.try_take(1, 0.0)
    first = bucket.reserve(1, 0.0)
    second = bucket.reserve(1, 0.0)
    assert (first.ready_at, second.ready_at) == (1.0, 2.0)
    moved = bucket.cancel(first, 0.5)
    assert moved == [second]
    assert second.ready_at == pytest.approx(1.0)
    assert bucket.cancel(first, 0.6) == []  # twice: nothing more
    assert bucket.waiting == 1


def test_cancel_of_the_last_waiter_frees_its_tokens() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.try_take(1, 0.0)
    waiter = bucket.reserve(1, 0.0)
    assert bucket.cancel(waiter, 0.5) == []
    assert bucket.try_take(1, 1.0)


def test_cancel_after_ready_returns_tokens_capped_at_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=2.0)
    assert bucket.try_take(2, 0.0)
    waiter = bucket.reserve(1, 0.0)
    assert waiter.ready_at == 1.0
    bucket.cancel(waiter, 10.0)  # woken long ago, cancelled before it resumed
    assert bucket.level(10.0) == 2.0


def test_admit_of_an_unknown_reservation_is_harmless() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0)
    bucket.admit(Reservation(1, 0.0))
    assert bucket.waiting == 0
    assert "Reservation(tokens=1" in repr(Reservation(1, 0.0))
    assert "TokenBucket(rate=1.0" in repr(bucket)


def test_is_idle_only_when_full_and_nobody_waits() -> None:
    bucket = TokenBucket(rate=1.0, burst=2.0)
    assert bucket.is_idle(0.0)
    assert bucket.try_take(1, 0.0)
    assert not bucket.is_idle(0.5)
    assert bucket.is_idle(1.0)


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        (0.0, 1.0, "rate must be"),
        (-1.0, 1.0, "rate must be"),
        (math.inf, 1.0, "rate must be"),
        (math.nan, 1.0, "rate must be"),
        (1.0, 0.0, "burst must be"),
        (1.0, math.inf, "burst must be"),
    ],
)
def test_bucket_rejects_bad_settings(rate: float, burst: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucket(rate, burst)


# --- token bucket: a state machine ------------------------------------------------------------


class BucketMachine(RuleBasedStateMachine):
    """Arrivals take, reserve or are refused; waiters are admitted at their ready time or give up.

    After every step: the level never exceeds burst, waiters are queued in ready-time order,
    and every window [a, b] admitted at most rate * (b - a) + burst tokens.
    """

    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.rate = 1.0
        self.burst = 1.0
        self.bucket = TokenBucket(self.rate, self.burst)
        self.admitted: list[tuple[float, float]] = []
        self.outstanding: list[Reservation] = []

    @rule(rate=st.sampled_from([0.5, 1.0, 3.0]), burst=st.sampled_from([1.0, 2.0, 5.0]))
    @precondition(lambda self: not self.admitted and not self.outstanding and self.now == 0.0)
    def configure(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.bucket = TokenBucket(rate, burst)

    def _admit_ready(self) -> None:
        for reservation in [r for r in self.outstanding if r.ready_at <= self.now + EPS]:
            self.bucket.admit(reservation)
            self.outstanding.remove(reservation)
            self.admitted.append((self.now, reservation.tokens))

    @rule(dt=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        # The driver wakes each waiter at its ready time: move time to the next one at most.
        self._admit_ready()
        target = self.now + dt
        pending = [r.ready_at for r in self.outstanding if r.ready_at < target]
        # Due waiters are admitted at the next step, at this same time: meanwhile `cancel`
        # can hit one that was woken but has not resumed.
        self.now = min([target, *pending])

    @rule(tokens=st.sampled_from([1.0, 0.5, 2.0]))
    def take(self, tokens: float) -> None:
        if tokens > self.burst:
            return
        if self.bucket.try_take(tokens, self.now):
            self.admitted.append((self.now, tokens))

    @rule(target=reservations, tokens=st.sampled_from([1.0, 2.0]))
    def reserve(self, tokens: float) -> Reservation | None:
        if tokens > self.burst:
            return None
        if self.bucket.try_take(tokens, self.now):
            self.admitted.append((self.now, tokens))
            return None
        reservation = self.bucket.reserve(tokens, self.now)
        assert reservation.ready_at >= self.now
        self.outstanding.append(reservation)
        return reservation

    @rule(reservation=consumes(reservations))
    def cancel(self, reservation: Reservation | None) -> None:
        if reservation is None:
            return
        waiting = reservation in self.outstanding
        moved = self.bucket.cancel(reservation, self.now)
        if waiting:
            self.outstanding.remove(reservation)
        else:
            assert moved == []

    @invariant()
    def level_at_most_burst(self) -> None:
        assert self.bucket.level(self.now) <= self.burst + EPS
        assert self.bucket.waiting == len(self.outstanding)

    @invariant()
    def queue_in_ready_order(self) -> None:
        queue = [ready_at for _, ready_at in self.bucket.queue()]
        assert all(a <= b + EPS for a, b in itertools.pairwise(queue))

    @invariant()
    def admitted_within_rate_and_burst(self) -> None:
        assert not window_violations(self.admitted, self.rate, self.burst)


BucketMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestBucketMachine = BucketMachine.TestCase


def test_withdraw_moves_the_head_up_at_once_and_the_rest_as_they_reach_it() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.try_take(1, 0.0)
    first, second, third = (bucket.reserve(1, 0.0) for _ in range(3))
    assert bucket.withdraw(second, 0.5) is None  # not the head: the head's time stands
    assert first.ready_at == 1.0
    assert [ready for _, ready in bucket.queue()] == [1.0, 2.0]
    assert bucket.withdraw(first, 0.5) is third  # the new head, ready two shifts earlier
    assert (bucket.head, third.ready_at, bucket.waiting) == (third, 1.0, 1)
    assert bucket.withdraw(first, 0.6) is None  # twice: nothing more
    assert bucket.admit(third) is None
    assert (bucket.head, bucket.waiting, bucket.queue()) == (None, 0, [])


def test_admit_of_the_head_hands_the_head_on() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.try_take(1, 0.0)
    first, second = bucket.reserve(1, 0.0), bucket.reserve(1, 0.0)
    assert bucket.admit(second) is None  # woken early by a driver that times every waiter
    assert bucket.admit(first) is None
    first, second = bucket.reserve(1, 3.0), bucket.reserve(1, 3.0)
    assert bucket.admit(first) is second
    assert bucket.admit(Reservation(1, 0.0)) is None  # another bucket's: harmless
    assert bucket.withdraw(Reservation(1, 0.0), 3.0) is None
    assert bucket.waiting == 1


class WithdrawMachine(RuleBasedStateMachine):
    """`withdraw` (lazy shift) against `cancel` (every shift at once) on a twin bucket.

    Both buckets see the same arrivals, admissions and give-ups, at any position in the
    queue; one gives up with `withdraw`, the other with `cancel`. After every step the
    lazy bucket must hold the same reservations, level and ready times (its `queue()`), its
    head's `ready_at` must be exact, and what it returns must name the new head.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.rate, self.burst = 1.0, 2.0
        self.lazy = TokenBucket(self.rate, self.burst)
        self.eager = TokenBucket(self.rate, self.burst)
        self.queue: list[tuple[Reservation, Reservation]] = []  # (lazy, eager), oldest first
        self.admitted: list[tuple[float, float]] = []

    @rule(rate=st.sampled_from([0.5, 1.0, 3.0]), burst=st.sampled_from([1.0, 2.0, 5.0]))
    @precondition(lambda self: not self.admitted and not self.queue and self.now == 0.0)
    def configure(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.lazy, self.eager = TokenBucket(rate, burst), TokenBucket(rate, burst)

    @rule(dt=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        # As the drivers do: due waiters are admitted, oldest first, before time moves on,
        # and time moves to the next ready time at most.
        while self.queue and self.queue[0][1].ready_at <= self.now + EPS:
            self._admit(0)
        target = self.now + dt
        self.now = min([target, *(e.ready_at for _, e in self.queue if e.ready_at < target)])

    @rule(tokens=st.sampled_from([0.5, 1.0, 2.0]))
    def arrive(self, tokens: float) -> None:
        if tokens > self.burst:
            return
        took = self.lazy.try_take(tokens, self.now)
        assert self.eager.try_take(tokens, self.now) == took
        if took:
            self.admitted.append((self.now, tokens))
            return
        lazy, eager = self.lazy.reserve(tokens, self.now), self.eager.reserve(tokens, self.now)
        assert lazy.ready_at == eager.ready_at
        self.queue.append((lazy, eager))

    @rule(data=st.data(), eagerly=st.booleans())
    @precondition(lambda self: bool(self.queue))
    def give_up(self, data: st.DataObject, eagerly: bool) -> None:
        index = data.draw(st.integers(0, len(self.queue) - 1))
        lazy, eager = self.queue.pop(index)
        moved = self.eager.cancel(eager, self.now)
        assert moved == [e for _, e in self.queue[index:]]
        if eagerly:  # a driver may still cancel eagerly: the two ways mix
            assert self.lazy.cancel(lazy, self.now) == [r for r, _ in self.queue[index:]]
            return
        successor = self.lazy.withdraw(lazy, self.now)
        assert successor is (self.queue[0][0] if index == 0 and self.queue else None)

    @rule(data=st.data())
    @precondition(lambda self: bool(self.queue))
    def admit_a_ready_one(self, data: st.DataObject) -> None:
        ready = [i for i, (_, eager) in enumerate(self.queue) if eager.ready_at <= self.now + EPS]
        if not ready:
            return
        self._admit(data.draw(st.sampled_from(ready)))  # the head, or one woken before it

    def _admit(self, index: int) -> None:
        lazy, eager = self.queue.pop(index)
        assert self.eager.admit(eager) is (self.queue[0][1] if index == 0 and self.queue else None)
        successor = self.lazy.admit(lazy)
        assert successor is (self.queue[0][0] if index == 0 and self.queue else None)
        # Its tokens were paid for at its ready time, whenever its waiter got to them.
        self.admitted.append((eager.ready_at, lazy.tokens))

    @invariant()
    def the_lazy_bucket_agrees(self) -> None:
        assert self.lazy.waiting == self.eager.waiting == len(self.queue)
        assert self.lazy.level(self.now) == self.eager.level(self.now)
        assert self.lazy.level(self.now) <= self.burst
        seen = self.lazy.queue()
        assert [r for r, _ in seen] == [r for r, _ in self.queue]
        assert [ready for _, ready in seen] == pytest.approx([e.ready_at for _, e in self.queue])
        head = self.lazy.head
        assert head is (self.queue[0][0] if self.queue else None)
        if head is not None:
            assert head.ready_at == pytest.approx(self.queue[0][1].ready_at)
        # A reservation's own `ready_at` is never earlier than its true time.
        assert all(r.ready_at >= ready - EPS for r, ready in seen)
        assert all(a <= b + EPS for (_, a), (_, b) in itertools.pairwise(seen))

    @invariant()
    def admitted_within_rate_and_burst(self) -> None:
        assert not window_violations(self.admitted, self.rate, self.burst)


WithdrawMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)
TestWithdrawMachine = WithdrawMachine.TestCase


# --- bulkhead ledger: a state machine against a model ----------------------------------------


class LedgerMachine(RuleBasedStateMachine):
    """The ledger against a plain model: slots, a FIFO queue, outcome counts.

    Steps are what the driver does: admit or queue a caller, finish a call (ok, failed,
    cancelled), cancel or time out a waiter (also after it was handed a slot). After each
    step the ledger must balance and match the model.
    """

    def __init__(self) -> None:
        super().__init__()
        self.limit = 2
        self.max_queue = 2
        self.ledger: BulkheadLedger[int] = BulkheadLedger(self.limit, self.max_queue)
        self.next_id = 0
        self.running: list[int] = []  # callers holding a slot (including woken waiters)
        self.queue: deque[int] = deque()
        self.counts = {"rejected": 0, "completed": 0, "failed": 0, "cancelled": 0}
        self.submitted = 0
        self.woken: list[int] = []  # handed a slot by a release, in order
        # The most calls that may run: the limit, or more while a shrunk limit is met.
        self.cap = self.limit

    @rule(limit=st.integers(1, 3), max_queue=st.integers(0, 3))
    @precondition(lambda self: self.submitted == 0)
    def configure(self, limit: int, max_queue: int) -> None:
        self.limit, self.max_queue, self.cap = limit, max_queue, limit
        self.ledger = BulkheadLedger(limit, max_queue)

    @rule(limit=st.integers(1, 4))
    def resize(self, limit: int) -> None:
        woken = self.ledger.set_limit(limit)
        self.limit = limit
        expected = []
        while self.queue and len(self.running) + len(expected) < limit:  # the oldest first
            expected.append(self.queue.popleft())
        assert woken == expected
        self.running.extend(expected)
        self.woken.extend(expected)
        self.cap = max(limit, len(self.running))

    @rule()
    def arrive(self) -> None:
        caller = self.next_id
        self.next_id += 1
        self.submitted += 1
        if self.ledger.try_admit():
            assert len(self.running) < self.limit
            assert not self.queue
            self.running.append(caller)
        elif self.ledger.enqueue(caller):
            assert len(self.queue) < self.max_queue
            self.queue.append(caller)
        else:
            assert len(self.queue) == self.max_queue
            self.counts["rejected"] += 1

    def _handed(self, successor: int | None) -> None:
        # The freed slot goes on unless a shrunk limit takes it back (it ran over the limit).
        if self.queue and len(self.running) < self.limit:
            expected = self.queue.popleft()
            assert successor == expected  # FIFO
            self.running.append(expected)
            self.woken.append(expected)
        else:
            assert successor is None
        self.cap = max(self.limit, len(self.running))

    @rule(data=st.data(), outcome=st.sampled_from(["complete", "fail", "cancel"]))
    @precondition(lambda self: bool(self.running))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        caller = data.draw(st.sampled_from(self.running))
        self.running.remove(caller)
        successor = getattr(self.ledger, outcome)()
        self.counts[
            {"complete": "completed", "fail": "failed", "cancel": "cancelled"}[outcome]
        ] += 1
        self._handed(successor)

    @rule(data=st.data())
    @precondition(lambda self: bool(self.queue))
    def cancel_waiter(self, data: st.DataObject) -> None:
        caller = data.draw(st.sampled_from(list(self.queue)))
        self.queue.remove(caller)
        assert self.ledger.cancel_wait(caller) is None
        self.counts["cancelled"] += 1

    @rule(data=st.data())
    @precondition(lambda self: bool(self.queue))
    def time_out_waiter(self, data: st.DataObject) -> None:
        caller = data.draw(st.sampled_from(list(self.queue)))
        self.queue.remove(caller)
        assert self.ledger.time_out(caller)
        self.counts["rejected"] += 1

    @rule()
    @precondition(lambda self: bool(self.woken))
    def woken_then_cancelled(self) -> None:
        # Handed a slot, cancelled before it resumed: the slot goes on, the call counts as
        # cancelled.
        caller = self.woken.pop()
        if caller not in self.running:
            return
        self.running.remove(caller)
        successor = self.ledger.cancel_wait(caller)
        self.counts["cancelled"] += 1
        self._handed(successor)

    @rule()
    @precondition(lambda self: bool(self.woken))
    def woken_then_timed_out(self) -> None:
        # The slot arrived as max_wait passed: the waiter keeps it and runs.
        caller = self.woken[-1]
        if caller in self.running:
            assert not self.ledger.time_out(caller)

    @invariant()
    def ledger_balances_and_matches_the_model(self) -> None:
        m = self.ledger.metrics()
        assert m.running <= self.cap
        assert m.queued <= self.max_queue
        assert m.submitted == (
            m.running + m.queued + m.rejected + m.completed + m.failed + m.cancelled
        )
        assert m.running == len(self.running)
        assert not m.queued or m.running >= self.limit  # nobody waits beside a free slot
        assert list(self.ledger.waiters) == list(self.queue)
        assert m.queued == len(self.ledger.waiters) == len(self.queue)
        assert m.submitted == self.submitted
        assert (m.rejected, m.completed, m.failed, m.cancelled) == (
            self.counts["rejected"],
            self.counts["completed"],
            self.counts["failed"],
            self.counts["cancelled"],
        )
        assert self.ledger.is_idle() == (not self.running and not self.queue)


LedgerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase


# --- the keyed registry -------------------------------------------------------------------


class Guard:
    def __init__(self, key: str) -> None:
        self.key = key
        self.busy = False


def registry(max_keys: int = 3, idle_ttl: float = 10.0) -> KeyedRegistry[str, Guard]:
    return KeyedRegistry(
        Guard, lambda guard, now: not guard.busy, max_keys=max_keys, idle_ttl=idle_ttl
    )


def test_registry_returns_one_guard_per_key() -> None:
    keyed = registry()
    first = keyed.get("a", 0.0)
    assert keyed.get("a", 1.0) is first
    assert keyed.get("b", 1.0) is not first
    assert len(keyed) == 2
    assert "a" in keyed
    assert list(keyed.keys()) == ["a", "b"]


def test_registry_drops_idle_keys_after_ttl() -> None:
    keyed = registry(max_keys=100, idle_ttl=10.0)
    for index in range(4):
        keyed.get(f"k{index}", 0.0)
    for step in range(4):
        keyed.get("fresh", 11.0 + step)
    assert list(keyed.keys()) == ["fresh"]


def test_registry_never_drops_a_busy_guard() -> None:
    keyed = registry(max_keys=2, idle_ttl=10.0)
    busy = keyed.get("busy", 0.0)
    busy.busy = True
    for index in range(10):
        keyed.get(f"k{index}", 20.0 + index)
    assert keyed.get("busy", 40.0) is busy
    assert len(keyed) <= 2 + 1


def test_registry_bounds_idle_keys_by_max_keys() -> None:
    keyed = registry(max_keys=3, idle_ttl=1e9)
    for index in range(100):
        keyed.get(f"k{index}", float(index))
    assert len(keyed) == 3
    assert list(keyed.keys()) == ["k97", "k98", "k99"]


def test_registry_holds_at_most_max_keys_even_when_all_are_busy() -> None:
    # Issue #13 item 3: max_keys is a hard bound; a busy guard that is evicted is still
    # found by its key while anyone holds it, so its limit is never split in two.
    keyed = registry(max_keys=2, idle_ttl=1e9)
    guards = [keyed.get(f"k{index}", 0.0) for index in range(2)]
    for guard in guards:
        guard.busy = True
    for index in range(100):
        keyed.get(f"extra{index}", 0.0)
        assert len(keyed) == 2
    assert keyed.get("k0", 1.0) is guards[0]
    assert keyed.get("k1", 1.0) is guards[1]
    assert len(keyed) == 2


def test_an_evicted_guard_nobody_holds_is_built_again() -> None:
    built: list[str] = []

    def build(key: str) -> Guard:
        built.append(key)
        return Guard(key)

    keyed = KeyedRegistry(build, lambda guard, now: not guard.busy, max_keys=1, idle_ttl=1e9)
    keyed.get("a", 0.0)
    keyed.get("b", 0.0)  # evicts "a", whose guard nobody holds: it is gone
    gc.collect()
    assert keyed.get("a", 0.0).key == "a"
    assert built == ["a", "b", "a"]
    assert len(keyed) == 1


@pytest.mark.parametrize("size", [1_000, 10_000, 100_000])
def test_a_lookup_examines_a_constant_number_of_guards(size: int) -> None:
    # The old registry checked every held guard for a new key once full (O(keys)).
    checks = 0

    def is_idle(guard: Guard, now: float) -> bool:
        nonlocal checks
        checks += 1
        return not guard.busy

    keyed: KeyedRegistry[str, Guard] = KeyedRegistry(Guard, is_idle, max_keys=size, idle_ttl=1e9)
    held = [keyed.get(f"k{index}", 0.0) for index in range(size)]
    for guard in held:
        guard.busy = True
    checks = 0
    for index in range(1_000):
        keyed.get(f"new{index}", 1.0)
    assert checks <= 1_000 * KeyedRegistry._SWEEP
    assert len(keyed) == size


def test_give_back_returns_tokens_up_to_the_burst_and_moves_no_reservation() -> None:
    bucket = TokenBucket(rate=1.0, burst=3.0)
    assert bucket.try_take(3, 0.0)
    waiter = bucket.reserve(1, 0.0)
    assert waiter.ready_at == 1.0
    bucket.give_back(2, 0.0)
    assert bucket.level(0.0) == 1.0
    assert waiter.ready_at == 1.0  # unlike `cancel`, nobody's wait moves
    bucket.give_back(10, 0.0)
    assert bucket.level(0.0) == 3.0  # never beyond the burst
