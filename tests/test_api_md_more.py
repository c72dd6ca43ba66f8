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


# --- Instrumentation ------------------------------------------------------------------------


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"."""

    def __init__(self, failures: int, error: type[BaseException] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self, *args: object, **kwargs: object) -> str:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "ok"


async def test_events_are_frozen_records_with_kind_policy_context_and_fields() -> None:
    recorder = Recorder()
    retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(1.0), name="fetch")
    with hooks(recorder), ra.error_context(order=7):
        assert await retry.call(Flaky(1)) == "ok"
    (event,) = recorder.of("retry.scheduled")
    assert event.kind == "retry.scheduled"
    assert event.policy == "fetch"
    assert event.context["order"] == 7
    assert event.attempt == 1
    assert event.delay == 1.0
    with pytest.raises(AttributeError):
        event.kind = "other"  # type: ignore[misc]


async def test_retry_scheduled_fires_once_per_retry_before_its_wait() -> None:
    seen: list[tuple[int, float, float]] = []

    def hook(event: Any) -> None:
        if event.kind == "retry.scheduled":
            seen.append((event.attempt, event.delay, anyio.current_time()))

    start = anyio.current_time()
    with hooks(hook), pytest.raises(ConnectionError):
        await ra.Retry(attempts=3, backoff=ra.backoff.constant(2.0)).call(Flaky(10))
    assert [(a, d) for a, d, _ in seen] == [(1, 2.0), (2, 2.0)]
    assert seen[0][2] == pytest.approx(start, abs=1e-6)
    assert seen[1][2] == pytest.approx(start + 2.0, abs=1e-6)


async def test_retry_gave_up_event() -> None:
    recorder = Recorder()
    with hooks(recorder), pytest.raises(ConnectionError):
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="r").call(Flaky(5))
    (event,) = recorder.of("retry.gave_up")
    assert event.policy == "r"


async def test_breaker_state_changed_and_rejected_events() -> None:
    recorder = Recorder()
    breaker = ra.CircuitBreaker("dep", consecutive_failures=1, open_for=30)
    with hooks(recorder):
        with pytest.raises(ConnectionError):
            await breaker.call(Flaky(1))
        with pytest.raises(ra.CircuitOpenError):
            await breaker.call(Flaky(0))
    (changed,) = recorder.of("breaker.state_changed")
    assert changed.policy == "dep"
    assert changed.old_state is ra.BreakerState.CLOSED
    assert changed.new_state is ra.BreakerState.OPEN
    assert len(recorder.of("breaker.rejected")) == 1


async def test_bulkhead_limiter_timeout_fallback_hedge_rejection_events() -> None:
    recorder = Recorder()
    bulkhead = ra.Bulkhead(1, name="pool")
    limiter = ra.RateLimiter(1, per=60, name="lim")

    async def hold() -> None:
        await anyio.sleep(1)

    with hooks(recorder):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bulkhead.call, hold)
            await anyio.sleep(0.1)
            with pytest.raises(ra.BulkheadFullError):
                await bulkhead.call(hold)
        await limiter.acquire()
        with pytest.raises(ra.RateLimitedError):
            await limiter.acquire()
        with pytest.raises(ra.DeadlineExceeded):
            await ra.Timeout(0.5).call(hold)
        assert await ra.Fallback(value="cached").call(Flaky(1)) == "cached"

        async def slow() -> str:
            await anyio.sleep(1)
            return "ok"

        assert await ra.Hedge(0.1).call(slow) == "ok"
    assert [e.policy for e in recorder.of("bulkhead.rejected")] == ["pool"]
    assert [e.policy for e in recorder.of("limiter.rejected")] == ["lim"]
    assert len(recorder.of("timeout.expired")) == 1
    assert len(recorder.of("fallback.used")) == 1
    assert len(recorder.of("hedge.started")) >= 1


async def test_compensation_failed_event() -> None:
    recorder = Recorder()

    def failing() -> None:
        raise RuntimeError("undo failed")

    with hooks(recorder), pytest.raises(ra.CompensationError):
        async with ra.Transaction("order") as tx:
            tx.on_rollback(failing)
            raise ValueError("boom")
    (event,) = recorder.of("compensation.failed")
    assert isinstance(event.exception, RuntimeError)


async def test_set_hooks_and_get_hooks() -> None:
    recorder = Recorder()
    previous = list(get_hooks())
    try:
        set_hooks([recorder])
        assert recorder in list(get_hooks())
        with pytest.raises(ConnectionError):
            await ra.Retry(attempts=2, backoff=ra.backoff.constant(0)).call(Flaky(5))
        assert "retry.scheduled" in recorder.kinds()
    finally:
        set_hooks(previous)
    assert recorder not in list(get_hooks())


