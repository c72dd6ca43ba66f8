"""Acceptance tests written from API.md alone (transactions, stores, supervision, sync API,
instrumentation, testing, integrations), one test per clause, named after it.

Only the public names that API.md spells are used. Async tests run on asyncio and trio in
virtual time unless they need real I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import resilient_async as ra
import resilient_async.sync as rs
from resilient_async.instrumentation import LoggingHook, get_hooks, hooks, set_hooks
from resilient_async.testing import faults, set_testing

from .helpers import Recorder, asyncio_only

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent

# --- Transaction (compensations) ------------------------------------------------------------

UNDONE: list[str] = []


@ra.compensation("accb.release")
async def release(item: str) -> None:
    UNDONE.append(item)


async def test_transaction_name_and_keywords_default_to_none() -> None:
    async with ra.Transaction() as tx:
        tx.on_rollback(lambda: None)
    async with ra.Transaction("booking", journal=None, compensation_retry=None) as tx:
        tx.on_rollback(lambda: None)


async def test_compensations_sync_and_async_run_in_reverse_order_then_error_reraised() -> None:
    ran: list[str] = []

    async def undo_async(x: str) -> None:
        await anyio.sleep(0.1)
        ran.append(x)

    with pytest.raises(KeyError) as info:
        async with ra.Transaction("t") as tx:
            tx.on_rollback(ran.append, "first")
            tx.on_rollback(undo_async, "second")
            tx.on_rollback(lambda *, k: ran.append(k), k="third")
            raise KeyError("boom")
    assert info.value.args == ("boom",)
    assert ran == ["third", "second", "first"]


async def test_compensations_do_not_run_when_the_block_succeeds() -> None:
    ran: list[str] = []
    async with ra.Transaction() as tx:
        tx.on_rollback(ran.append, "x")
    assert ran == []


async def test_compensation_error_holds_original_first_then_each_failure_after_all_tried() -> None:
    ran: list[str] = []
    first_failure = RuntimeError("undo c")
    second_failure = OSError("undo a")

    def failing(exc: BaseException, label: str) -> None:
        ran.append(label)
        raise exc

    original = ValueError("original")
    with pytest.raises(ra.CompensationError) as info:
        async with ra.Transaction() as tx:
            tx.on_rollback(failing, second_failure, "a")
            tx.on_rollback(ran.append, "b")
            tx.on_rollback(failing, first_failure, "c")
            raise original
    assert ran == ["c", "b", "a"]
    assert isinstance(info.value, ra.ResilienceError)
    assert isinstance(info.value, ExceptionGroup)
    assert list(info.value.exceptions) == [original, first_failure, second_failure]


async def test_cancelled_block_runs_compensations_shielded_and_cancellation_propagates() -> None:
    ran: list[str] = []

    async def slow_undo(x: str) -> None:
        await anyio.sleep(5)  # would be cut short if the rollback were not shielded
        ran.append(x)

    with anyio.CancelScope() as scope:
        async with ra.Transaction() as tx:
            tx.on_rollback(slow_undo, "a")
            tx.on_rollback(slow_undo, "b")
            scope.cancel()
            await anyio.sleep(1)
        pytest.fail("the cancellation did not propagate")
    assert scope.cancelled_caught
    assert ran == ["b", "a"]


async def test_cancelled_block_reports_failed_compensations_through_events_and_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()

    def failing() -> None:
        raise RuntimeError("cannot undo")

    with hooks(recorder), caplog.at_level(logging.DEBUG), anyio.CancelScope() as scope:
        async with ra.Transaction("cancelled-tx") as tx:
            tx.on_rollback(failing)
            scope.cancel()
            await anyio.sleep(1)
    assert scope.cancelled_caught
    failed = recorder.of("compensation.failed")
    assert len(failed) == 1
    assert isinstance(failed[0].exception, RuntimeError)
    assert any("cannot undo" in r.getMessage() or r.exc_info for r in caplog.records)


async def test_enlist_on_trio_raises_a_clear_runtime_error(anyio_backend_name: str) -> None:
    if anyio_backend_name != "trio":
        return
    import aiosqlite

    async with ra.Transaction() as tx:
        with pytest.raises(RuntimeError, match="asyncio"):
            await tx.enlist(aiosqlite.connect(":memory:"))


@asyncio_only
async def test_enlist_aiosqlite_commits_on_success_and_rolls_back_on_failure(
    tmp_path: Path,
) -> None:
    import aiosqlite

    path = tmp_path / "db.sqlite"
    async with aiosqlite.connect(path) as setup:
        await setup.execute("create table t (x integer)")
        await setup.commit()
    async with aiosqlite.connect(path) as conn:
        async with ra.Transaction() as tx:
            await tx.enlist(conn)
            await conn.execute("insert into t values (1)")
        with pytest.raises(ValueError):
            async with ra.Transaction() as tx:
                await tx.enlist(conn)
                await conn.execute("insert into t values (2)")
                raise ValueError("fail")
    async with aiosqlite.connect(path) as check:
        rows = await (await check.execute("select x from t")).fetchall()
    assert [tuple(r) for r in rows] == [(1,)]


@asyncio_only
@pytest.mark.postgres
async def test_enlist_asyncpg_commits_on_success_and_rolls_back_on_failure() -> None:
    import asyncpg

    table = f"accb_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await conn.execute(f"create table {table} (x integer)")
        async with ra.Transaction() as tx:
            await tx.enlist(conn)
            await conn.execute(f"insert into {table} values (1)")
        with pytest.raises(ValueError):
            async with ra.Transaction() as tx:
                await tx.enlist(conn)
                await conn.execute(f"insert into {table} values (2)")
                raise ValueError("fail")
        rows = await conn.fetch(f"select x from {table}")
        assert [r["x"] for r in rows] == [1]
    finally:
        await conn.execute(f"drop table if exists {table}")
        await conn.close()


async def test_recover_never_runs_compensations_of_a_process_still_alive(tmp_path: Path) -> None:
    UNDONE.clear()
    journal = ra.SQLiteJournal(tmp_path / "journal.db")
    async with ra.Transaction("live", journal=journal) as tx:
        tx.on_rollback(release, "seat-1")
        await ra.recover(journal)
        assert UNDONE == []
    assert UNDONE == []


_CRASHER = """
import asyncio, os, sys
import resilient_async as ra

