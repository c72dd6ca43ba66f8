"""The saga demo: orders that reserve stock, charge a card and ship, undone when they fail.

Each order is one `Transaction` of three steps against a small shop (stock, payments and
shipments kept in a SQLite file, so that another process sees them too). After each step
succeeds, its compensation is registered: release the stock, refund the charge, cancel the
shipment. Each order meets one fate, shuffled by the seed: every step works; the card is
declined; the carrier is down (the booking is retried, then given up); the customer cancels
while it ships; shipping hangs past the checkout deadline; the first refund attempt fails
(the compensation is retried); the bank rejects the refund (`CompensationError`: a human
must look). Then a second process is killed in the middle of an order, and `recover` finishes
its rollback from the durable journal (an `SQLiteJournal`).

Every step and every compensation prints one line as it happens; the run ends with a table
per order and a check of the shop's books: every unit not shipped is back on the shelf, and
the only money kept is that of the shipped orders (and of a refund the bank rejected, flagged).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any

import anyio

from . import backoff
from ._async.recovery import recover
from ._async.retry import Retry
from ._async.timeout import deadline
from ._async.transaction import Transaction
from ._demo import SeededBackoff
from ._journal import SQLiteJournal, compensation
from .errors import CompensationError, DeadlineExceeded
from .instrumentation import Event, hooks

__all__ = ["run_saga_demo", "saga_scenario"]

CHECKOUT_DEADLINE = 1.0  # seconds an order may take, end to end
CANCEL_AFTER = 0.3  # when the impatient customer closes the tab, into the shipping step
STOCK = {"lamp": 10, "chair": 10, "rug": 10}
PRICES = {"lamp": 20, "chair": 45, "rug": 80}

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


class CardDeclined(ValueError):
    """The bank refused the charge: permanent, never retried."""


class RefundRejected(PermissionError):
    """The bank refused the refund: permanent, a human must look."""


class CarrierDown(ConnectionError):
    """The carrier refused the booking: transient, worth a retry."""


@dataclass
class Order:
    """One customer's order and the fate the demo gives it."""

    number: int
    sku: str
    quantity: int
    fate: str

    @property
    def amount(self) -> int:
        return PRICES[self.sku] * self.quantity

    @property
    def what(self) -> str:
        return f"{self.quantity} x {self.sku} for {self.amount}.00"


# Who prints the lines of a compensation: compensations are called by name (from the
# journal, possibly in a recovery), so they find the narrator in the context, not in an
# argument.
_NARRATOR: ContextVar[Callable[[str], None]] = ContextVar("saga_narrator", default=lambda _: None)


# --- The shop: plain sqlite3, shared with the process that crashes ---------------------------


@contextmanager
def _shop(path: str) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA synchronous=OFF")  # a demo's books: speed over durability
        yield db


def _open_shop(path: str) -> None:
    with _shop(path) as db:
        db.executescript(
            "CREATE TABLE stock (sku TEXT PRIMARY KEY, quantity INTEGER);"
            "CREATE TABLE charges (id TEXT PRIMARY KEY, order_no INTEGER, amount INTEGER,"
            " refunded INTEGER DEFAULT 0, glitches INTEGER, refundable INTEGER);"
            "CREATE TABLE shipments (id TEXT PRIMARY KEY, order_no INTEGER, cancelled INTEGER);"
            "CREATE TABLE actions (order_no INTEGER, action TEXT);"
        )
        db.executemany("INSERT INTO stock VALUES (?, ?)", STOCK.items())


def _act(db: sqlite3.Connection, order_no: int, action: str) -> None:
    db.execute("INSERT INTO actions VALUES (?, ?)", (order_no, action))


def _stock(db: sqlite3.Connection, sku: str) -> int:
    row = db.execute("SELECT quantity FROM stock WHERE sku = ?", (sku,)).fetchone()
    return int(row[0])