async def test_hooks_context_manager_adds_for_the_block_and_removes_after() -> None:
    recorder = Recorder()
    retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(0))
    with hooks(recorder):
        await retry.call(Flaky(1))
    count = len(recorder.events)
    assert count >= 1
    await retry.call(Flaky(1))
    assert len(recorder.events) == count


async def test_hooks_context_manager_is_contextvar_scoped() -> None:
    recorder = Recorder()
    retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(0.5))
    inside = anyio.Event()
    release_child = anyio.Event()

    async def child() -> None:
        with hooks(recorder):
            inside.set()
            await release_child.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
        await inside.wait()
        await retry.call(Flaky(1))  # the parent does not see the child's hook
        release_child.set()
    assert recorder.events == []


async def test_a_hook_that_raises_is_logged_and_never_breaks_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError("hook bug")

    with hooks(broken), caplog.at_level(logging.DEBUG):
        assert await ra.Retry(attempts=2, backoff=ra.backoff.constant(0)).call(Flaky(1)) == "ok"
    assert any("hook bug" in (r.getMessage() + str(r.exc_info)) for r in caplog.records)


async def test_policy_hooks_keyword_receives_only_this_policys_events() -> None:
    mine = Recorder()
    a = ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="a", hooks=[mine])
    b = ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="b")
    await a.call(Flaky(1))
    await b.call(Flaky(1))
    assert mine.events and {e.policy for e in mine.events} == {"a"}


async def test_logging_hook_records_carry_kind_and_policy_extras_and_name_both(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("accb.events")
    with caplog.at_level(logging.DEBUG, logger="accb.events"), hooks(LoggingHook(logger)):
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="pay").call(Flaky(1))
    records = [r for r in caplog.records if getattr(r, "kind", None) == "retry.scheduled"]
    assert len(records) == 1
    assert records[0].name == "accb.events"
    assert records[0].policy == "pay"  # type: ignore[attr-defined]
    assert "retry.scheduled" in records[0].getMessage()
    assert "pay" in records[0].getMessage()


async def test_logging_hook_default_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG), hooks(LoggingHook()):
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="x").call(Flaky(1))
    assert any(getattr(r, "kind", None) == "retry.scheduled" for r in caplog.records)


async def test_structlog_hook_one_event_per_record_with_kind_policy_and_fields() -> None:
    import structlog
    from structlog.testing import capture_logs

    from resilient_async.instrumentation import StructlogHook

    with capture_logs() as logs, hooks(StructlogHook()):
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(0.5), name="s").call(Flaky(1))
    scheduled = [e for e in logs if e.get("kind") == "retry.scheduled"]
    assert len(scheduled) == 1
    assert scheduled[0]["policy"] == "s"
    assert scheduled[0]["attempt"] == 1
    assert scheduled[0]["delay"] == 0.5
    assert structlog is not None


async def test_prometheus_hook_counter_and_retry_delay_histogram() -> None:
    from prometheus_client import CollectorRegistry

    from resilient_async.instrumentation import PrometheusHook

    registry = CollectorRegistry()
    with hooks(PrometheusHook(registry=registry)):
        with pytest.raises(ConnectionError):
            await ra.Retry(attempts=3, backoff=ra.backoff.constant(0.25), name="p").call(
                Flaky(10)
            )
    counted = registry.get_sample_value(
        "resilient_async_events_total", {"kind": "retry.scheduled", "policy": "p"}
    )
    assert counted == 2
    assert registry.get_sample_value(
        "resilient_async_retry_delay_seconds_count", {"policy": "p"}
    ) == 2
    assert registry.get_sample_value(
        "resilient_async_retry_delay_seconds_sum", {"policy": "p"}
    ) == pytest.approx(0.5)


async def test_opentelemetry_hook_counter_and_span_events() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from resilient_async.instrumentation import OpenTelemetryHook

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    hook = OpenTelemetryHook(meter_provider=meters, tracer_provider=tracers)
    tracer = tracers.get_tracer("accb")
    with tracer.start_as_current_span("work"), hooks(hook):
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="o").call(Flaky(1))
    data = reader.get_metrics_data()
    points = []
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            if scope_metrics.scope.name != "resilient_async":
                continue
            for metric in scope_metrics.metrics:
                if metric.name == "resilience.events":
                    points.extend(metric.data.data_points)
    scheduled = [
        p for p in points
        if p.attributes.get("event.kind") == "retry.scheduled"
        and p.attributes.get("policy.name") == "o"
    ]
    assert [p.value for p in scheduled] == [1]
    (span,) = exporter.get_finished_spans()
    assert "retry.scheduled" in [e.name for e in span.events]
    meters.shutdown()


