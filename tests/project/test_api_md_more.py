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

from ..helpers import Recorder, asyncio_only

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

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
        [sys.executable, "-c", _CRASHER, str(path)],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
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
        assert context["exception"] is boom
        assert context["message"] == "unhandled"
        assert ra.context_of(exc) is not None
        assert ra.context_of(exc)["step"] == "pay"
        assert any(r.name == "accb.handler" for r in caplog.records)
        # The previous handler is chained.
        assert [c["exception"] for c in previous] == [boom]
        handle.uninstall()
        assert loop.get_exception_handler() is not None
        loop.call_exception_handler({"message": "after", "exception": KeyError("k")})
        assert len(seen) == 1
        assert len(previous) == 2
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
            assert info.value.retry_after is not None
            assert info.value.retry_after > 0
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
        first = ra.Retry(
            attempts=5, backoff=ra.backoff.constant(0.01), budget=ra.RetryBudget(**kw, store=one)
        )
        second = ra.Retry(
            attempts=5, backoff=ra.backoff.constant(0.01), budget=ra.RetryBudget(**kw, store=two)
        )
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
    from ..redis_helpers import private_server

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
    assert mine.events
    assert {e.policy for e in mine.events} == {"a"}


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
            await ra.Retry(attempts=3, backoff=ra.backoff.constant(0.25), name="p").call(Flaky(10))
    counted = registry.get_sample_value(
        "resilient_async_events_total", {"kind": "retry.scheduled", "policy": "p"}
    )
    assert counted == 2
    assert (
        registry.get_sample_value("resilient_async_retry_delay_seconds_count", {"policy": "p"}) == 2
    )
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
        p
        for p in points
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
    assert True in first
    assert False in first


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


# --- Sync API ---------------------------------------------------------------------------------


def test_sync_module_has_the_same_names() -> None:
    names = [
        "Retry",
        "retry",
        "CircuitBreaker",
        "Bulkhead",
        "RateLimiter",
        "Timeout",
        "deadline",
        "Fallback",
        "pipeline",
        "Transaction",
        "classify",
        "error_context",
        "backoff",
        "ResilienceError",
        "CircuitOpenError",
        "BulkheadFullError",
        "RateLimitedError",
        "DeadlineExceeded",
        "CompensationError",
    ]
    missing = [n for n in names if not hasattr(rs, n)]
    assert missing == []
    assert rs.classify is ra.classify
    assert rs.DeadlineExceeded is ra.DeadlineExceeded


def test_sync_policy_call_and_decorator_on_plain_functions() -> None:
    calls = 0

    def flaky(x: int, *, y: int) -> int:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise ConnectionError("x")
        return x + y

    retry = rs.Retry(attempts=3, backoff=ra.backoff.constant(0))
    assert retry.call(flaky, 1, y=2) == 3

    @rs.retry
    def bare() -> str:
        """Doc."""
        return "ok"

    @rs.CircuitBreaker("deco")
    def guarded(a: int) -> int:
        return a * 2

    assert bare() == "ok"
    assert bare.__doc__ == "Doc."
    assert bare.__name__ == "bare"
    assert guarded(4) == 8


def test_sync_guards_are_plain_context_managers() -> None:
    with rs.Bulkhead(1), rs.CircuitBreaker("cm"), rs.RateLimiter(5), rs.Timeout(10):
        pass
    with rs.deadline(10):
        assert rs.remaining() <= 10


def test_sync_policy_rejects_an_async_callable_naming_the_twin() -> None:
    async def coro_fn() -> None:
        return None

    with pytest.raises(TypeError, match="async"):
        rs.Retry().call(coro_fn)


async def test_async_policy_rejects_a_sync_callable_naming_the_twin() -> None:
    with pytest.raises(TypeError, match="sync"):
        await ra.Retry().call(lambda: 1)


@pytest.mark.real_time
def test_sync_deadline_never_turns_a_completed_call_into_an_error() -> None:
    recorder = Recorder()

    def slow() -> str:
        time.sleep(0.2)
        return "done"

    with hooks(recorder):
        assert rs.Timeout(0.05).call(slow) == "done"
        with rs.deadline(0.05):
            assert slow() == "done"
    assert len(recorder.of("timeout.overrun")) >= 2


@pytest.mark.real_time
def test_sync_block_finishing_late_raises_its_own_error() -> None:
    def slow_fail() -> None:
        time.sleep(0.2)
        raise KeyError("own")

    with pytest.raises(KeyError):
        rs.Timeout(0.05).call(slow_fail)


@pytest.mark.real_time
def test_sync_guarded_call_started_after_the_deadline_raises_at_once() -> None:
    started: list[str] = []
    with rs.deadline(0.05):
        time.sleep(0.2)
        with pytest.raises(ra.DeadlineExceeded):
            rs.Bulkhead(2).call(started.append, "bulkhead")
        with pytest.raises(ra.DeadlineExceeded):
            rs.CircuitBreaker("late").call(started.append, "breaker")
    assert started == []


