"""The loop exception handler, the thread hooks and `run_reported` (invariant 13).

The handler tests run each scenario on a loop of their own, on asyncio and on uvloop, so the
errors they provoke on purpose never reach the harness's own loop handler. The tests that
run on the harness's loops (both backends) check that it is restored.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import pytest
import uvloop

import resilient_async as ra
from resilient_async.handlers import ExceptionHandler

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

loops = pytest.mark.parametrize("loop_factory", list(LOOPS.values()), ids=list(LOOPS))


def run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, Any]
) -> Any:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


async def _never_retrieved(coro: Coroutine[Any, Any, Any]) -> None:
    """Run `coro` as a task whose exception nobody retrieves, then let it be collected."""
    task = asyncio.get_running_loop().create_task(coro)
    while not task.done():
        await asyncio.sleep(0)
    del task
    gc.collect()
    await asyncio.sleep(0)


async def _fails_in_context() -> None:
    with ra.error_context(order_id=42):
        raise ConnectionResetError("peer reset")


class Seen:
    """An on_error callback and a previous handler that keep what they receive."""

    def __init__(self) -> None:
        self.errors: list[tuple[BaseException, dict[str, Any], dict[str, object]]] = []
        self.chained: list[dict[str, Any]] = []

    def on_error(self, exc: BaseException, context: dict[str, Any]) -> None:
        self.errors.append((exc, context, dict(ra.current_context())))

    def previous(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.chained.append(context)


@loops
def test_an_unretrieved_error_is_reported_once_with_its_context(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(seen.previous)
        with ra.install_exception_handler(on_error=seen.on_error):
            await _never_retrieved(_fails_in_context())
            gc.collect()  # nothing is reported twice
            await asyncio.sleep(0)
        assert loop.get_exception_handler() == seen.previous

    with caplog.at_level(logging.ERROR):
        run(loop_factory, main())
    assert len(seen.errors) == 1
    exc, context, _ = seen.errors[0]
    assert isinstance(exc, ConnectionResetError)
    assert context["message"] == "Task exception was never retrieved"
    assert context["exception"] is exc
    assert context["error_class"] is ra.ErrorClass.TRANSIENT
    assert context["error_context"] == {"order_id": 42}
    assert ra.context_of(exc) == {"order_id": 42}
    # The previous handler is chained with the same enriched context.
    assert seen.chained == [context]
    records = [r for r in caplog.records if r.exc_info and r.exc_info[1] is exc]
    assert len(records) == 1  # logged once
    assert records[0].name == "resilient_async"
    assert "order_id=42" in records[0].getMessage()
    assert "TRANSIENT" in records[0].getMessage()


@loops
def test_callback_errors_are_reported_in_the_callbacks_context(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    seen = Seen()

    def callback() -> None:
        raise KeyError("missing")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(seen.previous)
        with ra.install_exception_handler(on_error=seen.on_error):
            with ra.error_context(request="r-7"):
                loop.call_soon(callback)
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    run(loop_factory, main())
    assert len(seen.errors) == 1
    exc, context, current = seen.errors[0]
    assert isinstance(exc, KeyError)
    assert context["error_class"] is ra.ErrorClass.PERMANENT
    assert "handle" in context
    if loop_factory is asyncio.new_event_loop or sys.version_info >= (3, 12):
        # The callback's own context (asyncio's Handle keeps it; uvloop's exposes it from
        # Python 3.12 on): on_error runs in it and the error carries its fields.
        assert current == {"request": "r-7"}
        assert ra.context_of(exc) == {"request": "r-7"}


@pytest.mark.skipif(sys.version_info < (3, 12), reason="Task.get_context() is new in 3.12")
@loops
def test_a_tasks_own_context_reaches_the_report(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    seen = Seen()

    async def fails() -> None:
        raise ConnectionError("no context block around the raise")

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(seen.previous)
        with ra.install_exception_handler(on_error=seen.on_error):
            with ra.error_context(job="nightly"):
                coro = fails()
                task = asyncio.get_running_loop().create_task(coro)
            while not task.done():
                await asyncio.sleep(0)
            del task
            gc.collect()

    run(loop_factory, main())
    [(exc, _, current)] = seen.errors
    assert current == {"job": "nightly"}
    assert ra.context_of(exc) == {"job": "nightly"}


@loops
def test_a_raising_on_error_or_previous_handler_never_kills_the_loop(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], caplog: pytest.LogCaptureFixture
) -> None:
    def on_error(exc: BaseException, context: dict[str, Any]) -> None:
        raise RuntimeError("on_error is broken")

    def previous(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        raise RuntimeError("the previous handler is broken")

    def callback() -> None:
        raise ValueError("bad callback")

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(previous)
        with ra.install_exception_handler(on_error=on_error):
            for _ in range(3):
                loop.call_soon(callback)
            await _never_retrieved(_fails_in_context())
            await asyncio.sleep(0.001)
            return "the loop still runs"

    with caplog.at_level(logging.ERROR):
        assert run(loop_factory, main()) == "the loop still runs"
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("on_error <function") for m in messages) == 4
    assert sum(m.startswith("the exception handler chained") for m in messages) == 4


@loops
def test_uninstall_restores_the_previous_handler_exactly(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert loop.get_exception_handler() is None
        handle = ra.install_exception_handler()
        assert isinstance(handle, ExceptionHandler)
        assert loop.get_exception_handler() is handle
        assert handle.installed
        handle.uninstall()
        assert loop.get_exception_handler() is None
        assert not handle.installed
        handle.uninstall()  # idempotent
        assert loop.get_exception_handler() is None

        seen = Seen()
        loop.set_exception_handler(seen.previous)
        with ra.install_exception_handler() as outer:
            with ra.install_exception_handler() as inner:
                assert loop.get_exception_handler() is inner
            assert loop.get_exception_handler() is outer
        assert loop.get_exception_handler() == seen.previous

        # Out of order: the later handler stays, and the earlier one just passes reports on.
        first = ra.install_exception_handler()
        second = ra.install_exception_handler()
        first.uninstall()
        assert loop.get_exception_handler() is second
        second.uninstall()
        assert loop.get_exception_handler() is first  # what `second` found, restored exactly
        loop.set_exception_handler(seen.previous)

    run(loop_factory, main())


@loops
def test_with_no_previous_handler_the_default_one_writes_the_only_record(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        with ra.install_exception_handler():
            await _never_retrieved(_fails_in_context())

    with caplog.at_level(logging.ERROR):
        run(loop_factory, main())
    records = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert len(records) == 1
    assert records[0].name == "asyncio"
    assert "error_context: {'order_id': 42}" in records[0].getMessage()
    assert "error_class" in records[0].getMessage()


@loops
def test_with_a_logger_the_record_goes_there_once(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("tests.handlers.custom")

    async def main() -> None:
        with ra.install_exception_handler(logger=logger):
            await _never_retrieved(_fails_in_context())

    with caplog.at_level(logging.ERROR):
        run(loop_factory, main())
    records = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert [r.name for r in records] == ["tests.handlers.custom"]
    assert records[0].error_context == {"order_id": 42}  # type: ignore[attr-defined]


@loops
def test_nested_handlers_write_once_and_call_every_on_error(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], caplog: pytest.LogCaptureFixture
) -> None:
    outer_seen, inner_seen = Seen(), Seen()

    async def main() -> None:
        with (
            ra.install_exception_handler(on_error=outer_seen.on_error),
            ra.install_exception_handler(on_error=inner_seen.on_error),
        ):
            await _never_retrieved(_fails_in_context())

    with caplog.at_level(logging.ERROR):
        run(loop_factory, main())
    assert len(outer_seen.errors) == len(inner_seen.errors) == 1
    assert outer_seen.errors[0][0] is inner_seen.errors[0][0]
    assert len([r for r in caplog.records if "never retrieved" in r.getMessage()]) == 1


def test_no_running_loop_and_no_loop_argument_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="loop="):
        ra.install_exception_handler()
    loop = asyncio.new_event_loop()
    try:
        with ra.install_exception_handler(loop=loop) as handle:
            assert loop.get_exception_handler() is handle
        assert loop.get_exception_handler() is None
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on_error": "print"}, "on_error must be a callable"),
        ({"logger": "resilient_async"}, "logger must be a logging.Logger"),
        ({"loop": object()}, "loop must be an asyncio event loop"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        ra.install_exception_handler(**kwargs)


@pytest.mark.anyio
async def test_on_the_test_loops_the_harness_handler_is_restored() -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # trio: no loop exception handler, and the error says what to use instead.
        with pytest.raises(RuntimeError, match="run_reported"):
            ra.install_exception_handler()
        return
    harness = loop.get_exception_handler()
    assert harness is not None
    with ra.install_exception_handler() as handle:
        assert loop.get_exception_handler() is handle
    assert loop.get_exception_handler() is harness


def test_a_classifier_that_raises_still_reports(caplog: pytest.LogCaptureFixture) -> None:
    seen = Seen()
    classifier = ra.Classifier()

    def broken(exc: BaseException) -> bool:
        raise RuntimeError("rule is broken")

    classifier.register(broken, ra.ErrorClass.TRANSIENT)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(seen.previous)
        with ra.use_classifier(classifier), ra.install_exception_handler(on_error=seen.on_error):
            await _never_retrieved(_fails_in_context())

    with caplog.at_level(logging.ERROR):
        run(asyncio.new_event_loop, main())
    assert seen.errors[0][1]["error_class"] is ra.ErrorClass.UNKNOWN
    assert any("classifying" in r.getMessage() for r in caplog.records)


# --- thread and interpreter hooks ------------------------------------------------------------


def test_the_excepthook_bridge_reports_thread_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    thread_previous: list[threading.ExceptHookArgs] = []
    sys_previous: list[BaseException] = []
    # Stand-ins for whatever hooks were installed before (pytest has its own).
    monkeypatch.setattr(threading, "excepthook", thread_previous.append)
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: sys_previous.append(e))
    seen = Seen()

    def work() -> None:
        with ra.error_context(thread_job="resize"):
            raise OSError("disk full")

    async def main() -> None:
        with ra.install_exception_handler(on_error=seen.on_error, excepthooks=True):
            thread = threading.Thread(target=work, name="resizer")
            thread.start()
            thread.join()
            error = ValueError("escaped to the top")
            sys.excepthook(ValueError, error, None)
        assert threading.excepthook == thread_previous.append
        assert sys.excepthook is not None

    run(asyncio.new_event_loop, main())
    assert [type(e) for e, _, _ in seen.errors] == [OSError, ValueError]
    thread_exc, thread_context, _ = seen.errors[0]
    assert thread_context["message"] == "exception in thread resizer"
    assert thread_context["error_context"] == {"thread_job": "resize"}
    assert [args.exc_value for args in thread_previous] == [thread_exc]  # chained
    assert sys_previous == [seen.errors[1][0]]


def test_without_a_logger_the_default_thread_hook_prints_and_a_logger_replaces_it(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)
    logger = logging.getLogger("tests.handlers.threads")

    def work() -> None:
        raise OSError("disk full")

    async def main() -> None:
        for kwargs in ({}, {"logger": logger}):
            with ra.install_exception_handler(excepthooks=True, **kwargs):  # type: ignore[arg-type]
                thread = threading.Thread(target=work)
                thread.start()
                thread.join()
            assert threading.excepthook is threading.__excepthook__

    with caplog.at_level(logging.ERROR):
        run(asyncio.new_event_loop, main())
    assert capsys.readouterr().err.count("OSError: disk full") == 1
    assert [r.name for r in caplog.records] == ["tests.handlers.threads"]


# --- run_reported, on both backends ----------------------------------------------------------


@pytest.mark.anyio
async def test_run_reported_reports_an_escaping_error_once_and_reraises_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen()
    error = ConnectionRefusedError("db down")

    async def main(dsn: str) -> None:
        with ra.error_context(dsn=dsn):
            raise error

    with caplog.at_level(logging.ERROR), pytest.raises(ConnectionRefusedError) as caught:
        await ra.run_reported(main, "db://x", on_error=seen.on_error, name="main")
    assert caught.value is error
    [(exc, context, _)] = seen.errors
    assert exc is error
    assert context["function"] == "main"
    assert context["error_context"] == {"dsn": "db://x"}
    assert context["error_class"] is ra.ErrorClass.TRANSIENT
    assert len([r for r in caplog.records if r.exc_info and r.exc_info[1] is error]) == 1


@pytest.mark.anyio
async def test_run_reported_reports_each_leaf_of_a_group_and_returns_results() -> None:
    seen = Seen()

    def failure(n: int) -> ConnectionError:
        try:
            with ra.error_context(worker=n):
                raise ConnectionError(n)
        except ConnectionError as exc:
            return exc

    async def main() -> None:
        inner = ExceptionGroup("inner", [failure(2), failure(3)])
        raise ExceptionGroup("workers failed", [failure(1), inner])

    async def fine() -> int:
        return 7

    assert await ra.run_reported(fine, on_error=seen.on_error) == 7
    with pytest.raises(ExceptionGroup):
        await ra.run_reported(main, on_error=seen.on_error)
    assert [c["error_context"] for _, c, _ in seen.errors] == [{"worker": n} for n in (1, 2, 3)]


@pytest.mark.anyio
async def test_run_reported_never_reports_cancellation() -> None:
    seen = Seen()
    with anyio.move_on_after(1) as scope:
        await ra.run_reported(anyio.sleep_forever, on_error=seen.on_error)
    assert scope.cancelled_caught
    assert seen.errors == []


@pytest.mark.anyio
async def test_run_reported_installs_the_loop_handler_only_for_the_call() -> None:
    inside: list[object] = []

    async def main() -> None:
        try:
            inside.append(asyncio.get_running_loop().get_exception_handler())
        except RuntimeError:
            inside.append("trio")

    await ra.run_reported(main)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        assert inside == ["trio"]
        return
    assert isinstance(inside[0], ExceptionHandler)
    assert loop.get_exception_handler() is not inside[0]
