"""The compensations: registered by name, so that the journal (and a recovery) can name them."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

import anyio

from ..._journal import compensation
from .shop import RefundRejected, act, connect, stock_of

__all__ = ["NARRATOR", "cancel_shipment", "refund", "release"]

# Who prints the lines of a compensation: compensations are called by name (from the
# journal, possibly in a recovery), so they find the narrator in the context, not in an
# argument.
NARRATOR: ContextVar[Callable[[str], None]] = ContextVar("saga_narrator", default=lambda _: None)


@compensation("saga_demo.release")
async def release(path: str, order_no: int, sku: str, quantity: int) -> None:
    """Put the reserved units back on the shelf."""
    await anyio.sleep(0.01)
    with connect(path) as db:
        before = stock_of(db, sku)
        db.execute("UPDATE stock SET quantity = quantity + ? WHERE sku = ?", (quantity, sku))
        act(db, order_no, "release")
    NARRATOR.get()(
        f"    undo: release {quantity} x {sku}: ok, stock {before} -> {before + quantity}"
    )


@compensation("saga_demo.refund")
async def refund(path: str, order_no: int, charge_id: str) -> None:
    """Give the money back (the bank may glitch, or refuse)."""
    await anyio.sleep(0.02)
    say = NARRATOR.get()
    with connect(path) as db:
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
        act(db, order_no, "refund")
    say(f"    undo: refund {charge_id}: ok, {amount}.00 back to the card")


@compensation("saga_demo.cancel_shipment")
async def cancel_shipment(path: str, order_no: int, shipment_id: str) -> None:
    """Call the parcel back (never needed here: shipping is the last step)."""
    with connect(path) as db:
        db.execute("UPDATE shipments SET cancelled = 1 WHERE id = ?", (shipment_id,))
        act(db, order_no, "cancel")
    NARRATOR.get()(f"    undo: cancel shipment {shipment_id}: ok")
