"""One order as a `Transaction`: reserve, charge, ship; each step narrated, undone on failure."""

from __future__ import annotations

import random
from collections.abc import Callable

import anyio

from ... import backoff
from ..._async.retry import Retry
from ..._async.timeout import deadline
from ..._async.transaction import Transaction
from ..._journal import SQLiteJournal
from ...errors import CompensationError, DeadlineExceeded
from ...instrumentation import Event
from ..repeatable import SeededBackoff
from .compensations import NARRATOR, cancel_shipment, refund, release
from .shop import CardDeclined, CarrierDown, Order, charge, reserve, ship

__all__ = ["CHECKOUT_DEADLINE", "CRASH_FATE", "FATES", "SHORT_FATES", "Saga", "watch"]

CHECKOUT_DEADLINE = 1.0  # seconds an order may take, end to end
CANCEL_AFTER = 0.3  # when the impatient customer closes the tab, into the shipping step

# fate: what goes wrong, as the order's header says it
FATES = {
    "ok": "every step works",
    "declined": "the card is declined",
    "carrier_down": "the carrier is down",
    "cancelled": "the customer cancels while it ships",
    "deadline": f"shipping hangs past the {CHECKOUT_DEADLINE:g} s checkout deadline",
    "refund_glitch": "the carrier is down and the first refund attempt fails",
    "refund_rejected": "the carrier is down and the bank rejects the refund",
}
CRASH_FATE = "the process is killed after the charge"
# The same fates, short, for the final table.
SHORT_FATES = {
    "ok": "all steps work",
    "declined": "card declined",
    "carrier_down": "carrier down",
    "cancelled": "customer cancels",
    "deadline": "shipping hangs",
    "refund_glitch": "carrier down, refund glitch",
    "refund_rejected": "carrier down, refund refused",
    "crash": "process killed",
}


class Saga:
    """Places orders one after another and narrates each step."""

    def __init__(self, path: str, journal: SQLiteJournal, rng: random.Random) -> None:
        self.path = path
        self.journal = journal
        self.rng = rng
        self.outcomes: dict[int, str] = {}
        jitter = backoff.exponential(0.05, max=0.4, jitter="full")
        self.book_retry = Retry(
            attempts=3, backoff=SeededBackoff(jitter, rng), name="carrier booking"
        )
        self.refund_retry = Retry(
            attempts=3, backoff=SeededBackoff(jitter, rng), name="compensation retry"
        )

    async def place(self, order: Order) -> None:
        """Run one order as a Transaction and record how it ended."""
        say = NARRATOR.get()
        say(f"order {order.number}: {order.what}; {FATES[order.fate]}")
        try:
            with anyio.CancelScope() as scope:
                if order.fate == "deadline":
                    with deadline(CHECKOUT_DEADLINE):
                        await self._transaction(order, scope)
                else:
                    await self._transaction(order, scope)
                self.outcomes[order.number] = "committed"
                say("  => committed: the compensations are dropped")
            if scope.cancelled_caught:
                self.outcomes[order.number] = "rolled back: cancelled"
                say("  => rolled back, and the cancellation went on up (caught here)")
        except CompensationError as error:
            original, *failed = error.exceptions
            self.outcomes[order.number] = f"NEEDS A HUMAN: {type(failed[0]).__name__}"
            say(
                f"  => CompensationError: {type(original).__name__} first, then "
                f"{', '.join(type(f).__name__ for f in failed)}; every other undo ran"
            )
        except (CardDeclined, CarrierDown, DeadlineExceeded) as error:
            self.outcomes[order.number] = f"rolled back: {type(error).__name__}"
            say(f"  => rolled back; the caller gets the original {type(error).__name__}")

    async def _transaction(self, order: Order, scope: anyio.CancelScope) -> None:
        say = NARRATOR.get()
        async with Transaction(
            f"order-{order.number}", journal=self.journal, compensation_retry=self.refund_retry
        ) as tx:
            await anyio.sleep(self.rng.uniform(0.01, 0.03))
            say(f"  reserve {order.quantity} x {order.sku}: ok, {reserve(self.path, order)}")
            tx.on_rollback(release, self.path, order.number, order.sku, order.quantity)

            await anyio.sleep(self.rng.uniform(0.02, 0.05))
            try:
                charge_id = charge(self.path, order)
            except CardDeclined as error:
                say(f"  charge {order.amount}.00: CardDeclined ({error}): not retried")
                say("  rollback, newest first:")
                raise
            say(f"  charge {order.amount}.00: ok, {charge_id}")
            tx.on_rollback(refund, self.path, order.number, charge_id)

            shipment_id = await self._ship(order, scope, say)
            tx.on_rollback(cancel_shipment, self.path, order.number, shipment_id)

    async def _ship(
        self, order: Order, scope: anyio.CancelScope, say: Callable[[str], None]
    ) -> str:
        if order.fate == "cancelled":
            say(f"  ship: booking ... the customer closes the tab after {CANCEL_AFTER:g} s")
            scope.deadline = anyio.current_time() + CANCEL_AFTER
            try:
                await anyio.sleep_forever()
            finally:
                say("  rollback, newest first (cancelled: the undo is shielded):")
        if order.fate == "deadline":
            try:
                say("  ship: booking ... the carrier does not answer")
                await anyio.sleep_forever()
            finally:
                say(f"  deadline of {CHECKOUT_DEADLINE:g} s reached; rollback, newest first:")

        async def book() -> str:
            await anyio.sleep(self.rng.uniform(0.02, 0.05))
            if order.fate in ("carrier_down", "refund_glitch", "refund_rejected"):
                say("  ship: CarrierDown (booking refused)")
                raise CarrierDown("the carrier refused the booking")
            return ship(self.path, order)

        try:
            shipment_id = await self.book_retry.call(book)
        except CarrierDown:
            say("  ship: given up after 3 attempts; rollback, newest first:")
            raise
        say(f"  ship: ok, {shipment_id}")
        return shipment_id


def watch(event: Event) -> None:
    say = NARRATOR.get()
    if event.kind == "retry.scheduled":
        say(f"    {event.policy}: attempt {event.attempt} failed, next in {event.delay:.3f} s")
    elif event.kind == "compensation.failed":
        say(f"    {event.policy}: compensation {event.compensation} failed for good")
