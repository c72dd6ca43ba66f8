"""The shop: orders, and its books (stock, charges, shipments) in a SQLite file.

Plain sqlite3, so that the process that crashes midway shares the books.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass

__all__ = [
    "PRICES",
    "STOCK",
    "CardDeclined",
    "CarrierDown",
    "Order",
    "RefundRejected",
    "act",
    "charge",
    "connect",
    "open_shop",
    "reserve",
    "ship",
    "stock_of",
]

STOCK = {"lamp": 10, "chair": 10, "rug": 10}
PRICES = {"lamp": 20, "chair": 45, "rug": 80}


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


@contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA synchronous=OFF")  # a demo's books: speed over durability
        yield db


def open_shop(path: str) -> None:
    with connect(path) as db:
        db.executescript(
            "CREATE TABLE stock (sku TEXT PRIMARY KEY, quantity INTEGER);"
            "CREATE TABLE charges (id TEXT PRIMARY KEY, order_no INTEGER, amount INTEGER,"
            " refunded INTEGER DEFAULT 0, glitches INTEGER, refundable INTEGER);"
            "CREATE TABLE shipments (id TEXT PRIMARY KEY, order_no INTEGER, cancelled INTEGER);"
            "CREATE TABLE actions (order_no INTEGER, action TEXT);"
        )
        db.executemany("INSERT INTO stock VALUES (?, ?)", STOCK.items())


def act(db: sqlite3.Connection, order_no: int, action: str) -> None:
    db.execute("INSERT INTO actions VALUES (?, ?)", (order_no, action))


def stock_of(db: sqlite3.Connection, sku: str) -> int:
    row = db.execute("SELECT quantity FROM stock WHERE sku = ?", (sku,)).fetchone()
    return int(row[0])


def reserve(path: str, order: Order) -> str:
    with connect(path) as db:
        before = stock_of(db, order.sku)
        db.execute(
            "UPDATE stock SET quantity = quantity - ? WHERE sku = ?", (order.quantity, order.sku)
        )
        act(db, order.number, "reserve")
        return f"stock of {order.sku} {before} -> {before - order.quantity}"


def charge(path: str, order: Order) -> str:
    if order.fate == "declined":
        raise CardDeclined(f"card declined for {order.amount}.00")
    charge_id = f"ch-{order.number}"
    glitches = 1 if order.fate == "refund_glitch" else 0
    with connect(path) as db:
        db.execute(
            "INSERT INTO charges (id, order_no, amount, glitches, refundable) VALUES (?,?,?,?,?)",
            (charge_id, order.number, order.amount, glitches, order.fate != "refund_rejected"),
        )
        act(db, order.number, "charge")
    return charge_id


def ship(path: str, order: Order) -> str:
    """Record the order's shipment; return its id."""
    with connect(path) as db:
        db.execute("INSERT INTO shipments VALUES (?, ?, 0)", (f"sh-{order.number}", order.number))
        act(db, order.number, "ship")
    return f"sh-{order.number}"
