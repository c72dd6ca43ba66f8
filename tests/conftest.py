"""The test harness: both backends, virtual time, server markers, hygiene after each test."""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio.testing
from hypothesis import HealthCheck, settings

from resilient_async.testing import virtual_time_loop

# Hypothesis times its own data generation and fails a test whose first examples are slow to
# draw (the too_slow health check): on a loaded machine that is noise, not a finding, and it
# made runs flaky. Per-example deadlines are off for the same reason; seeds are still printed.
settings.register_profile(
    "resilient_async", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("resilient_async")

# Every loop error (never-retrieved exceptions, failing callbacks) seen during a test.
_loop_errors: list[dict[str, Any]] = []


def _record_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    _loop_errors.append(context)


def _checked_loop(factory: Callable[[], asyncio.AbstractEventLoop]) -> asyncio.AbstractEventLoop:
    loop = factory()
    loop.set_exception_handler(_record_loop_error)
    return loop


def _real_time_loop() -> asyncio.AbstractEventLoop:
    return _checked_loop(asyncio.new_event_loop)


def _virtual_loop() -> asyncio.AbstractEventLoop:
    return _checked_loop(virtual_time_loop)


def _needs_real_time(request: pytest.FixtureRequest) -> bool:
    return any(request.node.get_closest_marker(m) for m in ("real_time", "redis", "postgres"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """Run each async test on asyncio (debug on) and on trio, in virtual time by default.

    Tests marked `real_time` (and the server tests) get the real clocks.
    """
    real = _needs_real_time(request)
    if request.param == "asyncio":
        factory = _real_time_loop if real else _virtual_loop
        return ("asyncio", {"debug": True, "loop_factory": factory})
    if real:
        return ("trio", {})
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> None:
    """Wrap each async test so it checks, inside its loop, that it left no task behind."""
    test = pyfuncitem.obj
    if not asyncio.iscoroutinefunction(test) or getattr(test, "_hygiene_wrapped", False):
        return

    @functools.wraps(test)
    async def checked(*args: Any, **kwargs: Any) -> None:
        await test(*args, **kwargs)
        _assert_no_leftover_asyncio_tasks()

    checked._hygiene_wrapped = True  # type: ignore[attr-defined]
    pyfuncitem.obj = checked


def _assert_no_leftover_asyncio_tasks() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # trio: nurseries make leftover tasks impossible
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0, f"cancelling() left at {current.cancelling()}"
    leftover = [
        t
        for t in asyncio.all_tasks()
        if t is not current and not t.done() and not _is_anyio_runner_task(t)
    ]
    assert not leftover, f"test left tasks running: {leftover}"


def _is_anyio_runner_task(task: asyncio.Task[Any]) -> bool:
    return task.get_coro().__qualname__.startswith("TestRunner.")  # type: ignore[union-attr]


@pytest.fixture(autouse=True)
def _loop_hygiene() -> Iterator[None]:
    """Fail a test that let an exception go unretrieved or a loop callback fail."""
    _loop_errors.clear()
    yield
    gc.collect()
    errors = list(_loop_errors)
    _loop_errors.clear()
    assert not errors, f"the event loop reported errors: {errors}"


def _server_reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@functools.cache
def _reachable(port: int) -> bool:
    return _server_reachable(port)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip server tests without the server; fail them instead when CI is set."""
    for marker, port in (("redis", 6379), ("postgres", 5432)):
        if item.get_closest_marker(marker) and not _reachable(port):
            reason = f"{marker} is not reachable on 127.0.0.1:{port}"
            if os.environ.get("CI"):
                pytest.fail(f"{reason}, and CI is set: server tests may not be skipped")
            pytest.skip(reason)