@pytest.mark.real_time
def test_sync_retry_past_the_deadline_reraises_its_last_error() -> None:
    calls = 0

    def slow_fail() -> None:
        nonlocal calls
        calls += 1
        time.sleep(0.2)
        raise ConnectionError(f"attempt {calls}")

    with rs.deadline(0.05), pytest.raises(ConnectionError, match="attempt 1"):
        rs.Retry(attempts=5, backoff=ra.backoff.constant(0)).call(slow_fail)
    assert calls == 1


@pytest.mark.real_time
def test_sync_policies_are_thread_safe() -> None:
    bulkhead = rs.Bulkhead(2, max_queue=100)
    lock = threading.Lock()
    running = 0
    peak = 0

    def work() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    threads = [threading.Thread(target=bulkhead.call, args=(work,)) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2
    assert bulkhead.in_use == 0
    assert bulkhead.queued == 0


def test_sync_transaction_compensations_and_compensation_error() -> None:
    ran: list[str] = []
    failure = RuntimeError("undo")
    original = ValueError("boom")

    def failing() -> None:
        raise failure

    with pytest.raises(ra.CompensationError) as info:
        with rs.Transaction("sync-tx") as tx:
            tx.on_rollback(ran.append, "a")
            tx.on_rollback(failing)
            tx.on_rollback(ran.append, "c")
            raise original
    assert ran == ["c", "a"]
    assert list(info.value.exceptions) == [original, failure]


# --- Integrations -----------------------------------------------------------------------------


class Upstream:
    """An httpx MockTransport handler that answers from a script of (status, body, headers)."""

    def __init__(self, *replies: tuple[int, bytes] | tuple[int, bytes, dict[str, str]]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        headers = reply[2] if len(reply) == 3 else {}  # type: ignore[misc]
        return httpx.Response(reply[0], content=reply[1], headers=headers)


def _client(upstream: Upstream, policy: Any, **kw: Any) -> httpx.AsyncClient:
    from resilient_async.integrations.httpx import AsyncResilientTransport

    transport = AsyncResilientTransport(policy, transport=httpx.MockTransport(upstream), **kw)
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


def _retry(attempts: int = 3) -> ra.Retry:
    return ra.Retry(attempts=attempts, backoff=ra.backoff.constant(0.01))


async def test_httpx_retry_status_is_a_failure_then_success() -> None:
    upstream = Upstream((503, b"busy"), (502, b"bad"), (200, b"fine"))
    async with _client(upstream, _retry()) as client:
        response = await client.get("/x")
    assert (response.status_code, response.text) == (200, "fine")
    assert len(upstream.requests) == 3


async def test_httpx_gives_up_returning_the_last_response_with_its_body() -> None:
    upstream = Upstream((503, b"first"), (504, b"last body"))
    async with _client(upstream, _retry(2)) as client:
        response = await client.get("/x")
    assert (response.status_code, response.text) == (504, "last body")
    assert len(upstream.requests) == 2


@pytest.mark.parametrize("status", [200, 404, 500, 400])
async def test_httpx_other_statuses_return_at_once(status: int) -> None:
    upstream = Upstream((status, b"body"))
    async with _client(upstream, _retry()) as client:
        response = await client.get("/x")
    assert response.status_code == status
    assert response.text == "body"
    assert len(upstream.requests) == 1


async def test_httpx_retry_statuses_parameter() -> None:
    upstream = Upstream((500, b"err"), (200, b"ok"))
    async with _client(upstream, _retry(), retry_statuses=(500,)) as client:
        response = await client.get("/x")
    assert response.status_code == 200
    upstream = Upstream((503, b"err"), (200, b"ok"))
    async with _client(upstream, _retry(), retry_statuses=(500,)) as client:
        response = await client.get("/x")
    assert response.status_code == 503


async def test_httpx_retry_after_is_honoured_by_retry() -> None:
    upstream = Upstream((429, b"slow down", {"Retry-After": "7"}), (200, b"ok"))
    start = anyio.current_time()
    async with _client(upstream, _retry()) as client:
        response = await client.get("/x")
    assert response.status_code == 200
    assert anyio.current_time() - start >= 7.0


async def test_httpx_transport_errors_propagate_unchanged_after_giving_up() -> None:
    attempts = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise httpx.ConnectError("refused", request=request)

    from resilient_async.integrations.httpx import AsyncResilientTransport

    transport = AsyncResilientTransport(_retry(), transport=httpx.MockTransport(refuse))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match="refused"):
            await client.get("http://svc/x")
    assert attempts == 3


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_httpx_methods_outside_methods_are_never_retried(method: str) -> None:
    upstream = Upstream((503, b"busy"), (200, b"ok"))
    async with _client(upstream, _retry()) as client:
        response = await client.request(method, "/x", content=b"payload")
    assert response.status_code == 503
    assert len(upstream.requests) == 1


async def test_httpx_methods_parameter() -> None:
    upstream = Upstream((503, b"busy"), (200, b"ok"))
    async with _client(upstream, _retry(), methods=("POST",)) as client:
        response = await client.post("/x", content=b"p")
    assert response.status_code == 200
    assert len(upstream.requests) == 2


async def test_httpx_streamed_bodies_are_never_retried() -> None:
    upstream = Upstream((503, b"busy"), (200, b"ok"))

    async def body() -> Any:
        yield b"chunk"

    async with _client(upstream, _retry()) as client:
        response = await client.put("/x", content=body())
    assert response.status_code == 503
    assert len(upstream.requests) == 1


async def test_httpx_non_retried_requests_still_pass_the_guards() -> None:
    breaker = ra.CircuitBreaker("api", consecutive_failures=1, open_for=30)
    breaker.force_open()
    upstream = Upstream((200, b"ok"))
    async with _client(upstream, ra.pipeline(_retry(), breaker)) as client:
        with pytest.raises(ra.CircuitOpenError):
            await client.post("/x", content=b"p")
        with pytest.raises(ra.CircuitOpenError):
            await client.get("/x")
    assert upstream.requests == []


async def test_httpx_deadline_header_carries_the_remaining_milliseconds() -> None:
    upstream = Upstream((200, b"ok"))
    async with _client(upstream, _retry()) as client:
        with ra.deadline(2.5):
            await client.get("/x")
        await client.get("/y")
    header = upstream.requests[0].headers["x-request-timeout-ms"]
    assert header.isdigit()
    assert 2400 <= int(header) <= 2500
    assert "x-request-timeout-ms" not in upstream.requests[1].headers


async def test_httpx_deadline_header_renamed_or_switched_off() -> None:
    upstream = Upstream((200, b"ok"))
    async with _client(upstream, _retry(), deadline_header="x-budget") as client:
        with ra.deadline(1):
            await client.get("/x")
    assert "x-budget" in upstream.requests[0].headers
    assert "x-request-timeout-ms" not in upstream.requests[0].headers
    upstream = Upstream((200, b"ok"))
    async with _client(upstream, _retry(), propagate_deadline=False) as client:
        with ra.deadline(1):
            await client.get("/x")
    assert "x-request-timeout-ms" not in upstream.requests[0].headers


@asyncio_only
@pytest.mark.real_time
async def test_httpx_transport_defaults_to_a_real_async_http_transport() -> None:
    from resilient_async.integrations.httpx import AsyncResilientTransport

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with httpx.AsyncClient(transport=AsyncResilientTransport(_retry(2))) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


def test_sync_httpx_transport_retries_and_returns_the_last_response() -> None:
    from resilient_async.integrations.httpx import ResilientTransport

    upstream = Upstream((503, b"busy"), (502, b"last"))
    policy = rs.Retry(attempts=2, backoff=ra.backoff.constant(0))
    transport = ResilientTransport(policy, transport=httpx.MockTransport(upstream))
    with httpx.Client(transport=transport) as client:
        response = client.get("http://svc/x")
        post = client.post("http://svc/y", content=b"p")
    assert (response.status_code, response.text) == (502, "last")
    assert post.status_code == 502
    assert len(upstream.requests) == 3


def test_sync_httpx_transport_defaults_to_http_transport() -> None:
    from resilient_async.integrations.httpx import ResilientTransport

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = rs.Retry(attempts=2, backoff=ra.backoff.constant(0))
    with httpx.Client(transport=ResilientTransport(policy)) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{port}/")


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the remaining time it sees; /slow sleeps 10 s first."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await anyio.sleep(10)
    body = json.dumps({"remaining": ra.remaining() if ra.remaining() != float("inf") else None})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def _asgi_client(**kw: Any) -> httpx.AsyncClient:
    from resilient_async.integrations.asgi import DeadlineMiddleware

    app = DeadlineMiddleware(_asgi_app, **kw)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


async def test_deadline_middleware_runs_the_request_under_the_header_deadline() -> None:
    async with _asgi_client() as client:
        response = await client.get("/", headers={"x-request-timeout-ms": "1500"})
        no_header = await client.get("/")
    assert response.status_code == 200
    assert 1.4 <= response.json()["remaining"] <= 1.5
    assert no_header.json()["remaining"] is None


async def test_deadline_middleware_expired_deadline_gives_504() -> None:
    async with _asgi_client() as client:
        start = anyio.current_time()
        response = await client.get("/slow", headers={"x-request-timeout-ms": "200"})
    assert response.status_code == 504
    assert anyio.current_time() - start < 10


@pytest.mark.parametrize("value", ["abc", "-5", "1.5.2", ""])
async def test_deadline_middleware_malformed_header_gives_400(value: str) -> None:
    async with _asgi_client() as client:
        response = await client.get("/", headers={"x-request-timeout-ms": value})
    assert response.status_code == 400


async def test_deadline_middleware_max_timeout_caps_the_header() -> None:
    async with _asgi_client(max_timeout=1.0) as client:
        capped = await client.get("/", headers={"x-request-timeout-ms": "60000"})
        under = await client.get("/", headers={"x-request-timeout-ms": "500"})
    assert 0.9 <= capped.json()["remaining"] <= 1.0
    assert 0.4 <= under.json()["remaining"] <= 0.5


async def test_deadline_middleware_header_parameter_renames_it() -> None:
    async with _asgi_client(header="x-budget") as client:
        renamed = await client.get("/", headers={"x-budget": "700"})
        ignored = await client.get("/", headers={"x-request-timeout-ms": "500"})
    assert 0.6 <= renamed.json()["remaining"] <= 0.7
    assert ignored.json()["remaining"] is None


async def test_httpx_transport_deadline_reaches_the_asgi_app() -> None:
    from resilient_async.integrations.asgi import DeadlineMiddleware
    from resilient_async.integrations.httpx import AsyncResilientTransport

    inner = httpx.ASGITransport(app=DeadlineMiddleware(_asgi_app))
    transport = AsyncResilientTransport(_retry(), transport=inner)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        with ra.deadline(3):
            response = await client.get("/")
    assert 2.9 <= response.json()["remaining"] <= 3.0


# --- Second pass: finer clauses ----------------------------------------------------------------


@asyncio_only
async def test_database_work_rolls_back_before_compensations_run(tmp_path: Path) -> None:
    import aiosqlite

    path = tmp_path / "order.sqlite"
    seen: list[list[tuple[int]]] = []
    async with aiosqlite.connect(path) as conn:
        await conn.execute("create table t (x integer)")
        await conn.commit()

        async def compensate() -> None:
            rows = await (await conn.execute("select x from t")).fetchall()
            seen.append([tuple(r) for r in rows])

        with pytest.raises(ValueError):
            async with ra.Transaction() as tx:
                await tx.enlist(conn)
                tx.on_rollback(compensate)
                await conn.execute("insert into t values (1)")
                raise ValueError("fail")
    assert seen == [[]]


async def test_compensation_retry_retries_a_failing_compensation() -> None:
    attempts = 0

    def flaky_undo() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ConnectionError("undo transiently failed")

    retry = ra.Retry(attempts=3, backoff=ra.backoff.constant(0.1))
    with pytest.raises(KeyError):
        async with ra.Transaction(compensation_retry=retry) as tx:
            tx.on_rollback(flaky_undo)
            raise KeyError("original")
    assert attempts == 2


async def test_sqlite_journal_accepts_a_str_path_and_recover_accepts_the_journal(
    tmp_path: Path,
) -> None:
    UNDONE.clear()
    journal = ra.SQLiteJournal(str(tmp_path / "j.db"))
    with pytest.raises(ValueError):
        async with ra.Transaction("j", journal=journal) as tx:
            tx.on_rollback(release, "seat-3")
            raise ValueError("fail")
    assert UNDONE == ["seat-3"]
    await ra.recover(journal)  # nothing left open: the rollback already ran it
    assert UNDONE == ["seat-3"]


async def test_supervisor_gave_up_holds_only_the_crashes_within_the_period() -> None:
    crash_times = [0.0, 10.0, 10.5]
    starts = 0

    async def child() -> None:
        nonlocal starts
        starts += 1
        if starts <= len(crash_times):
            delay = crash_times[starts - 1] - (crash_times[starts - 2] if starts > 1 else 0.0)
            await anyio.sleep(delay)
            raise ConnectionError(f"crash {starts}")
        await anyio.sleep_forever()

    with pytest.raises(ra.SupervisorGaveUp) as info:
        async with ra.Supervisor(max_restarts=1, within=2.0) as sup:
            sup.start_soon(child)
    assert [str(e) for e in info.value.exceptions] == ["crash 2", "crash 3"]


async def test_supervisor_temporary_child_error_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        await _run_for({}, [(Child(crashes=1), "temporary")], 1.0)
    assert any("crash 1" in (r.getMessage() + repr(r.exc_info)) for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_restarts": -1}, "max_restarts"),
        ({"within": 0}, "within"),
        ({"within": -1.0}, "within"),
        ({"strategy": "all_for_one"}, "strategy"),
    ],
)
def test_supervisor_bad_configuration_names_the_parameter(
    kwargs: dict[str, Any], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        ra.Supervisor(**kwargs)


async def test_supervisor_start_soon_rejects_an_unknown_restart() -> None:
    with pytest.raises(ValueError, match="restart"):
        async with ra.Supervisor() as sup:
            sup.start_soon(Child(), restart="sometimes")


async def test_supervisor_within_accepts_a_timedelta() -> None:
    from datetime import timedelta

    crashing = Child(crashes=100)
    with pytest.raises(ra.SupervisorGaveUp):
        async with ra.Supervisor(max_restarts=1, within=timedelta(seconds=5)) as sup:
            sup.start_soon(crashing)
    assert crashing.starts == 2


@asyncio_only
async def test_exception_handler_logs_with_the_error_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    original_handler = loop.get_exception_handler()
    try:
        loop.set_exception_handler(lambda _loop, _context: None)
        with caplog.at_level(logging.DEBUG), ra.install_exception_handler():
            try:
                with ra.error_context(tenant="acme"):
                    raise ConnectionError("lost")
            except ConnectionError as exc:
                loop.call_exception_handler({"message": "unhandled", "exception": exc})
    finally:
        loop.set_exception_handler(original_handler)
    messages = [r.getMessage() for r in caplog.records]
    assert any("tenant" in m and "acme" in m for m in messages), messages


@asyncio_only
async def test_exception_handler_chains_to_the_default_handler_when_there_was_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    original_handler = loop.get_exception_handler()
    try:
        loop.set_exception_handler(None)
        with (
            caplog.at_level(logging.ERROR, logger="asyncio"),
            ra.install_exception_handler(),
        ):
            loop.call_exception_handler({"message": "default please", "exception": OSError("x")})
    finally:
        loop.set_exception_handler(original_handler)
    assert any(r.name == "asyncio" and "default please" in r.getMessage() for r in caplog.records)


@asyncio_only
async def test_exception_handler_sees_a_never_retrieved_task_exception() -> None:
    loop = asyncio.get_running_loop()
    original_handler = loop.get_exception_handler()
    seen: list[BaseException] = []
    try:
        loop.set_exception_handler(lambda _loop, _context: None)
        with ra.install_exception_handler(on_error=lambda exc, ctx: seen.append(exc)):

            async def crash() -> None:
                raise ConnectionError("orphan")

            task = loop.create_task(crash())
            await asyncio.sleep(0.01)
            assert task.done()
            del task
            import gc

            gc.collect()
    finally:
        loop.set_exception_handler(original_handler)
    assert [str(e) for e in seen] == ["orphan"]


async def test_hooks_accepts_several_hooks() -> None:
    one, two = Recorder(), Recorder()
    with hooks(one, two):
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(0)).call(Flaky(1))
    assert one.kinds() == two.kinds()
    assert "retry.scheduled" in one.kinds()


