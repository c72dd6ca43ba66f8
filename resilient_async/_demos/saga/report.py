"""What the saga demo prints before its orders (the introduction) and after (the final table)."""

from __future__ import annotations

from .saga import SHORT_FATES
from .shop import STOCK, Order, connect, stock_of

__all__ = ["final_table", "introduction"]


def introduction(orders: int, backend: str, seed: int) -> str:
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


def final_table(
    orders: list[Order], outcomes: dict[int, str], shop: str, backend: str, seed: int
) -> str:
    with connect(shop) as db:
        done: dict[int, list[str]] = {}
        for order_no, action in db.execute("SELECT order_no, action FROM actions ORDER BY rowid"):
            done.setdefault(order_no, []).append(action)
        stock = {sku: stock_of(db, sku) for sku in STOCK}
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
