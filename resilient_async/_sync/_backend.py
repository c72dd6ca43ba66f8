"""The sync drivers' backend: the real clock, real sleeps and thread locks.

Hand-written counterpart of `_async/_backend.py` with the same names, so that code generated
from the async drivers runs unchanged. A sync deadline cannot interrupt a blocking call: it
bounds retries and waits, refuses what starts after it, and never turns a block that
completed into an error (the overrun is reported as the event `timeout.overrun`).
"""

from __future__ import annotations

import contextvars
import inspect
import math
import threading
import time
from collections.abc import Callable
from types import CoroutineType, TracebackType
from typing import Any, Final, ParamSpec, TypeAlias, TypeVar

from .._core.deadlines import DEADLINE, Deadline, effective_deadline, visible
from ..errors import DeadlineExceeded
from ..instrumentation import emit_to

__all__ = [
    "Background",
    "CoroutineType",
    "DeadlineScope",
    "Event",
    "Fn",
    "IS_ASYNC",
    "Lock",
    "REDIS_CLIENT",
    "check_awaited",
    "check_compensation",
    "check_deadline",
    "check_guarded_callable",
    "check_handler",
    "check_result",
    "clock_offset",
    "current_time",
    "database_of",
    "handler_answer",
    "invoke",
    "locked",
    "locking",
    "loop_key",
    "misuse_of",
    "now",
    "remaining_until",
    "report_overrun",
    "require_asyncio",
    "run_in_thread",
    "run_to_completion",
    "sleep",
    "wait_event",
    "within",
    "yield_now",
]

IS_ASYNC: Final = False

P = ParamSpec("P")
T = TypeVar("T")

Fn: TypeAlias = Callable[P, T]
"""A function as the policies of this flavour call it: `Fn[P, T]` returns a `T`.

The async flavour's `Fn[P, T]` is awaited for a `T`; see `_async/_backend.py`.
"""

REDIS_CLIENT: Final = "redis"
"""The redis-py module whose client this flavour's RedisStore uses."""

current_time = time.monotonic


def clock_offset() -> float:
    """Return 0: sync code reads `time.monotonic`, the library's clock itself."""
    return 0.0


def sleep(seconds: float) -> None:
    """Sleep `seconds` (the thread blocks)."""
    time.sleep(seconds)


Lock = threading.Lock
Event = threading.Event


def run_to_completion(fn: Fn[[], T]) -> T:
    """Run `fn()`: nothing cancels sync code from outside, so it always runs to its end."""
    return fn()


def run_in_thread(fn: Callable[..., T], *args: object) -> T:
    """Run the blocking `fn(*args)` in this thread: sync code has no event loop to keep free."""
    return fn(*args)


