"""Transaction.enlist on real databases: a SQLite file (aiosqlite) and PostgreSQL (asyncpg).

After a failure or a cancellation at any await of the block, or at the commit, the database
holds either every row or none, and the compensations ran exactly when it holds none.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import anyio
import asyncpg
import pytest

import resilient_async as ra

from ..helpers import asyncio_only

pytestmark = [pytest.mark.anyio, asyncio_only]

ROWS = 3


class SQLiteDb:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def connect(self) -> Any:
        return await aiosqlite.connect(self.path)

    async def insert(self, conn: Any, value: int) -> None:
        await conn.execute("INSERT INTO items VALUES (?)", (value,))

    async def count(self) -> int:
        with sqlite3.connect(self.path) as db:
            return int(db.execute("SELECT count(*) FROM items").fetchone()[0])

    async def clear(self) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute("DELETE FROM items")


class PostgresDb:
    def __init__(self, table: str) -> None:
        self.table = table

    async def connect(self) -> Any:
        return await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")

    async def insert(self, conn: Any, value: int) -> None:
        await conn.execute(f"INSERT INTO {self.table} VALUES ($1)", value)

    async def count(self) -> int:
        conn = await self.connect()
        try:
            return int(await conn.fetchval(f"SELECT count(*) FROM {self.table}"))
        finally:
            await conn.close()

    async def clear(self) -> None:
        conn = await self.connect()
        try:
            await conn.execute(f"DELETE FROM {self.table}")
        finally:
            await conn.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.real_time),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        path = tmp_path / "items.db"
        with sqlite3.connect(path) as setup:
            setup.execute("CREATE TABLE items (value INTEGER)")
        yield SQLiteDb(path)
        return
    table = f"ra_tx_items_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
    try:
        await conn.execute(f"CREATE TABLE {table} (value INTEGER)")
        yield PostgresDb(table)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def _run_block(db: Any, conn: Any, k: int, mode: str) -> tuple[list[int], list[int], bool]:
    """Run the block, failing or cancelling right before its k-th await (or the commit)."""
    points = 0
    registered: list[int] = []
    undone: list[int] = []

    def point(scope: anyio.CancelScope) -> None:
        nonlocal points
        if points == k:
            if mode == "fail":
                raise ValueError(f"failure at point {k}")
            scope.cancel()
        points += 1

    with anyio.CancelScope() as scope:
        try:
            async with ra.Transaction() as tx:
                point(scope)
                await tx.enlist(conn)
                for value in range(ROWS):
                    point(scope)
                    await db.insert(conn, value)
                    registered.append(value)
                    tx.on_rollback(undone.append, value)
                point(scope)  # cancelled here: the cancel is pending during the commit
        except ValueError:
            pass
    return registered, undone, scope.cancelled_caught


@pytest.mark.parametrize("mode", ["fail", "cancel"])
async def test_all_or_nothing_after_a_failure_or_cancel_at_any_await(db: Any, mode: str) -> None:
    conn = await db.connect()
    try:
        for k in range(ROWS + 3):  # before enlist, before each insert, before the commit, none
            await db.clear()
            registered, undone, cancelled = await _run_block(db, conn, k, mode)
            rows = await db.count()
            rolled_back = k <= ROWS or (mode == "fail" and k == ROWS + 1)
            assert rows == (0 if rolled_back else ROWS), f"k={k}"
            if rolled_back:
                assert undone == list(reversed(registered)), f"k={k}"
            else:
                assert undone == [], f"k={k}"
                assert registered == list(range(ROWS)), f"k={k}"
            assert cancelled == (mode == "cancel" and k <= ROWS + 1), f"k={k}"
            assert not _in_transaction(conn), f"k={k}: the connection was left in a transaction"
    finally:
        await conn.close()


def _in_transaction(conn: Any) -> bool:
    if isinstance(conn, aiosqlite.Connection):
        return bool(conn.in_transaction)
    return bool(conn.is_in_transaction())


async def test_commit_with_a_cancel_pending_commits_everything(db: Any) -> None:
    conn = await db.connect()
    try:
        registered, undone, cancelled = await _run_block(db, conn, ROWS + 1, "cancel")
        assert cancelled
        assert await db.count() == ROWS
        assert registered == [0, 1, 2]
        assert undone == []
    finally:
        await conn.close()


async def test_nested_transaction_rolls_back_to_its_savepoint(db: Any) -> None:
    conn = await db.connect()
    undone: list[str] = []
    try:
        async with ra.Transaction("outer") as outer:
            await outer.enlist(conn)
            await db.insert(conn, 1)
            with pytest.raises(KeyError):
                async with ra.Transaction("inner") as inner:
                    await inner.enlist(conn)  # already covered by the inner savepoint
                    await db.insert(conn, 2)
                    inner.on_rollback(undone.append, "inner")
                    raise KeyError("inner fails")
            await db.insert(conn, 3)
        assert undone == ["inner"]
        assert await db.count() == 2
    finally:
        await conn.close()


async def test_enlisting_inside_an_open_transaction_takes_a_savepoint(db: Any) -> None:
    conn = await db.connect()
    try:
        await conn.execute("BEGIN")
        await db.insert(conn, 1)
        with pytest.raises(ValueError):
            async with ra.Transaction() as tx:
                await tx.enlist(conn)
                await db.insert(conn, 2)
                raise ValueError("x")
        await conn.execute("COMMIT")  # the caller's own transaction is still theirs to end
        assert await db.count() == 1
    finally:
        await conn.close()


async def test_enlisting_twice_is_refused_and_the_first_enlistment_stays(db: Any) -> None:
    conn = await db.connect()
    try:
        with pytest.raises(RuntimeError, match="later"):
            async with ra.Transaction() as tx:
                await tx.enlist(conn)
                await db.insert(conn, 1)
                with pytest.raises(ValueError, match="already enlisted"):
                    await tx.enlist(conn)
                raise RuntimeError("later")
        assert await db.count() == 0
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_a_pooled_asyncpg_connection_can_be_enlisted() -> None:
    table = f"ra_tx_pool_{uuid.uuid4().hex[:12]}"
    async with asyncpg.create_pool(
        host="127.0.0.1", user="postgres", database="test", min_size=1, max_size=1
    ) as pool:
        await pool.execute(f"CREATE TABLE {table} (value INTEGER)")
        try:
            async with pool.acquire() as conn:
                with pytest.raises(ValueError):
                    async with ra.Transaction() as tx:
                        await tx.enlist(conn)
                        await conn.execute(f"INSERT INTO {table} VALUES (1)")
                        raise ValueError("x")
                async with ra.Transaction() as tx:
                    await tx.enlist(conn)
                    await conn.execute(f"INSERT INTO {table} VALUES (2)")
            assert await pool.fetch(f"SELECT value FROM {table}") == [(2,)]
        finally:
            await pool.execute(f"DROP TABLE {table}")