@ra.compensation("accb.release")
async def release(item):
    pass

async def main():
    journal = ra.SQLiteJournal(sys.argv[1])
    async with ra.Transaction("crashing", journal=journal) as tx:
        tx.on_rollback(release, "seat-9")
        os._exit(7)  # the record must already be durable: on_rollback has returned

asyncio.run(main())
"""


@pytest.mark.real_time
async def test_recover_runs_a_crashed_process_compensations_exactly_once(tmp_path: Path) -> None:
    UNDONE.clear()
    path = tmp_path / "journal.db"
    done = subprocess.run(
        [sys.executable, "-c", _CRASHER, str(path)], cwd=ROOT, capture_output=True, timeout=120
    )
    assert done.returncode == 7, done.stderr.decode()
    journal = ra.SQLiteJournal(path)
    await ra.recover(journal)
    assert UNDONE == ["seat-9"]
    await ra.recover(journal)
    assert UNDONE == ["seat-9"]


# --- Exception handler and supervision --------------------------------------------------------


@asyncio_only
async def test_exception_handler_classifies_logs_and_calls_on_error_with_asyncio_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    original_handler = loop.get_exception_handler()
    previous: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: previous.append(context))
    seen: list[tuple[BaseException, dict[str, Any]]] = []
    logger = logging.getLogger("accb.handler")
    try:
        handle = ra.install_exception_handler(
            on_error=lambda exc, context: seen.append((exc, context)), logger=logger
        )
        with caplog.at_level(logging.DEBUG, logger="accb.handler"):
            with ra.error_context(order=42):
                boom = ConnectionError("lost")
                try:
                    with ra.error_context(step="pay"):
                        raise boom
                except ConnectionError as exc:
                    loop.call_exception_handler({"message": "unhandled", "exception": exc})
        assert len(seen) == 1
        exc, context = seen[0]
        assert exc is boom
        assert context["exception"] is boom and context["message"] == "unhandled"
        assert ra.context_of(exc) is not None and ra.context_of(exc)["step"] == "pay"
        assert any(r.name == "accb.handler" for r in caplog.records)
        # The previous handler is chained.
        assert [c["exception"] for c in previous] == [boom]
        handle.uninstall()
        assert loop.get_exception_handler() is not None
        loop.call_exception_handler({"message": "after", "exception": KeyError("k")})
        assert len(seen) == 1 and len(previous) == 2
    finally:
        loop.set_exception_handler(original_handler)


@asyncio_only
async def test_exception_handler_handle_is_a_context_manager_restoring_the_previous() -> None:
    loop = asyncio.get_running_loop()
    original_handler = loop.get_exception_handler()
    seen: list[BaseException] = []
    try:
        loop.set_exception_handler(None)
        with ra.install_exception_handler(on_error=lambda exc, ctx: seen.append(exc)):
            assert loop.get_exception_handler() is not None
        assert loop.get_exception_handler() is None
    finally:
        loop.set_exception_handler(original_handler)


class Child:
    """A supervised child that crashes on its first `crashes` runs, then waits forever."""

    def __init__(self, crashes: int = 0, *, returns: bool = False) -> None:
        self.crashes = crashes
        self.returns = returns
        self.starts = 0

    async def __call__(self, *args: object) -> None:
        self.starts += 1
        await anyio.sleep(0.01)
        if self.starts <= self.crashes:
            raise ConnectionError(f"crash {self.starts}")
        if self.returns:
            return
        await anyio.sleep_forever()


async def _run_for(sup_kwargs: dict[str, Any], children: list[tuple[Child, str]], t: float) -> None:
    with anyio.move_on_after(t):
        async with ra.Supervisor(**sup_kwargs) as sup:
            for child, restart in children:
                sup.start_soon(child, name=None, restart=restart)


async def test_supervisor_one_for_one_restarts_only_the_crashed_child() -> None:
    crashing, steady = Child(crashes=1), Child()
    await _run_for({}, [(crashing, "permanent"), (steady, "permanent")], 1.0)
    assert crashing.starts == 2
    assert steady.starts == 1


async def test_supervisor_permanent_child_is_restarted_after_a_normal_return() -> None:
    child = Child(returns=True)
    await _run_for({"max_restarts": 100, "within": 0.001}, [(child, "permanent")], 0.055)
    assert child.starts >= 2


async def test_supervisor_transient_child_is_restarted_only_after_an_error() -> None:
    returning = Child(returns=True)
    crashing_then_returns = Child(crashes=1, returns=True)
    await _run_for({}, [(returning, "transient"), (crashing_then_returns, "transient")], 1.0)
    assert returning.starts == 1
    assert crashing_then_returns.starts == 2


async def test_supervisor_temporary_child_error_is_reported_and_does_not_propagate() -> None:
    recorder = Recorder()
    crashing = Child(crashes=1)
    with hooks(recorder):
        await _run_for({}, [(crashing, "temporary")], 1.0)
    assert crashing.starts == 1
    assert recorder.events, "the temporary child's crash was not reported as an event"


async def test_supervisor_one_for_all_restarts_every_child() -> None:
    crashing, steady = Child(crashes=1), Child()
    await _run_for({"strategy": "one_for_all"}, [(steady, "permanent"), (crashing, "permanent")], 1)
    assert crashing.starts == 2
    assert steady.starts == 2


async def test_supervisor_rest_for_one_restarts_the_crashed_child_and_those_after_it() -> None:
    before, crashing, after = Child(), Child(crashes=1), Child()
    children = [(before, "permanent"), (crashing, "permanent"), (after, "permanent")]
    await _run_for({"strategy": "rest_for_one"}, children, 1.0)
    assert (before.starts, crashing.starts, after.starts) == (1, 2, 2)


async def test_supervisor_gives_up_unwrapped_with_the_crashes_cancelling_every_child() -> None:
    crashing = Child(crashes=100)
    cancelled: list[bool] = []

    async def steady() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    with pytest.raises(ra.SupervisorGaveUp) as info:
        async with ra.Supervisor(max_restarts=3, within=5.0) as sup:
            sup.start_soon(steady)
            sup.start_soon(crashing)
    assert isinstance(info.value, ra.ResilienceError)
    assert crashing.starts == 4
    assert [str(e) for e in info.value.exceptions] == [f"crash {i}" for i in range(1, 5)]
    assert cancelled == [True]


async def test_supervisor_one_restart_is_one_crash_however_many_children_restart() -> None:
    crashing = Child(crashes=2)
    others = [Child(), Child()]
    children = [(crashing, "permanent")] + [(c, "permanent") for c in others]
    await _run_for({"strategy": "one_for_all", "max_restarts": 2, "within": 5.0}, children, 1.0)
    assert crashing.starts == 3
    assert [c.starts for c in others] == [3, 3]


async def test_supervisor_restart_emits_supervisor_restarted() -> None:
    recorder = Recorder()
    with hooks(recorder):
        await _run_for({}, [(Child(crashes=1), "permanent")], 1.0)
    assert len(recorder.of("supervisor.restarted")) == 1


async def test_supervisor_backoff_delays_restarts() -> None:
    child = Child(crashes=1)
    starts: list[float] = []

    async def timed() -> None:
        starts.append(anyio.current_time())
        await child()

    with anyio.move_on_after(10):
        async with ra.Supervisor(backoff=ra.backoff.constant(2.0)) as sup:
            sup.start_soon(timed)
    assert len(starts) == 2
    assert starts[1] - starts[0] >= 2.0


async def test_supervisor_start_soon_passes_positional_args() -> None:
    got: list[tuple[object, ...]] = []

    async def child(*args: object) -> None:
        got.append(args)

    async with ra.Supervisor() as sup:
        sup.start_soon(child, 1, "two", name="c", restart="temporary")
    assert got == [(1, "two")]


def test_supervisor_rejects_an_unknown_strategy_and_restart() -> None:
    with pytest.raises(ValueError, match="strategy"):
        ra.Supervisor(strategy="one_for_none")
    with pytest.raises(ValueError, match="max_restarts"):
        ra.Supervisor(max_restarts=-1)


# --- Shared state across processes ------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


def _prefix() -> str:
    return f"accb-{uuid.uuid4().hex[:12]}"


def _delete_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def _failing() -> None:
    raise ConnectionError("down")


async def _ok() -> str:
    return "ok"


async def test_memory_store_is_the_default_and_same_named_breakers_do_not_share() -> None:
    first = ra.CircuitBreaker("same", consecutive_failures=1, open_for=30)
    second = ra.CircuitBreaker("same", consecutive_failures=1, open_for=30)
    assert isinstance(ra.stores.MemoryStore(), object)
    with pytest.raises(ConnectionError):
        await first.call(_failing)
    assert first.state is ra.BreakerState.OPEN
    assert second.state is ra.BreakerState.CLOSED
    assert await second.call(_ok) == "ok"


@asyncio_only
@pytest.mark.redis
async def test_redis_store_shares_breaker_state_between_stores_with_the_same_prefix() -> None:
    prefix = _prefix()
    try:
        one = ra.stores.RedisStore(REDIS_URL, prefix=prefix)
        two = ra.stores.RedisStore(REDIS_URL, prefix=prefix)
        a = ra.CircuitBreaker("payments", consecutive_failures=2, open_for=30, store=one)
        b = ra.CircuitBreaker("payments", consecutive_failures=2, open_for=30, store=two)
        try:
            for _ in range(2):
                with pytest.raises(ConnectionError):
                    await a.call(_failing)
            with pytest.raises(ra.CircuitOpenError):
                await b.call(_ok)
        finally:
            await one.close()
            await two.close()
    finally:
        _delete_prefix(prefix)


@asyncio_only
@pytest.mark.redis
async def test_redis_store_accepts_a_redis_py_asyncio_client_and_shares_tokens() -> None:
    import redis.asyncio

    prefix = _prefix()
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        one = ra.stores.RedisStore(client, prefix=prefix)
        two = ra.stores.RedisStore(REDIS_URL, prefix=prefix)
        a = ra.RateLimiter(2, per=60, name="api", store=one)
        b = ra.RateLimiter(2, per=60, name="api", store=two)
        try:
            await a.acquire()
            await b.acquire()
            with pytest.raises(ra.RateLimitedError) as info:
                await a.acquire()
            assert info.value.retry_after is not None and info.value.retry_after > 0
        finally:
            await one.close()
            await two.close()
    finally:
        await client.aclose()
        _delete_prefix(prefix)


@asyncio_only
@pytest.mark.redis
async def test_redis_store_shares_the_retry_budget() -> None:
    prefix = _prefix()
    try:
        one = ra.stores.RedisStore(REDIS_URL, prefix=prefix)
        two = ra.stores.RedisStore(REDIS_URL, prefix=prefix)
        # ratio 0, min_per_second 0.1 over ttl 10: one retry in the window, for everyone.
        kw: dict[str, Any] = {"ratio": 0.0, "min_per_second": 0.1, "ttl": 10.0, "name": "b"}
        first = ra.Retry(attempts=5, backoff=ra.backoff.constant(0.01),
                         budget=ra.RetryBudget(**kw, store=one))
        second = ra.Retry(attempts=5, backoff=ra.backoff.constant(0.01),
                          budget=ra.RetryBudget(**kw, store=two))
        calls = 0

        async def down() -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

        try:
            with pytest.raises(ConnectionError):
                await first.call(down)
            with pytest.raises(ConnectionError):
                await second.call(down)
        finally:
            await one.close()
            await two.close()
        assert calls == 3  # two first attempts and the single retry the shared budget allows
    finally:
        _delete_prefix(prefix)


@asyncio_only
@pytest.mark.redis
async def test_half_open_breaker_admits_exactly_half_open_calls_across_stores() -> None:
    prefix = _prefix()
    try:
        stores = [ra.stores.RedisStore(REDIS_URL, prefix=prefix) for _ in range(4)]
        breakers = [
            ra.CircuitBreaker("probe", consecutive_failures=1, open_for=0.2, store=s)
            for s in stores
        ]
        with pytest.raises(ConnectionError):
            await breakers[0].call(_failing)
        await anyio.sleep(0.5)
        admitted = 0
        rejected = 0

        async def probe() -> None:
            nonlocal admitted
            admitted += 1
            await anyio.sleep(0.5)

        async def attempt(b: ra.CircuitBreaker) -> None:
            nonlocal rejected
            try:
                await b.call(probe)
            except ra.CircuitOpenError:
                rejected += 1

        async with anyio.create_task_group() as tg:
            for b in breakers:
                tg.start_soon(attempt, b)
        for s in stores:
            await s.close()
        assert (admitted, rejected) == (1, 3)
    finally:
        _delete_prefix(prefix)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("http://127.0.0.1:6379",), {}, ValueError),
        (("not a url",), {}, ValueError),
        ((42,), {}, TypeError),
        ((REDIS_URL,), {"prefix": ""}, ValueError),
        ((REDIS_URL,), {"prefix": "has space"}, ValueError),
        ((REDIS_URL,), {"timeout": 0}, ValueError),
        ((REDIS_URL,), {"timeout": -1.0}, ValueError),
    ],
)
@pytest.mark.parametrize("store", [ra.stores.RedisStore, rs.RedisStore])
def test_redis_store_bad_configuration_raises_at_construction(
    store: Any, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        store(*args, **kwargs)


def test_sync_redis_store_rejects_an_asyncio_client() -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    with pytest.raises(TypeError):
        rs.RedisStore(client)


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a stalled Redis)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@asyncio_only
@pytest.mark.real_time
async def test_unreachable_store_degrades_once_to_local_state_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    with _silent_server() as port, hooks(recorder), caplog.at_level(logging.WARNING):
        store = ra.stores.RedisStore(f"redis://127.0.0.1:{port}/0", prefix=_prefix(), timeout=0.1)
        breaker = ra.CircuitBreaker("stalled", consecutive_failures=2, open_for=30, store=store)
        started = time.monotonic()
        for _ in range(5):
            assert await breaker.call(_ok) == "ok"
        elapsed = time.monotonic() - started
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await breaker.call(_failing)
        with pytest.raises(ra.CircuitOpenError):
            await breaker.call(_ok)  # local state still works
        await store.close()
    assert len(recorder.of("store.degraded")) == 1
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    # Five calls, each waiting at most `timeout` on the store (generous margin for load).
    assert elapsed < 5 * 0.1 + 3.0


@asyncio_only
@pytest.mark.redis
async def test_store_recovers_when_the_server_answers_again() -> None:
    from .redis_helpers import private_server

    recorder = Recorder()
    with private_server() as server, hooks(recorder):
        store = ra.stores.RedisStore(server.url, prefix=_prefix(), timeout=0.2)
        breaker = ra.CircuitBreaker("flappy", consecutive_failures=5, open_for=30, store=store)
        assert await breaker.call(_ok) == "ok"
        server.kill()
        assert await breaker.call(_ok) == "ok"
        assert len(recorder.of("store.degraded")) == 1
        server.start()
        for _ in range(200):
            if recorder.of("store.recovered"):
                break
            await anyio.sleep(0.05)
        await store.close()
        assert len(recorder.of("store.recovered")) == 1


@pytest.mark.redis
def test_sync_redis_store_with_a_sync_client_shares_breaker_state() -> None:
    import redis

    prefix = _prefix()
    client = redis.Redis.from_url(REDIS_URL)
    a_store = rs.RedisStore(client, prefix=prefix)
    b_store = rs.RedisStore(REDIS_URL, prefix=prefix)
    try:
        a = rs.CircuitBreaker("sync-shared", consecutive_failures=1, open_for=30, store=a_store)
        b = rs.CircuitBreaker("sync-shared", consecutive_failures=1, open_for=30, store=b_store)

        def fail() -> None:
            raise ConnectionError("down")

        with pytest.raises(ConnectionError):
            a.call(fail)
        with pytest.raises(ra.CircuitOpenError):
            b.call(lambda: "ok")
    finally:
        a_store.close()
        b_store.close()
        client.close()
        _delete_prefix(prefix)
