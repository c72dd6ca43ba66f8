"""The sync Transaction where it differs from the async one (the shared behaviour is tested
once for both, in tests/_async): async compensations refused, sqlite3 enlistment, journal,
recovery."""

from __future__ import annotations

import contextvars
import sqlite3
from pathlib import Path

import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync

ROWS = 3


def test_async_compensations_and_connections_are_refused() -> None:
    async def undo() -> None: ...

    with ra_sync.Transaction() as tx:
        with pytest.raises(TypeError, match="async"):
            tx.on_rollback(undo)
        with pytest.raises(TypeError, match="sqlite3"):
            tx.enlist(object())


def test_compensation_retry_must_be_a_sync_retry() -> None:
    with pytest.raises(TypeError, match="compensation_retry"):
        ra_sync.Transaction(compensation_retry=ra.Retry())  # type: ignore[arg-type]


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "items.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (value INTEGER)")
    return path


def _count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM items").fetchone()[0])


def test_sqlite3_all_or_nothing_after_a_failure_at_any_statement(database: Path) -> None:
    conn = sqlite3.connect(database)
    try:
        for k in range(ROWS + 3):
            conn.execute("DELETE FROM items")
            conn.commit()
            undone: list[int] = []
            try:
                with ra_sync.Transaction() as tx:
                    for point in range(ROWS + 2):
                        if point == k:
                            raise ValueError(f"failure at {k}")
                        if point == 0:
                            tx.enlist(conn)
                        elif point <= ROWS:
                            conn.execute("INSERT INTO items VALUES (?)", (point,))
                            tx.on_rollback(undone.append, point)
            except ValueError:
                pass
            rows = _count(database)
            assert rows == (ROWS if k > ROWS + 1 else 0), f"k={k}"
            assert undone == ([] if rows else list(range(k - 1, 0, -1))), f"k={k}"
            assert not conn.in_transaction
    finally:
        conn.close()


def test_sqlite3_nested_transaction_uses_a_savepoint(database: Path) -> None:
    conn = sqlite3.connect(database)
    try:
        with ra_sync.Transaction() as outer:
            outer.enlist(conn)
            conn.execute("INSERT INTO items VALUES (1)")
            with pytest.raises(KeyError), ra_sync.Transaction() as inner:
                conn.execute("INSERT INTO items VALUES (2)")
                raise KeyError("inner")
            with pytest.raises(ValueError, match="already enlisted"):
                outer.enlist(conn)
            conn.execute("INSERT INTO items VALUES (3)")
        assert inner is not None
        assert _count(database) == 2
    finally:
        conn.close()


@ra.compensation("test.sync_undo")
def sync_undo(log: str, value: int) -> None:
    with open(log, "a") as file:
        file.write(f"{value}\n")


def test_sync_journal_and_recover_after_an_abandoned_transaction(tmp_path: Path) -> None:
    """A block that never ends, whose owner lets go of the journal (as a dead process does)."""
    log = str(tmp_path / "log.txt")
    journal_path = tmp_path / "journal.db"

    def abandon() -> None:
        journal = ra_sync.SQLiteJournal(journal_path)
        tx = ra_sync.Transaction("order", journal=journal)
        tx.__enter__()
        tx.on_rollback(sync_undo, log, 1)
        tx.on_rollback(sync_undo, log, 2)
        with ra_sync.SQLiteJournal(journal_path) as other:
            assert ra_sync.recover(other) == []  # the owner is alive
        journal.close()  # its lock goes, as when the process dies; the block never exits

    contextvars.copy_context().run(abandon)
    with ra_sync.SQLiteJournal(journal_path) as journal:
        assert [line.outcome for line in ra_sync.recover(journal, dry_run=True)] == ["pending"] * 2
        lines = ra_sync.recover(journal)
        assert [(line.sequence, line.outcome) for line in lines] == [(1, "ran"), (0, "ran")]
        assert ra_sync.recover(journal) == []
    with open(log) as file:
        assert file.read().split() == ["2", "1"]