def _reserve(path: str, order: Order) -> str:
    with _shop(path) as db:
        before = _stock(db, order.sku)
        db.execute(
            "UPDATE stock SET quantity = quantity - ? WHERE sku = ?", (order.quantity, order.sku)
        )
        _act(db, order.number, "reserve")
        return f"stock of {order.sku} {before} -> {before - order.quantity}"


def _charge(path: str, order: Order) -> str:
    if order.fate == "declined":
        raise CardDeclined(f"card declined for {order.amount}.00")
    charge_id = f"ch-{order.number}"
    glitches = 1 if order.fate == "refund_glitch" else 0
    with _shop(path) as db:
        db.execute(
            "INSERT INTO charges (id, order_no, amount, glitches, refundable) VALUES (?,?,?,?,?)",
            (charge_id, order.number, order.amount, glitches, order.fate != "refund_rejected"),
        )
        _act(db, order.number, "charge")
    return charge_id


# --- The compensations: registered by name, so that the journal can name them ----------------


@compensation("saga_demo.release")
async def release(path: str, order_no: int, sku: str, quantity: int) -> None:
    """Put the reserved units back on the shelf."""
    await anyio.sleep(0.01)
    with _shop(path) as db:
        before = _stock(db, sku)
        db.execute("UPDATE stock SET quantity = quantity + ? WHERE sku = ?", (quantity, sku))
        _act(db, order_no, "release")
    _NARRATOR.get()(
        f"    undo: release {quantity} x {sku}: ok, stock {before} -> {before + quantity}"
    )


@compensation("saga_demo.refund")
async def refund(path: str, order_no: int, charge_id: str) -> None:
    """Give the money back (the bank may glitch, or refuse)."""
    await anyio.sleep(0.02)
    say = _NARRATOR.get()
    with _shop(path) as db:
        amount, glitches, refundable = db.execute(
            "SELECT amount, glitches, refundable FROM charges WHERE id = ?", (charge_id,)
        ).fetchone()
        if glitches:
            db.execute("UPDATE charges SET glitches = glitches - 1 WHERE id = ?", (charge_id,))
            say(f"    undo: refund {charge_id}: ConnectionResetError (the bank's API glitched)")
            raise ConnectionResetError("the bank reset the connection")
        if not refundable:
            say(f"    undo: refund {charge_id}: RefundRejected (the bank refuses)")
            raise RefundRejected(f"the bank rejects the refund of {charge_id}")
        db.execute("UPDATE charges SET refunded = 1 WHERE id = ?", (charge_id,))
        _act(db, order_no, "refund")
    say(f"    undo: refund {charge_id}: ok, {amount}.00 back to the card")


@compensation("saga_demo.cancel_shipment")
async def cancel_shipment(path: str, order_no: int, shipment_id: str) -> None:
    """Call the parcel back (never needed here: shipping is the last step)."""
    with _shop(path) as db:
        db.execute("UPDATE shipments SET cancelled = 1 WHERE id = ?", (shipment_id,))
        _act(db, order_no, "cancel")
    _NARRATOR.get()(f"    undo: cancel shipment {shipment_id}: ok")


# --- The saga --------------------------------------------------------------------------------


class _Saga:
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
        say = _NARRATOR.get()
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
        say = _NARRATOR.get()
        async with Transaction(
            f"order-{order.number}", journal=self.journal, compensation_retry=self.refund_retry
        ) as tx:
            await anyio.sleep(self.rng.uniform(0.01, 0.03))
            say(f"  reserve {order.quantity} x {order.sku}: ok, {_reserve(self.path, order)}")
            tx.on_rollback(release, self.path, order.number, order.sku, order.quantity)

            await anyio.sleep(self.rng.uniform(0.02, 0.05))
            try:
                charge_id = _charge(self.path, order)
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
            with _shop(self.path) as db:
                db.execute(
                    "INSERT INTO shipments VALUES (?, ?, 0)", (f"sh-{order.number}", order.number)
                )
                _act(db, order.number, "ship")
            return f"sh-{order.number}"

        try:
            shipment_id = await self.book_retry.call(book)
        except CarrierDown:
            say("  ship: given up after 3 attempts; rollback, newest first:")
            raise
        say(f"  ship: ok, {shipment_id}")
        return shipment_id