@pytest.mark.parametrize(
    ("module", "hook_name", "extra"),
    [
        ("prometheus_client", "PrometheusHook", "prometheus"),
        ("structlog", "StructlogHook", "structlog"),
        ("opentelemetry", "OpenTelemetryHook", "otel"),
    ],
)
def test_adapter_without_its_library_raises_import_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, hook_name: str, extra: str
) -> None:
    import resilient_async.instrumentation as instrumentation

    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"\[{extra}\]"):
        getattr(instrumentation, hook_name)()


# --- Testing ----------------------------------------------------------------------------------


async def test_set_testing_true_skips_real_waits_as_a_context_manager() -> None:
    retry = ra.Retry(attempts=3, backoff=ra.backoff.constant(10.0))
    start = anyio.current_time()
    with set_testing(True):
        flaky = Flaky(2)
        assert await retry.call(flaky) == "ok"
    assert flaky.calls == 3
    assert anyio.current_time() == start
    assert await retry.call(Flaky(1)) == "ok"
    assert anyio.current_time() - start >= 10.0


async def test_set_testing_attempts_caps_every_retry() -> None:
    with set_testing(True, attempts=2):
        flaky = Flaky(10)
        with pytest.raises(ConnectionError):
            await ra.Retry(attempts=5).call(flaky)
    assert flaky.calls == 2


async def test_set_testing_as_a_plain_call() -> None:
    set_testing(True)
    try:
        start = anyio.current_time()
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(10.0)).call(Flaky(1))
        assert anyio.current_time() == start
    finally:
        set_testing(False)
    start = anyio.current_time()
    await ra.Retry(attempts=2, backoff=ra.backoff.constant(10.0)).call(Flaky(1))
    assert anyio.current_time() - start >= 10.0


def test_set_testing_applies_to_the_sync_twin() -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("x")
        return "ok"

    started = time.monotonic()
    with set_testing(True):
        assert rs.Retry(attempts=3, backoff=ra.backoff.constant(30.0)).call(flaky) == "ok"
    assert time.monotonic() - started < 30.0


async def test_faults_error_rate_one_always_raises_the_given_errors() -> None:
    wrapped = faults(_ok, error_rate=1.0)
    with pytest.raises(ConnectionError):
        await wrapped()
    wrapped = faults(_ok, error_rate=1.0, errors=(KeyError,))
    with pytest.raises(KeyError):
        await wrapped()
    assert await faults(_ok)() == "ok"


async def test_faults_are_reproducible_for_a_seed() -> None:
    async def outcomes(seed: int) -> list[bool]:
        wrapped = faults(_ok, error_rate=0.5, seed=seed)
        result = []
        for _ in range(40):
            try:
                await wrapped()
                result.append(True)
            except ConnectionError:
                result.append(False)
        return result

    first = await outcomes(3)
    assert first == await outcomes(3)
    assert True in first and False in first


async def test_faults_latency_slows_down_calls() -> None:
    wrapped = faults(_ok, latency=0.5, latency_rate=1.0)
    start = anyio.current_time()
    assert await wrapped() == "ok"
    assert anyio.current_time() - start == pytest.approx(0.5)


async def test_faults_hang_rate_hangs_the_call() -> None:
    wrapped = faults(_ok, hang_rate=1.0)
    with anyio.move_on_after(1000) as scope:
        await wrapped()
    assert scope.cancelled_caught


async def test_faults_script_follows_its_outcomes() -> None:
    calls: list[tuple[object, ...]] = []

    async def dep(*args: object) -> str:
        calls.append(args)
        return "ok"

    instance = KeyError("scripted")
    wrapped = faults(dep, script=[ConnectionError, instance, 0.25, None])
    with pytest.raises(ConnectionError):
        await wrapped(1)
    with pytest.raises(KeyError) as info:
        await wrapped(2)
    assert info.value is instance
    start = anyio.current_time()
    assert await wrapped(3) == "ok"
    assert anyio.current_time() - start == pytest.approx(0.25)
    assert await wrapped(4) == "ok"
    assert calls == [(3,), (4,)]


def test_pytest_plugin_fixtures_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import time

        import pytest

        import resilient_async as ra

        pytestmark = pytest.mark.anyio

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        def test_no_wait_sync(ra_no_wait):
            import resilient_async.sync as rs
            calls = []
            def flaky():
                calls.append(1)
                if len(calls) < 3:
                    raise ConnectionError("x")
                return "ok"
            start = time.monotonic()
            assert rs.Retry(attempts=3, backoff=ra.backoff.constant(60)).call(flaky) == "ok"
            assert time.monotonic() - start < 30

        async def test_faults_fixture(ra_faults):
            async def dep():
                return "ok"
            wrapped = ra_faults(dep, script=[ConnectionError, None])
            with pytest.raises(ConnectionError):
                await wrapped()
            assert await wrapped() == "ok"

        async def test_virtual_time(ra_virtual_time):
            start = time.monotonic()
            await asyncio.sleep(3600)
            assert time.monotonic() - start < 30
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:asyncio", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