class DeadlineScope:
    """Bound the enclosed block by `when` (on `time.monotonic`), as a plain `with`.

    Sets the effective deadline that retries and waits respect. It cannot interrupt a
    blocking call, and it never turns a block that completed into an error: a block that
    returns after its deadline keeps its result (an error leaving it passes unchanged), and
    the overrun is reported (event `timeout.overrun`, with `timeout` and `overrun`, the
    seconds past the deadline). What started after the deadline is refused instead: entering
    a scope once an enclosing deadline has passed raises `DeadlineExceeded` at once, as do
    the waits (`wait_event`), and a retry stops with its last error.

    Args:
        when: The absolute deadline on `time.monotonic`, or None for `timeout` seconds after
            entering.
        timeout: The relative length the user asked for (reported on the error), or None.
    """

    __slots__ = ("_hooks", "_node", "_policy", "_timeout", "_token", "_when", "overrun")

    def __init__(self, when: float | None, timeout: float | None = None) -> None:
        self._when = when
        self._timeout = timeout
        self._token: Any = None
        self._node: Deadline
        self._policy: str | None = None
        self._hooks: tuple[Any, ...] = ()
        self.overrun: float | None = None  # seconds past the deadline when the block returned

    def report_as(self, policy: str | None, hooks: tuple[Any, ...]) -> None:
        """Name the policy (and its own hooks) that the `timeout.overrun` event comes from."""
        self._policy = policy
        self._hooks = hooks

    @property
    def deadline(self) -> float | None:
        """The absolute deadline of this scope (None before entering a relative one)."""
        return self._when

    @property
    def expired(self) -> bool:
        """True once this scope's deadline has passed."""
        return self._when is not None and time.monotonic() >= self._when

    def __enter__(self) -> DeadlineScope:
        when = self._when
        outer = DEADLINE.get()
        ahead = visible(outer)
        if ahead is not None:
            now = time.monotonic()
            if now >= ahead.when:
                # Started after the deadline: refused, as a wait would be.
                raise DeadlineExceeded(self._timeout)
            if when is None:
                when = self._when = now + self._timeout  # type: ignore[operator]
        elif when is None:
            when = self._when = time.monotonic() + self._timeout  # type: ignore[operator]
        if ahead is None or when < ahead.when:
            # No owner: a sync scope cannot interrupt anything, so async code run inside
            # it (asyncio.run) enforces it itself.
            self._node = node = Deadline(when, None, outer)
            self._token = DEADLINE.set(node)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is None:
            return
        self._node.open = False
        DEADLINE.reset(self._token)
        self._token = None
        overrun = time.monotonic() - self._when  # type: ignore[operator]
        if overrun >= 0.0:
            # The work is done: its result (or its own error) stands; say it ran late.
            self.overrun = overrun
            emit_to(
                self._hooks, "timeout.overrun", self._policy, timeout=self._timeout, overrun=overrun
            )


def remaining_until(when: float) -> float:
    """Seconds from now until `when`, never negative (`math.inf` for no deadline)."""
    if when == math.inf:
        return math.inf
    return max(0.0, when - time.monotonic())


def check_guarded_callable(fn: Any, param: str = "fn") -> None:
    """Reject, at decoration time, a callable that the sync policies cannot run.

    Raises:
        TypeError: `fn` is not callable, or is an async function: use the async policies
            from `resilient_async` for those.
    """
    if not callable(fn):
        raise TypeError(f"{param} must be a callable, got {fn!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"{param} must be a sync callable, got the async function "
            f"{getattr(fn, '__qualname__', fn)!r}; use the policies from resilient_async"
        )


