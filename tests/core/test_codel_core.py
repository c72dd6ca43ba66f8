"""The CoDel ledger without an event loop: queue order, shedding and the ledger's balance.

A brute-force model keeps the history of the queue's oldest waiter and decides "standing"
from it directly (the delay stayed >= target over the whole last interval); the ledger must
agree with it after every step of random scenarios. Times are whole numbers (milliseconds),
so that comparisons at the boundaries are exact.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_async._core.bulkhead import BulkheadLedger, CoDelLedger

TARGET = 5.0
INTERVAL = 100.0


class Waiter:
    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


DISPATCH = Waiter("dispatch")


class Model:
    """The queue as a list, and the oldest waiter's enqueue time from each change on."""

    def __init__(self) -> None:
        self.queue: list[tuple[Waiter, float]] = []
        self.history: list[tuple[float, float | None]] = [(-math.inf, None)]

    def changed(self, now: float) -> None:
        oldest = self.queue[0][1] if self.queue else None
        if self.history[-1][1] != oldest:
            self.history.append((now, oldest))

    def standing(self, now: float) -> bool:
        """The delay (now - oldest enqueue, 0 when empty) stayed >= target since now - interval."""
        start = now - INTERVAL
        for index, (changed_at, oldest) in enumerate(self.history):
            until = self.history[index + 1][0] if index + 1 < len(self.history) else math.inf
            if until <= start:
                continue
            if oldest is None or max(changed_at, start) - oldest < TARGET:
                return False
        return True


def check_balance(ledger: BulkheadLedger[Waiter]) -> None:
    m = ledger.metrics()
    assert m.submitted == m.running + m.queued + m.rejected + m.completed + m.failed + m.cancelled
    assert 0 <= m.queued <= ledger.max_queue


def test_fifo_while_the_queue_drains() -> None:
    ledger = CoDelLedger(1, 10, target=TARGET, interval=INTERVAL, dispatch=DISPATCH)
    assert ledger.try_admit()
    first, second = Waiter("first"), Waiter("second")
    assert ledger.enqueue_at(first, 0.0)
    assert ledger.enqueue_at(second, 1.0)
    assert ledger.complete() is DISPATCH  # reserved, not yet handed
    assert (ledger.running, len(ledger.waiters)) == (1, 2)
    assert ledger.pick(3.0) is first  # waited 3 ms < target: not standing
    assert not ledger.standing(3.0)


def test_newest_first_and_shedding_once_the_queue_stands() -> None:
    ledger = CoDelLedger(1, 10, target=TARGET, interval=INTERVAL, dispatch=DISPATCH)
    assert ledger.try_admit()
    waiters = [Waiter(f"w{i}") for i in range(4)]
    for i, waiter in enumerate(waiters):
        assert ledger.enqueue_at(waiter, 4.0 * i)
    # The delay passed the target at 5 ms; the queue stands from 105 ms.
    assert not ledger.standing(104.0)
    assert ledger.standing(105.0)
    assert ledger.shed_at(waiters[0]) == 105.0
    assert ledger.shed_at(waiters[1]) == 105.0  # waited 100 ms at 104, standing at 105
    assert ledger.shed_at(waiters[3]) == 112.0
    assert ledger.expire(waiters[0], 104.0, give_up=False) == "waiting"
    assert ledger.expire(waiters[0], 105.0, give_up=False) == "rejected"
    assert ledger.complete() is DISPATCH
    assert ledger.pick(106.0) is waiters[3]  # the newest
    assert [w.label for w in ledger.waiters] == ["w1", "w2"]
    assert ledger.metrics().rejected == 1
    assert ledger.expire(waiters[3], 106.0, give_up=False) == "granted"
    check_balance(ledger)


