"""Helpers for the thread tests of the sync twin: start, join with a bound, wait for a state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

JOIN = 60.0  # seconds: a generous bound so a broken build fails instead of hanging


def start(target: Callable[..., Any], *args: Any) -> threading.Thread:
    """Start a daemon thread running `target(*args)`."""
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def join(*threads: threading.Thread) -> None:
    """Join every thread; fail if one is still running after `JOIN` seconds."""
    for thread in threads:
        thread.join(JOIN)
        assert not thread.is_alive()


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run `target(i)` in `count` threads at once; fail with the errors any of them raised."""
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # report it to the test thread
            errors.append(exc)

    join(*[start(guarded, i) for i in range(count)])
    assert errors == []


def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll `predicate` until it holds; fail after `JOIN` seconds."""
    stop = time.monotonic() + JOIN
    while not predicate():
        assert time.monotonic() < stop, "condition never became true"
        time.sleep(0.001)