def wait_event(event: Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; return whether it is set.

    `seconds` may be `math.inf` (no limit of its own). The effective deadline ends the wait
    too, and its scope raises `DeadlineExceeded`: in async code that scope cancels the wait;
    in sync code the wait stops at the deadline and `DeadlineExceeded` is raised here.
    Cancellation propagates; the event may have been set just before it arrived.
    """
    limit = min(seconds, remaining_until(effective_deadline()))
    if event.wait(None if limit > threading.TIMEOUT_MAX else limit):
        return True
    if limit < seconds:
        raise DeadlineExceeded(None)
    return False


def yield_now() -> None:
    """Yield to other tasks once, delivering a pending cancellation: a cheap checkpoint.

    For loops that checkpoint on every turn (a retry with zero wait): on asyncio it is
    `asyncio.sleep(0)` and on trio `trio.lowlevel.checkpoint()`, called directly rather than
    through anyio's per-call backend lookup. In sync code there is nothing to yield to.
    """


def check_result(result: object, fn: object, policy: str) -> None:
    """Refuse a coroutine as a sync callable's result: `fn` was an async callable.

    The coroutine has not run (nothing of `fn`'s body happened); it is closed, so that no
    "never awaited" warning follows, and the call fails at once, before the policy records
    anything.

    Raises:
        TypeError: `result` is a coroutine.
    """
    if type(result) is CoroutineType:
        result.close()
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise TypeError(
            f"{policy}.call needs a sync callable, but {name} returned a coroutine: it is "
            f"an async callable; use resilient_async.{policy} (awaited) for async code"
        )


def misuse_of(exc: BaseException, fn: object, policy: str) -> TypeError | None:
    """None: a sync call's misuse (an async callable) shows in its result, see `check_result`."""
    return None


def check_deadline() -> None:
    """Refuse a guarded call that starts once the effective deadline has passed.

    A sync deadline cannot interrupt what runs, so it refuses what starts late instead (a
    call that completes late keeps its result, see `DeadlineScope`). No clock read without
    a deadline.

    Raises:
        DeadlineExceeded: The effective deadline has passed.
    """
    deadline = effective_deadline()
    if deadline != math.inf and current_time() >= deadline:
        raise DeadlineExceeded(None)


# --- for clients of I/O libraries (redis-py's sync client) -------------------------------


def loop_key() -> object:
    """None: sync clients belong to no event loop."""
    return None


def require_asyncio(what: str, instead: str) -> None:
    """Nothing to check: sync code has no event loop to be the wrong one."""


def within(seconds: float, value: T) -> T:
    """Return `value`: a sync client's own socket timeouts bound the call that made it."""
    return value


class Background:
    """Run `fn()` in a daemon thread beside the calls, until it returns.

    `fn` watches its own stop condition (a blocking call cannot be interrupted).
    """

    __slots__ = ("_thread",)

    def __init__(self, fn: Callable[[], None]) -> None:
        # In a copy of the caller's context, as an asyncio task would be (scoped hooks).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(fn,), name="resilient_async-background", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Let the thread see its stop condition on its own; never blocks the caller."""


# --- the lock difference between the twins ---------------------------------------------


def locked(lock: threading.Lock, fn: Callable[..., T], /, *args: Any) -> T:
    """Return `fn(*args)` called while holding `lock` (threads may share the state)."""
    with lock:
        return fn(*args)


def locking(lock: threading.Lock, fn: Callable[..., T]) -> Callable[..., T]:
    """Return a function that calls `fn` while holding `lock`: `locked` bound once."""

    def call_locked(*args: Any) -> T:
        with lock:
            return fn(*args)

    return call_locked


def now() -> float:
    """The library's clock: `current_time()` (sync code always has one)."""
    return current_time()


# --- fallback helpers --------------------------------------------------------------------


def handler_answer(answer: object, handler: object) -> object:
    """What `handler` answered, as it is: a coroutine is refused (see `check_result`).

    Raises:
        TypeError: `handler` is an async callable (it returned a coroutine).
    """
    check_result(answer, handler, "Fallback")
    return answer


def check_handler(handler: object) -> None:
    """Refuse a coroutine function as a sync fallback's handler (see `check_guarded_callable`).

    Raises:
        TypeError: `handler` is an async function (or not callable).
    """
    check_guarded_callable(handler, "handler")


# --- retry helpers ---


def check_awaited(exc: BaseException, fn: object, policy: str) -> None:
    """Nothing to check: a sync policy awaits nothing (`check_result` refuses async callables).

    The async twin turns the error of a sync callable given to an async policy into a clear
    `TypeError`; this one lets generated code call it on the same error path.
    """


def report_overrun(scope: DeadlineScope, policy: str | None, hooks: tuple[Any, ...]) -> None:
    """Name the policy (and its own hooks) that `scope`'s `timeout.overrun` event comes from."""
    scope.report_as(policy, hooks)


# --- transaction helpers: what each flavour's compensations and connections are ---------


def invoke(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
    """Run a compensation."""
    fn(*args, **kwargs)


def check_compensation(fn: Callable[..., Any]) -> None:
    """Refuse an async compensation: sync code has no loop to run it on.

    Raises:
        TypeError: `fn` is a coroutine function.
    """
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"the sync Transaction cannot run the async compensation "
            f"{fn!r}; use resilient_async.Transaction in async code"
        )


def database_of(connection: Any) -> str:
    """Tell which database a sync connection talks to: "sqlite" (sqlite3).

    Raises:
        TypeError: `connection` is not a sqlite3 connection.
    """
    import sqlite3  # only transactions that enlist a connection need it

    if isinstance(connection, sqlite3.Connection):
        return "sqlite"
    raise TypeError(
        "enlist takes a sqlite3 connection, got "
        f"{type(connection).__qualname__}; for aiosqlite and asyncpg use "
        "resilient_async.Transaction"
    )