def _watch(event: Event) -> None:
    say = _NARRATOR.get()
    if event.kind == "retry.scheduled":
        say(f"    {event.policy}: attempt {event.attempt} failed, next in {event.delay:.3f} s")
    elif event.kind == "compensation.failed":
        say(f"    {event.policy}: compensation {event.compensation} failed for good")


async def saga_scenario(seed: int, progress: IO[str] | None, *, backend: str = "") -> str:
    """Run the orders, then a crash and its recovery, and return the final table."""
    rng = random.Random(seed)
    started = anyio.current_time()
    lines: list[str] = []

    def say(text: str) -> None:
        line = f"[{anyio.current_time() - started:5.2f}s] {text}"
        lines.append(line)
        if progress is not None:
            print(line, file=progress, flush=True)

    fates = [f for f in FATES if f != "ok"] + ["ok"]
    rng.shuffle(fates)
    skus = sorted(STOCK)
    orders = [
        Order(n, rng.choice(skus), rng.randint(1, 3), fate)
        for n, fate in enumerate(["ok", *fates], start=1)
    ]
    crashed = Order(len(orders) + 1, rng.choice(skus), rng.randint(1, 3), "crash")
    token = _NARRATOR.set(say)
    try:
        with tempfile.TemporaryDirectory(prefix="resilient_async_saga_") as tmp:
            shop = os.path.join(tmp, "shop.db")
            journal_path = os.path.join(tmp, "journal.db")
            _open_shop(shop)
            if progress is not None:
                print(_introduction(len(orders), backend, seed), file=progress, flush=True)
            journal = SQLiteJournal(journal_path, synchronous="normal")
            try:
                saga = _Saga(shop, journal, rng)
                with hooks(_watch):
                    for order in orders:
                        await saga.place(order)
                    say(f"order {crashed.number}: {crashed.what}; {CRASH_FATE}")
                    code = await anyio.to_thread.run_sync(
                        _run_crashing_process, journal_path, shop, crashed
                    )
                    say(f"  (another process) reserve and charge done, then it died ({code})")
                    say("  recover(journal): the dead process's open transaction, newest first:")
                    recovered = await recover(journal)
                saga.outcomes[crashed.number] = "recovered: " + ", ".join(
                    f"{r.name.removeprefix('saga_demo.')} {r.outcome}" for r in recovered
                )
                say(f"  => {len(recovered)} compensations ran; the journal holds no open order")
            finally:
                journal.close()
            return _table([*orders, crashed], saga.outcomes, shop, backend, seed)
    finally:
        _NARRATOR.reset(token)


def _introduction(orders: int, backend: str, seed: int) -> str:
    return "\n".join(
        [
            f"resilient_async saga demo{' on ' + backend if backend else ''}, seed {seed}: "
            f"{orders} orders, then a crash.",
            "Each order is one Transaction: reserve stock, charge the card, ship. After each step",
            "its undo is registered (release, refund, cancel the shipment). When a later step",
            "fails or the order is cancelled, the undos run, newest first, and the caller gets",
            "the original error. Undos are recorded in a SQLiteJournal, so recover() can finish",
            "them for a process that died. Shop and journal: SQLite files in a temp directory.",
            "",
        ]
    )


def _run_crashing_process(journal_path: str, shop: str, order: Order) -> str:
    """Run `_crash_midway` in a child process that dies the hard way; say how it died."""
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from resilient_async._demo_saga import _crash_midway; "
            "_crash_midway(*sys.argv[1:])",
            journal_path,
            shop,
            json.dumps([order.number, order.sku, order.quantity]),
        ],
        check=False,  # it is meant to die
        timeout=120,
    )
    if child.returncode == -signal.SIGKILL:
        return "SIGKILL"
    raise RuntimeError(f"the crashing order's process ended with {child.returncode}, not SIGKILL")


