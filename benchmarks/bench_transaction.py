"""Transactions: the success path, and what the durable journal costs per compensation.

The journal writes each registration as one SQLite commit in WAL mode with
`synchronous=FULL` (one fsync of the write-ahead log), in a temporary directory on the
machine's disk; the figure depends on that disk far more than on this library.
"""

from __future__ import annotations

import atexit
import contextvars
import shutil
import tempfile
from pathlib import Path

import resilient_async as ra
import resilient_async.sync as ra_sync

from .harness import Group, Op, SyncOp

_DIR = Path(tempfile.mkdtemp(prefix="ra-bench-journal-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_journals: list[ra.SQLiteJournal] = []


def _journal(name: str, synchronous: str = "full") -> ra.SQLiteJournal:
    path = _DIR / f"{name}-{len(_journals)}.db"
    journal = ra.SQLiteJournal(path, synchronous=synchronous)
    _journals.append(journal)
    atexit.register(journal.close)
    return journal


@ra.compensation("bench.undo")
def _undo(value: int) -> None:
    pass


def _hand_written() -> Op:
    async def op() -> None:
        undo: list[tuple[object, int]] = []
        try:
            undo.append((_undo, 1))
        except BaseException:
            for fn, arg in reversed(undo):
                fn(arg)  # type: ignore[operator]
            raise

    return op


def _transaction(count: int, journaled: bool) -> Op:
    journal = _journal("tx") if journaled else None

    async def op() -> None:
        async with ra.Transaction("bench", journal=journal) as tx:
            for value in range(count):
                tx.on_rollback(_undo, value)

    return op


transactions = Group(
    "transaction: a block that succeeds",
    baseline="try/except with an undo list",
    note="journaled: 1 fsync'd commit per compensation + 1 to drop the transaction",
)
transactions.add("try/except with an undo list", _hand_written)
transactions.add("ra.Transaction, 1 compensation", lambda: _transaction(1, False))
transactions.add("ra.Transaction, 10 compensations", lambda: _transaction(10, False))
transactions.add("ra.Transaction, 1 journaled", lambda: _transaction(1, True))
transactions.add("ra.Transaction, 10 journaled", lambda: _transaction(10, True))


def _on_rollback(synchronous: str | None) -> SyncOp:
    journal = _journal("reg", synchronous) if synchronous else None
    # One open sync transaction, entered in a context of its own (so that it does not nest
    # the next case's), collects every registration of the run.
    tx = ra_sync.Transaction("bench", journal=journal)
    contextvars.copy_context().run(tx.__enter__)

    def op() -> None:
        tx.on_rollback(_undo, 1)

    return op


registrations = Group(
    "journal: cost of one on_rollback",
    baseline="on_rollback, no journal",
    note="the journaled case is the journal's cost per registered compensation",
)
registrations.add("on_rollback, no journal", lambda: _on_rollback(None), is_async=False)
registrations.add("on_rollback, SQLiteJournal (full)", lambda: _on_rollback("full"), is_async=False)
registrations.add(
    "on_rollback, SQLiteJournal (normal)", lambda: _on_rollback("normal"), is_async=False
)

GROUPS = [transactions, registrations]