def test_prometheus_hook_default_registry_can_be_made_twice() -> None:
    from resilient_async.instrumentation import PrometheusHook

    PrometheusHook()
    PrometheusHook()


async def test_hooks_keyword_on_every_policy() -> None:
    recorders = {name: Recorder() for name in ("b", "bh", "lim", "to", "fb", "hedge", "pipe")}
    breaker = ra.CircuitBreaker("b", consecutive_failures=1, hooks=[recorders["b"]])
    with pytest.raises(ConnectionError):
        await breaker.call(Flaky(1))
    bulkhead = ra.Bulkhead(1, name="bh", hooks=[recorders["bh"]])
    limiter = ra.RateLimiter(1, per=60, name="lim", hooks=[recorders["lim"]])
    await limiter.acquire()
    with pytest.raises(ra.RateLimitedError):
        await limiter.acquire()

    async def hold() -> None:
        await anyio.sleep(1)

    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.call, hold)
        await anyio.sleep(0.1)
        with pytest.raises(ra.BulkheadFullError):
            await bulkhead.call(hold)
    with pytest.raises(ra.DeadlineExceeded):
        await ra.Timeout(0.1, hooks=[recorders["to"]]).call(hold)
    await ra.Fallback(value=1, hooks=[recorders["fb"]]).call(Flaky(1))
    await ra.Hedge(0.1, hooks=[recorders["hedge"]]).call(hold)
    pipe = ra.pipeline(ra.Fallback(value=1), hooks=[recorders["pipe"]])
    await pipe.call(Flaky(1))
    empty = [name for name, r in recorders.items() if not r.events]
    assert empty == []


