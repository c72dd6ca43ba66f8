"""Default classification of real drivers' errors, against the real servers (issue 12, defect 2).

PostgreSQL through asyncpg and psycopg (by SQLSTATE), Redis through redis-py, SQLite through
sqlite3 and aiosqlite, HTTP through aiohttp against a local server. The drivers are
asyncio-only, so the async tests run on asyncio alone. Each test also checks what the default
policies then do: a default `Retry` retries a transient error and stops at a permanent one, and
a default `CircuitBreaker` counts the caller's own bugs as successes.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import resilient_async as ra
from resilient_async import backoff
from resilient_async import sync as rs

from ..helpers import asyncio_only

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
TRANSIENT = ra.ErrorClass.TRANSIENT


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def test_no_driver_is_imported_at_import_time() -> None:
    code = (
        "import sys, resilient_async, resilient_async.sync; "
        "loaded = {'asyncpg', 'psycopg', 'psycopg2', 'redis', 'aiohttp', 'aiosqlite'} & "
        "set(sys.modules); print(sorted(loaded))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# --- PostgreSQL: asyncpg ------------------------------------------------------------------------


@pytest.fixture
async def pg_table() -> AsyncIterator[str]:
    import asyncpg

    name = _unique("ra_api")
    conn = await asyncpg.connect(PG_DSN)
    await conn.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, grp int NOT NULL)")
    await conn.execute(f"INSERT INTO {name} (grp) VALUES (1), (2)")
    try:
        yield name
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await conn.close()


@pytest.mark.postgres
@pytest.mark.anyio
@asyncio_only
async def test_asyncpg_terminated_backend_is_transient_and_retried() -> None:
    import asyncpg

    killer = await asyncpg.connect(PG_DSN)
    victim = await asyncpg.connect(PG_DSN)
    connections = [victim]
    errors: list[BaseException] = []
    try:
        pid = await victim.fetchval("SELECT pg_backend_pid()")

        async def kill_soon() -> None:
            await asyncio.sleep(0.3)
            await killer.execute("SELECT pg_terminate_backend($1)", pid)

        async def query() -> int:
            # Like a pool: each attempt takes the newest connection; a failure replaces it.
            conn = connections[-1]
            try:
                return int(
                    await conn.fetchval("SELECT 42 FROM pg_sleep($1)", 30 if conn is victim else 0)
                )
            except Exception as exc:
                errors.append(exc)
                connections.append(await asyncpg.connect(PG_DSN))
                raise

        kill = asyncio.ensure_future(kill_soon())
        assert await ra.Retry(backoff=backoff.constant(0)).call(query) == 42
        await kill
        (error,) = errors  # the backend was killed while the query was in flight
        assert isinstance(error, asyncpg.ConnectionDoesNotExistError | asyncpg.AdminShutdownError)
        assert ra.classify(error) is TRANSIENT
    finally:
        for conn in (killer, *connections):
            conn.terminate()


@pytest.mark.postgres
@pytest.mark.anyio
@asyncio_only
async def test_asyncpg_serialization_failure_is_transient(pg_table: str) -> None:
    import asyncpg

    first = await asyncpg.connect(PG_DSN)
    second = await asyncpg.connect(PG_DSN)
    try:
        # Write skew under SERIALIZABLE: each reads what the other writes; one must fail.
        tx1 = first.transaction(isolation="serializable")
        tx2 = second.transaction(isolation="serializable")
        await tx1.start()
        await tx2.start()
        await first.fetchval(f"SELECT count(*) FROM {pg_table} WHERE grp = 2")
        await second.fetchval(f"SELECT count(*) FROM {pg_table} WHERE grp = 1")
        await first.execute(f"INSERT INTO {pg_table} (grp) VALUES (1)")
        await second.execute(f"INSERT INTO {pg_table} (grp) VALUES (2)")
        await tx1.commit()
        with pytest.raises(asyncpg.SerializationError) as info:
            await tx2.commit()
        assert info.value.sqlstate == "40001"
        assert ra.classify(info.value) is TRANSIENT
    finally:
        await first.close()
        await second.close()


@pytest.mark.postgres
@pytest.mark.anyio
@asyncio_only
async def test_asyncpg_syntax_error_is_permanent_and_not_the_dependencys_fault() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    breaker = ra.CircuitBreaker(consecutive_failures=1)
    retry = ra.Retry(attempts=3, backoff=backoff.constant(0))
    try:
        with pytest.raises(asyncpg.PostgresSyntaxError) as info:
            await retry.call(breaker.call, conn.fetch, "SELEC 1")
        assert ra.classify(info.value) is ra.ErrorClass.PERMANENT
        assert retry.metrics().attempts == 1  # not retried
        assert breaker.state is ra.BreakerState.CLOSED  # counted as a success
        with pytest.raises(asyncpg.PostgresError):
            await ra.Fallback(value="x").call(conn.fetch, "SELECT * FROM ra_api_missing_table")
    finally:
        await conn.close()


# --- PostgreSQL: psycopg (sync) --------------------------------------------------------------


@pytest.mark.postgres
def test_psycopg_errors_by_sqlstate() -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as killer, psycopg.connect(PG_DSN) as victim:
        with pytest.raises(psycopg.errors.SyntaxError) as syntax:
            victim.execute("SELEC 1")
        assert syntax.value.sqlstate == "42601"
        assert ra.classify(syntax.value) is ra.ErrorClass.PERMANENT
        victim.rollback()
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        victim.commit()
        killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError) as killed:
            victim.execute("SELECT 1")
        assert ra.classify(killed.value) is TRANSIENT
        with pytest.raises(psycopg.OperationalError):
            rs.Retry(attempts=2, backoff=backoff.constant(0)).call(victim.execute, "SELECT 1")


# --- Redis ------------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
@asyncio_only
async def test_redis_errors_are_classified() -> None:
    import redis.asyncio as redis
    from redis.asyncio.retry import Retry as RedisRetry
    from redis.backoff import NoBackoff

    no_retry = RedisRetry(NoBackoff(), 0)
    victim = redis.Redis(host="127.0.0.1", single_connection_client=True, retry=no_retry)
    admin = redis.Redis(host="127.0.0.1")
    slow = redis.Redis(host="127.0.0.1", socket_timeout=0.2, retry=no_retry)
    key = _unique("ra-api")
    try:
        # CLIENT KILL: the connection is gone -> TRANSIENT, and a default Retry reconnects.
        await admin.client_kill_filter(_id=await victim.client_id())
        with pytest.raises(redis.ConnectionError) as killed:
            await victim.ping()
        assert ra.classify(killed.value) is TRANSIENT
        await admin.client_kill_filter(_id=await victim.client_id())
        assert await ra.Retry(backoff=backoff.constant(0)).call(victim.ping) is True
        # A read that outlives socket_timeout -> TIMEOUT.
        with pytest.raises(redis.TimeoutError) as timed_out:
            await slow.blpop([key], timeout=5)
        assert ra.classify(timed_out.value) is ra.ErrorClass.TIMEOUT
        # A command against the wrong type -> PERMANENT (the caller's bug).
        await admin.set(key, "text")
        with pytest.raises(redis.ResponseError) as wrong:
            await admin.lpush(key, "x")
        assert ra.classify(wrong.value) is ra.ErrorClass.PERMANENT
    finally:
        await admin.delete(key)
        for client in (victim, admin, slow):
            await client.aclose()


# --- SQLite -----------------------------------------------------------------------------------


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x int)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield path
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_sqlite_database_is_locked_is_transient(locked_db: Path) -> None:
    other = sqlite3.connect(locked_db, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked") as info:
            other.execute("INSERT INTO t VALUES (1)")
        assert ra.classify(info.value) is TRANSIENT
    finally:
        other.close()
    memory = sqlite3.connect(":memory:")
    try:
        with pytest.raises(sqlite3.OperationalError) as missing:
            memory.execute("SELECT * FROM no_such_table")
        assert ra.classify(missing.value) is ra.ErrorClass.UNKNOWN  # not every one is a lock
    finally:
        memory.close()


@pytest.mark.anyio
@asyncio_only
@pytest.mark.real_time
async def test_aiosqlite_database_is_locked_is_transient(locked_db: Path) -> None:
    import aiosqlite

    async with aiosqlite.connect(locked_db, timeout=0) as other:
        with pytest.raises(sqlite3.OperationalError) as info:
            await other.execute("INSERT INTO t VALUES (1)")
        assert ra.classify(info.value) is TRANSIENT


# --- aiohttp against a local server ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.anyio
@asyncio_only
@pytest.mark.real_time
async def test_aiohttp_errors_by_kind_and_status() -> None:
    import aiohttp
    from aiohttp import web

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "0"})

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/busy", busy)
    app.router.add_get("/missing", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(raise_for_status=True) as session:
            with pytest.raises(aiohttp.ClientConnectorError) as refused:
                await session.get(f"http://127.0.0.1:{_free_port()}/")
            assert ra.classify(refused.value) is TRANSIENT
            with pytest.raises(aiohttp.ClientResponseError) as unavailable:
                await session.get(f"http://127.0.0.1:{port}/busy")
            assert ra.classify(unavailable.value) is ra.ErrorClass.THROTTLED
            assert ra.retry_after(unavailable.value) == 0.0
            with pytest.raises(aiohttp.ClientResponseError) as not_found:
                await session.get(f"http://127.0.0.1:{port}/missing")
            assert ra.classify(not_found.value) is ra.ErrorClass.PERMANENT
            retry = ra.Retry(attempts=2, backoff=backoff.constant(0))
            with pytest.raises(aiohttp.ClientResponseError):
                await retry.call(session.get, f"http://127.0.0.1:{port}/busy")
            assert retry.metrics().attempts == 2
    finally:
        await runner.cleanup()