def _crash_midway(journal_path: str, shop: str, order_json: str) -> None:
    """Reserve and charge under a journaled Transaction, then die before shipping."""
    number, sku, quantity = json.loads(order_json)
    order = Order(number, sku, quantity, "crash")

    async def main() -> None:
        with SQLiteJournal(journal_path, synchronous="normal") as journal:
            async with Transaction(f"order-{number}", journal=journal) as tx:
                _reserve(shop, order)
                tx.on_rollback(release, shop, number, sku, quantity)
                tx.on_rollback(refund, shop, number, _charge(shop, order))
                # Killed: no rollback, no cleanup; the kernel drops the journal lock.
                os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main)


def _table(
    orders: list[Order], outcomes: dict[int, str], shop: str, backend: str, seed: int
) -> str:
    with _shop(shop) as db:
        done: dict[int, list[str]] = {}
        for order_no, action in db.execute("SELECT order_no, action FROM actions ORDER BY rowid"):
            done.setdefault(order_no, []).append(action)
        stock = {sku: _stock(db, sku) for sku in STOCK}
        kept = db.execute("SELECT order_no, amount FROM charges WHERE refunded = 0").fetchall()
    undo = {"release", "refund", "cancel"}
    rows = [
        f"{'order':<6}{'fate':<30}{'done':<22}{'undone':<16}outcome",
    ]
    for order in orders:
        actions = done.get(order.number, [])
        rows.append(
            f"{order.number:<6}{SHORT_FATES[order.fate]:<30}"
            f"{','.join(a for a in actions if a not in undo) or '-':<22}"
            f"{','.join(a for a in actions if a in undo) or '-':<16}{outcomes[order.number]}"
        )
    shipped = [o for o in orders if "ship" in done.get(o.number, [])]
    expected_stock = dict(STOCK)
    for order in shipped:
        expected_stock[order.sku] -= order.quantity
    shipped_money = sum(o.amount for o in shipped)
    flagged = [(n, a) for n, a in kept if n not in {o.number for o in shipped}]
    books = [
        f"stock now: {', '.join(f'{s} {stock[s]}' for s in sorted(stock))}; "
        f"started at {STOCK[sorted(STOCK)[0]]} each, minus the shipped units: "
        + ("matches" if stock == expected_stock else f"MISMATCH, expected {expected_stock}"),
        f"money kept: {sum(a for _, a in kept)}.00 = {shipped_money}.00 for "
        f"{len(shipped)} shipped orders"
        + "".join(f" + {a}.00 of order {n} (refund rejected: flagged)" for n, a in flagged),
    ]
    legend = [
        "done: the steps the shop recorded; undone: the compensations that ran, in order.",
    ]
    header = f"Final table (seed {seed}{', ' + backend if backend else ''}):"
    return "\n".join(["", header, "", *rows, "", *books, *legend])


def run_saga_demo(
    *,
    backend: str = "asyncio",
    seed: int = 7,
    progress: IO[str] | None = None,
    virtual_time: bool = False,
) -> str:
    """Run the saga demo and return the final table as text.

    Args:
        backend: "asyncio" or "trio".
        seed: Seed of the orders' fates, sizes, step durations and retry jitter.
        progress: Where to print each step and compensation as it happens (None: silent).
        virtual_time: Run on a simulated clock that skips idle time (the same run, faster).
    """
    options: dict[str, Any] = {}
    if virtual_time and backend == "asyncio":
        from .testing import virtual_time_loop

        options["loop_factory"] = virtual_time_loop
    elif virtual_time:
        import trio.testing

        options["clock"] = trio.testing.MockClock(autojump_threshold=0)
    return anyio.run(
        lambda: saga_scenario(seed, progress, backend=backend),
        backend=backend,
        backend_options=options,
    )
