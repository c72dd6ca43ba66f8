"""A saga on a SQLite "world", run in a subprocess that the journal tests kill with SIGKILL.

The world is a SQLite file standing for three outside services: stock, charges, shipments.
Each step changes it and registers a journaled compensation that undoes the change and logs
its run in the same SQLite transaction (so a run is counted exactly when its effect exists).

    python -m tests._tx_worker saga JOURNAL WORLD      # runs the saga, then hangs at the end
    python -m tests._tx_worker recover JOURNAL WORLD   # recovers; the refund hangs before acting

Both print a line when they reach the point where the test kills them.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

import anyio

import resilient_async as ra

HANG = "TX_WORKER_HANG_IN"  # name of the compensation that hangs (for the recovery kill)


def create_world(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE stock (sku TEXT PRIMARY KEY, quantity INTEGER);
            CREATE TABLE charges (card TEXT, amount INTEGER);
            CREATE TABLE shipments (sku TEXT, address TEXT);
            CREATE TABLE compensated (seq INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT);
            INSERT INTO stock VALUES ('book', 5);
            """
        )


def world_state(path: str) -> dict[str, object]:
    with sqlite3.connect(path) as db:
        return {
            "stock": db.execute("SELECT quantity FROM stock").fetchall(),
            "charges": db.execute("SELECT * FROM charges").fetchall(),
            "shipments": db.execute("SELECT * FROM shipments").fetchall(),
            "compensated": [r[0] for r in db.execute("SELECT what FROM compensated ORDER BY seq")],
        }


def _change(world: str, sql: str, args: tuple[object, ...], what: str | None = None) -> None:
    with sqlite3.connect(world) as db:  # one transaction: the effect and its log line
        db.execute(sql, args)
        if what is not None:
            db.execute("INSERT INTO compensated (what) VALUES (?)", (what,))


def _maybe_hang(name: str) -> None:
    if os.environ.get(HANG) == name:
        print(f"hanging in {name}", flush=True)
        time.sleep(3600)


@ra.compensation("worker.release_stock")
def release_stock(world: str, sku: str) -> None:
    _maybe_hang("worker.release_stock")
    _change(world, "UPDATE stock SET quantity = quantity + 1 WHERE sku = ?", (sku,), "release")


@ra.compensation("worker.refund")
async def refund(world: str, card: str, amount: int) -> None:
    _maybe_hang("worker.refund")
    await anyio.sleep(0)
    _change(world, "DELETE FROM charges WHERE card = ? AND amount = ?", (card, amount), "refund")


@ra.compensation("worker.cancel_shipment")
def cancel_shipment(world: str, sku: str) -> None:
    _maybe_hang("worker.cancel_shipment")
    _change(world, "DELETE FROM shipments WHERE sku = ?", (sku,), "cancel_shipment")


async def saga(journal: ra.SQLiteJournal, world: str, *, fail: bool) -> None:
    """Reserve, charge, ship; then hang (to be killed) or fail (a clean rollback)."""
    async with ra.Transaction("order", journal=journal) as tx:
        _change(world, "UPDATE stock SET quantity = quantity - 1 WHERE sku = ?", ("book",))
        tx.on_rollback(release_stock, world, "book")
        _change(world, "INSERT INTO charges VALUES (?, ?)", ("visa", 30))
        tx.on_rollback(refund, world, "visa", 30)
        _change(world, "INSERT INTO shipments VALUES (?, ?)", ("book", "home"))
        tx.on_rollback(cancel_shipment, world, "book")
        if fail:
            raise RuntimeError("the order failed")
        print("registered 3", flush=True)
        await anyio.sleep(3600)


async def _main(command: str, journal_path: str, world: str) -> None:
    journal = ra.SQLiteJournal(journal_path)
    if command == "saga":
        await saga(journal, world, fail=False)
    else:
        print("recovering", flush=True)
        await ra.recover(journal)


if __name__ == "__main__":
    anyio.run(_main, *sys.argv[1:4])