async def test_httpx_retry_statuses_are_classified_by_the_http_rules_for_a_breaker() -> None:
    # 503 without Retry-After is TRANSIENT: a failure for the breaker's default `on`.
    breaker = ra.CircuitBreaker("up", consecutive_failures=2, open_for=30)
    async with _client(Upstream((503, b"busy")), breaker) as client:
        for _ in range(2):
            assert (await client.get("/x")).status_code == 503
        with pytest.raises(ra.CircuitOpenError):
            await client.get("/x")
    # 429 is THROTTLED: outside the breaker's default `on`, it counts as a success.
    breaker = ra.CircuitBreaker("up2", consecutive_failures=2, open_for=30)
    async with _client(Upstream((429, b"slow")), breaker) as client:
        for _ in range(3):
            assert (await client.get("/x")).status_code == 429
    assert breaker.state is ra.BreakerState.CLOSED


async def test_httpx_retry_after_beyond_max_retry_after_returns_the_response_at_once() -> None:
    upstream = Upstream((429, b"come back tomorrow", {"Retry-After": "3600"}), (200, b"ok"))
    start = anyio.current_time()
    async with _client(upstream, _retry()) as client:
        response = await client.get("/x")
    assert (response.status_code, response.text) == (429, "come back tomorrow")
    assert len(upstream.requests) == 1
    assert anyio.current_time() - start < 1.0