def test_a_limit_that_shrinks_takes_slots_back_and_one_that_grows_hands_them_out() -> None:
    ledger = CoDelLedger(3, 10, target=TARGET, interval=INTERVAL, dispatch=DISPATCH)
    for _ in range(3):
        assert ledger.try_admit()
    a, b = Waiter("a"), Waiter("b")
    ledger.enqueue_at(a, 0.0)
    ledger.enqueue_at(b, 0.0)
    assert ledger.set_limit(1) == []
    assert ledger.complete() is None  # 3 running > 1: the slot is taken back
    assert ledger.complete() is None
    assert ledger.running == 1
    assert ledger.set_limit(4) == [DISPATCH, DISPATCH]  # two free slots, two waiters
    assert ledger.running == 3
    assert ledger.pick(1.0) is a
    assert ledger.pick(1.0) is b
    assert ledger.set_limit(10) == []
    check_balance(ledger)


def test_the_plain_enqueue_is_refused() -> None:
    ledger = CoDelLedger(1, 1, target=TARGET, interval=INTERVAL, dispatch=DISPATCH)
    with pytest.raises(TypeError, match="enqueue_at"):
        ledger.enqueue(Waiter("w"))


# Arrivals and clock advances weigh more, so that queues stand long enough to matter.
ACTIONS = ["arrive"] * 3 + ["advance"] * 3 + ["complete", "fail", "cancel_running"]
ACTIONS += ["cancel_waiter", "expire", "give_up", "limit"]
STEPS = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.sampled_from([0, 1, 3, 4, 5, 6, 20, 60, 95, 100, 101])),
    min_size=20,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, limit=st.integers(1, 3), max_queue=st.integers(1, 8))
def test_random_scenarios_match_the_model(
    steps: list[tuple[str, int]], limit: int, max_queue: int
) -> None:
    ledger = CoDelLedger(limit, max_queue, target=TARGET, interval=INTERVAL, dispatch=DISPATCH)
    model = Model()
    now = 0.0
    running: list[Waiter] = []  # calls holding a slot
    count = 0

    def handle(token: Waiter | None) -> None:
        """Do what the driver does with what the ledger returned."""
        if token is None:
            return
        assert token is DISPATCH
        standing = model.standing(now)
        picked = ledger.pick(now)
        if picked is None:
            return
        queued = [w for w, _ in model.queue]
        expected = queued[-1] if standing and len(queued) > 1 else queued[0]
        assert picked is expected, (standing, queued)
        model.queue = [(w, t) for w, t in model.queue if w is not picked]
        model.changed(now)
        running.append(picked)

    for action, value in steps:
        if action == "advance":
            now += value
        elif action == "arrive":
            count += 1
            waiter = Waiter(f"c{count}")
            if ledger.try_admit():
                running.append(waiter)
            elif ledger.enqueue_at(waiter, now):
                model.queue.append((waiter, now))
                model.changed(now)
        elif action in ("complete", "fail", "cancel_running") and running:
            running.pop(value % len(running))
            outcome = {"complete": ledger.complete, "fail": ledger.fail}.get(action, ledger.cancel)
            handle(outcome())
        elif action in ("cancel_waiter", "expire", "give_up") and model.queue:
            waiter, since = model.queue[value % len(model.queue)]
            if action == "cancel_waiter":
                assert ledger.cancel_wait_at(waiter, now) is None
                model.queue = [(w, t) for w, t in model.queue if w is not waiter]
            else:
                due = now - since >= INTERVAL and model.standing(now)
                shed_at = ledger.shed_at(waiter)
                assert shed_at is not None
                assert (now >= shed_at) == due
                verdict = ledger.expire(waiter, now, give_up=action == "give_up")
                assert verdict == ("rejected" if due or action == "give_up" else "waiting")
                if verdict == "rejected":
                    model.queue = [(w, t) for w, t in model.queue if w is not waiter]
            model.changed(now)
        elif action == "limit":
            for token in ledger.set_limit(1 + value % 4):
                handle(token)
        assert ledger.standing(now) == model.standing(now), (now, model.history)
        assert [w for w, _ in model.queue] == list(ledger.waiters)
        assert ledger.running == len(running)
        check_balance(ledger)
    for token in ledger.set_limit(100):
        handle(token)
    assert not ledger.waiters or ledger.running == 0 or ledger.running <= ledger.limit