@pytest.mark.parametrize(
    "error", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError]
)
async def test_httpx_transport_errors_are_failures_retried_then_propagated(
    error: type[httpx.TransportError],
) -> None:
    attempts = 0

    def broken(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        raise error("broken", request=request)

    from resilient_async.integrations.httpx import AsyncResilientTransport

    transport = AsyncResilientTransport(_retry(), transport=httpx.MockTransport(broken))
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(error):
            await client.get("http://svc/x")
    assert attempts == 3


def test_sync_transport_rejects_an_async_policy_and_async_transport_a_sync_one() -> None:
    from resilient_async.integrations.httpx import AsyncResilientTransport, ResilientTransport

    with pytest.raises(TypeError):
        ResilientTransport(ra.Retry())
    with pytest.raises(TypeError):
        AsyncResilientTransport(rs.Retry())


def test_sync_transport_streams_and_other_methods_are_not_retried() -> None:
    from resilient_async.integrations.httpx import ResilientTransport

    upstream = Upstream((503, b"busy"))
    policy = rs.Retry(attempts=3, backoff=ra.backoff.constant(0))
    transport = ResilientTransport(policy, transport=httpx.MockTransport(upstream))

    def body() -> Any:
        yield b"chunk"

    with httpx.Client(transport=transport) as client:
        assert client.put("http://svc/x", content=body()).status_code == 503
        assert client.patch("http://svc/x", content=b"p").status_code == 503
    assert len(upstream.requests) == 2


async def test_deadline_middleware_passes_other_scopes_through() -> None:
    from resilient_async.integrations.asgi import DeadlineMiddleware

    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = DeadlineMiddleware(app)

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        return None

    await middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert seen == ["lifespan"]


def test_deadline_middleware_bad_max_timeout_raises_at_construction() -> None:
    from resilient_async.integrations.asgi import DeadlineMiddleware

    with pytest.raises(ValueError, match="max_timeout"):
        DeadlineMiddleware(_asgi_app, max_timeout=0)
    with pytest.raises(ValueError, match="max_timeout"):
        DeadlineMiddleware(_asgi_app, max_timeout=-1.0)


async def test_deadline_middleware_max_timeout_accepts_a_timedelta() -> None:
    from datetime import timedelta

    async with _asgi_client(max_timeout=timedelta(seconds=1)) as client:
        capped = await client.get("/", headers={"x-request-timeout-ms": "60000"})
    assert 0.9 <= capped.json()["remaining"] <= 1.0


@pytest.mark.real_time
def test_sync_wait_started_after_the_deadline_raises_at_once() -> None:
    limiter = rs.RateLimiter(1, per=60, max_wait=30)
    limiter.acquire()
    with rs.deadline(0.05):
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(ra.DeadlineExceeded):
            limiter.acquire()
        with pytest.raises(ra.DeadlineExceeded):
            rs.Timeout(10).call(lambda: None)
    assert time.monotonic() - started < 10


def test_sync_pipeline_fallback_and_retry_factory() -> None:
    calls = 0

    def down() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    guarded = rs.pipeline(
        rs.Fallback(value="cached"), rs.retry(attempts=2, backoff=ra.backoff.constant(0))
    )
    assert guarded.call(down) == "cached"
    assert calls == 2


def test_sync_breaker_as_context_manager_counts_failures() -> None:
    breaker = rs.CircuitBreaker("cm-sync", consecutive_failures=1, open_for=30)
    with pytest.raises(ConnectionError), breaker:
        raise ConnectionError("x")
    assert breaker.state is ra.BreakerState.OPEN
    with pytest.raises(ra.CircuitOpenError), breaker:
        pass


def test_set_testing_rejects_bad_attempts() -> None:
    with pytest.raises(ValueError, match="attempts"):
        set_testing(True, attempts=0)


@asyncio_only
@pytest.mark.redis
async def test_async_redis_store_rejects_a_sync_client() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        with pytest.raises(TypeError):
            ra.stores.RedisStore(client)
    finally:
        client.close()


@asyncio_only
@pytest.mark.redis
async def test_try_acquire_with_a_shared_store_raises_type_error() -> None:
    store = ra.stores.RedisStore(REDIS_URL, prefix=_prefix())
    try:
        limiter = ra.RateLimiter(5, name="t", store=store)
        with pytest.raises(TypeError, match="acquire"):
            limiter.try_acquire()
    finally:
        await store.close()


@asyncio_only
@pytest.mark.redis
async def test_redis_store_timeout_accepts_a_timedelta() -> None:
    from datetime import timedelta

    store = ra.stores.RedisStore(REDIS_URL, prefix=_prefix(), timeout=timedelta(seconds=0.5))
    await store.close()


_WAITER = """
import asyncio, sys
import resilient_async as ra

@ra.compensation("accb.release")
async def release(item):
    pass

async def main():
    journal = ra.SQLiteJournal(sys.argv[1])
    async with ra.Transaction("waiting", journal=journal) as tx:
        tx.on_rollback(release, "seat-5")
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


@pytest.mark.real_time
async def test_recover_skips_a_live_process_then_runs_its_compensations_once_it_died(
    tmp_path: Path,
) -> None:
    UNDONE.clear()
    path = tmp_path / "journal.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _WAITER, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        journal = ra.SQLiteJournal(path)
        await ra.recover(journal)
        assert UNDONE == []  # its process is alive
    finally:
        child.kill()
        child.wait(timeout=60)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    await ra.recover(journal)
    assert UNDONE == ["seat-5"]


async def test_journal_rejects_non_json_arguments_and_unregistered_compensations(
    tmp_path: Path,
) -> None:
    journal = ra.SQLiteJournal(tmp_path / "j.db")
    async with ra.Transaction(journal=journal) as tx:
        with pytest.raises(TypeError):
            tx.on_rollback(release, object())
        with pytest.raises((TypeError, ValueError)):
            tx.on_rollback(lambda: None)


def test_sync_transaction_with_a_journal_runs_registered_compensations(tmp_path: Path) -> None:
    ran: list[str] = []

    @rs.compensation("accb.sync-undo")
    def undo(item: str) -> None:
        ran.append(item)

    journal = rs.SQLiteJournal(tmp_path / "sync.db")
    with pytest.raises(KeyError), rs.Transaction("s", journal=journal) as tx:
        tx.on_rollback(undo, "a")
        tx.on_rollback(undo, "b")
        raise KeyError("x")
    assert ran == ["b", "a"]
    rs.recover(journal)
    assert ran == ["b", "a"]


def test_faults_rejects_a_sync_function_and_non_exception_errors() -> None:
    def sync_dep() -> str:
        return "ok"

    with pytest.raises(TypeError, match="fn must be an async callable"):
        faults(sync_dep)
    with pytest.raises(TypeError, match="errors"):
        faults(_ok, error_rate=1.0, errors=(0.5,))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="errors"):
        faults(_ok, error_rate=1.0, errors=("boom",))  # type: ignore[arg-type]


async def test_faults_errors_accepts_instances_and_a_latency_range() -> None:
    wrapped = faults(_ok, error_rate=1.0, errors=(TimeoutError("scripted"),))
    with pytest.raises(TimeoutError, match="scripted"):
        await wrapped()
    ranged = faults(_ok, latency=(0.5, 1.5), latency_rate=1.0, seed=1)
    start = anyio.current_time()
    assert await ranged() == "ok"
    assert 0.5 <= anyio.current_time() - start <= 1.5


async def test_faults_hang_ends_with_the_deadline() -> None:
    wrapped = faults(_ok, hang_rate=1.0)
    with pytest.raises(ra.DeadlineExceeded):
        await ra.Timeout(2.0).call(wrapped)


async def test_set_testing_context_managers_nest_and_restore() -> None:
    with set_testing(True, attempts=3):
        with set_testing(True, attempts=1):
            one = Flaky(10)
            with pytest.raises(ConnectionError):
                await ra.Retry(attempts=5).call(one)
        three = Flaky(10)
        with pytest.raises(ConnectionError):
            await ra.Retry(attempts=5).call(three)
    assert (one.calls, three.calls) == (1, 3)


@pytest.mark.real_time
async def test_httpx_real_server_streamed_last_response_keeps_its_body() -> None:
    from resilient_async.integrations.httpx import AsyncResilientTransport

    from ..http_server import Reply, serving

    with serving() as server:
        url = server.script(Reply(503, b"first"), Reply(503, b"x" * 100_000 + b"end"))
        transport = AsyncResilientTransport(_retry(2))
        async with httpx.AsyncClient(transport=transport) as client:
            async with client.stream("GET", url) as response:
                body = await response.aread()
        assert response.status_code == 503
        assert body == b"x" * 100_000 + b"end"
        assert len(server.received(url)) == 2


@pytest.mark.real_time
def test_sync_httpx_real_server_gives_up_with_the_last_body() -> None:
    from resilient_async.integrations.httpx import ResilientTransport

    from ..http_server import Reply, serving

    with serving() as server:
        url = server.script(Reply(502, b"one"), Reply(504, b"two"), Reply(200, b"three"))
        policy = rs.Retry(attempts=2, backoff=ra.backoff.constant(0))
        with httpx.Client(transport=ResilientTransport(policy)) as client:
            response = client.get(url)
        assert (response.status_code, response.text) == (504, "two")


async def test_httpx_timeout_policy_expiry_propagates_as_deadline_exceeded() -> None:
    from resilient_async.integrations.httpx import AsyncResilientTransport

    inner = httpx.ASGITransport(app=_asgi_app)
    transport = AsyncResilientTransport(ra.Timeout(1.0), transport=inner)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        with pytest.raises(ra.DeadlineExceeded):
            await client.get("/slow")


async def test_transaction_under_an_expiring_deadline_compensates_then_raises() -> None:
    ran: list[str] = []

    async def slow_undo() -> None:
        await anyio.sleep(5)
        ran.append("undone")

    with pytest.raises(ra.DeadlineExceeded), ra.deadline(1.0):
        async with ra.Transaction() as tx:
            tx.on_rollback(slow_undo)
            await anyio.sleep(10)
    assert ran == ["undone"]


async def test_global_scoped_and_policy_hooks_all_receive_the_event() -> None:
    global_hook, scoped, own = Recorder(), Recorder(), Recorder()
    previous = list(get_hooks())
    set_hooks([*previous, global_hook])
    try:
        with hooks(scoped):
            retry = ra.Retry(attempts=2, backoff=ra.backoff.constant(0), hooks=[own])
            await retry.call(Flaky(1))
    finally:
        set_hooks(previous)
    for recorder in (global_hook, scoped, own):
        assert recorder.kinds().count("retry.scheduled") == 1


async def test_structlog_hook_with_a_given_logger() -> None:
    import structlog
    from structlog.testing import capture_logs

    from resilient_async.instrumentation import StructlogHook

    logger = structlog.get_logger("accb")
    with capture_logs() as logs, hooks(StructlogHook(logger)):
        await ra.Retry(attempts=2, backoff=ra.backoff.constant(0), name="g").call(Flaky(1))
    assert [e["policy"] for e in logs if e.get("kind") == "retry.scheduled"] == ["g"]


@pytest.mark.real_time
def test_sync_store_unreachable_degrades_once_and_keeps_working() -> None:
    recorder = Recorder()
    with _silent_server() as port, hooks(recorder):
        store = rs.RedisStore(f"redis://127.0.0.1:{port}/0", prefix=_prefix(), timeout=0.1)
        try:
            breaker = rs.CircuitBreaker("sync-stalled", consecutive_failures=1, store=store)
            for _ in range(3):
                assert breaker.call(lambda: "ok") == "ok"

            def fail() -> None:
                raise ConnectionError("down")

            with pytest.raises(ConnectionError):
                breaker.call(fail)
            with pytest.raises(ra.CircuitOpenError):
                breaker.call(lambda: "ok")
        finally:
            store.close()
    assert len(recorder.of("store.degraded")) == 1


def test_pytest_plugin_fixtures_with_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio

        import pytest

        import resilient_async as ra

        @pytest.mark.asyncio
        async def test_no_wait(ra_no_wait):
            calls = []

            async def flaky():
                calls.append(1)
                if len(calls) < 3:
                    raise ConnectionError("x")
                return "ok"

            loop = asyncio.get_running_loop()
            start = loop.time()
            retry = ra.Retry(attempts=3, backoff=ra.backoff.constant(60))
            assert await retry.call(flaky) == "ok"
            assert loop.time() - start < 30

        @pytest.mark.asyncio
        async def test_faults(ra_faults):
            async def dep():
                return "ok"

            wrapped = ra_faults(dep, error_rate=1.0, errors=(KeyError,))
            with pytest.raises(KeyError):
                await wrapped()
        """
    )
    result = pytester.runpytest_inprocess(
        "-p",
        "asyncio",
        "-o",
        "asyncio_mode=strict",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-p",
        "no:cacheprovider",
    )
    result.assert_outcomes(passed=2)


@pytest.mark.real_time
def test_sync_timeout_as_a_context_manager_reports_the_overrun() -> None:
    recorder = Recorder()
    with hooks(recorder), rs.Timeout(0.05):
        time.sleep(0.2)
    assert len(recorder.of("timeout.overrun")) == 1


@pytest.mark.real_time
def test_sync_retry_started_after_the_deadline_raises_deadline_exceeded_without_a_call() -> None:
    calls: list[int] = []
    with rs.deadline(0.01):
        time.sleep(0.1)
        with pytest.raises(ra.DeadlineExceeded):
            rs.Retry().call(calls.append, 1)
    assert calls == []


async def test_supervisor_max_restarts_zero_gives_up_at_the_first_crash() -> None:
    crashing = Child(crashes=10)
    with pytest.raises(ra.SupervisorGaveUp) as info:
        async with ra.Supervisor(max_restarts=0) as sup:
            sup.start_soon(crashing)
    assert crashing.starts == 1
    assert [str(e) for e in info.value.exceptions] == ["crash 1"]


async def test_deadline_middleware_zero_header_is_an_expired_deadline() -> None:
    async with _asgi_client() as client:
        response = await client.get("/slow", headers={"x-request-timeout-ms": "0"})
    assert response.status_code == 504
