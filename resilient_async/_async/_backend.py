"""The only module of the async drivers that knows which event loop runs.

Hand-written (its sync counterpart `_sync/_backend.py` is too); every other module in
`_async/` reaches the event loop only through the names here, so that `tools/unasync.py` can
turn them into sync code that calls the sync backend instead.

On asyncio the hot path uses the loop's own mechanisms (`loop.time`, `loop.call_at`,
`Task.cancel`/`uncancel`), which cost a fraction of anyio's cancel scopes; on trio it uses
trio's. A `DeadlineScope` is made as the running library's own class, from the hand-written
modules of `resilient_async/_backends/` (one per library, never generated). The semantics are
the same on both, and both are tested.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import types
from asyncio import events as _events
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Final, ParamSpec, TypeAlias, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._backends.async_flavour import (
    check_awaited as check_awaited,
)
from .._backends.async_flavour import (
    check_compensation as check_compensation,
)
from .._backends.async_flavour import (
    check_deadline as check_deadline,
)
from .._backends.async_flavour import (
    check_guarded_callable as check_guarded_callable,
)
from .._backends.async_flavour import (
    check_handler as check_handler,
)
from .._backends.async_flavour import (
    check_result as check_result,
)
from .._backends.async_flavour import (
    database_of as database_of,
)
from .._backends.async_flavour import (
    handler_answer as handler_answer,
)
from .._backends.async_flavour import (
    invoke as invoke,
)
from .._backends.async_flavour import (
    misuse_of as misuse_of,
)
from .._backends.async_flavour import (
    report_overrun as report_overrun,
)
from .._backends.deadline_scope import DeadlineScope
from .._backends.trio_clock import offset_of
from ..errors import DeadlineExceeded

__all__ = [
    "IS_ASYNC",
    "REDIS_CLIENT",
    "Background",
    "DeadlineScope",
    "Event",
    "Fn",
    "Lock",
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

IS_ASYNC: Final = True

P = ParamSpec("P")
T = TypeVar("T")

Fn: TypeAlias = Callable[P, Awaitable[T]]
"""A function as the policies of this flavour call it: `Fn[P, T]` is awaited for a `T`.

The drivers write `fn: _backend.Fn[P, T]`; in the sync twin the same words mean a plain
`Callable[P, T]`, so that both keep the ParamSpec checking of `mypy --strict`.
"""

REDIS_CLIENT: Final = "redis.asyncio"
"""The redis-py module whose client this flavour's RedisStore uses."""

_get_running_loop = _events._get_running_loop
_CancelledError = asyncio.CancelledError


_trio_module: Any = None


def _trio() -> Any:
    """Return the trio module, which is imported by now if trio is what runs."""
    global _trio_module
    if _trio_module is None:
        _trio_module = sys.modules.get("trio")
        if _trio_module is None:
            raise RuntimeError("this needs a running asyncio or trio event loop")
    return _trio_module


def current_time() -> float:
    """Return the library's clock: the running loop's, which virtual-time tests control.

    On trio, the random offset of trio's real clock is taken out, so that in real time the
    library's clock is `time.monotonic()` on every backend and in sync code: a policy can be
    used from asyncio, trio and threads in turn and never mixes times from two clocks.

    Raises:
        RuntimeError: No asyncio or trio event loop is running in this thread.
    """
    loop = _get_running_loop()
    if loop is not None:
        return loop.time()
    try:
        clock = (_trio_clock or _find_trio_clock())()
    except RuntimeError:
        raise RuntimeError("this needs a running asyncio or trio event loop") from None
    return float(clock.current_time()) - offset_of(clock)


_trio_clock: Callable[[], Any] | None = None  # trio.lowlevel.current_clock, once trio is seen


def _find_trio_clock() -> Callable[[], Any]:
    global _trio_clock
    _trio_clock = _trio().lowlevel.current_clock
    return _trio_clock


def clock_offset() -> float:
    """Return the loop's clock minus the library's (see `current_time`); 0 without a loop.

    Times a user passes or reads (`deadline_at`, `current_deadline`) are on the loop's clock,
    `anyio.current_time()`; this converts them.
    """
    if _get_running_loop() is not None:
        return 0.0
    trio = sys.modules.get("trio")
    if trio is None:
        return 0.0
    try:
        return offset_of(trio.lowlevel.current_clock())
    except RuntimeError:
        return 0.0


async def sleep(seconds: float) -> None:
    """Sleep `seconds` on the running loop's clock (a checkpoint even for 0)."""
    await anyio.sleep(seconds)


class Lock:
    """A no-op lock: async drivers run state changes without an await, so nothing races.

    The sync backend's `Lock` is a real `threading.Lock`; generated code uses either the same
    way (`with self._lock:`).
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


class Event:
    """An event that one task sets and another waits for, even across threads.

    A policy shared by two threads, each with its own event loop, hands a freed slot or
    token from one thread to a waiter in the other: set from another thread, the wake-up is
    passed to the waiter's own loop thread-safely (with asyncio's event alone the waiter
    would never wake, and debug mode would raise in the setter).
    """

    __slots__ = ("_event", "_loop", "_thread", "_token")

    def __init__(self) -> None:
        loop = _get_running_loop()
        self._loop = loop
        self._thread = threading.get_ident()
        self._event: Any
        self._token: Any
        if loop is not None:
            self._event = asyncio.Event()
            self._token = None
        else:
            trio = _trio()
            self._event = trio.Event()
            self._token = trio.lowlevel.current_trio_token()

    def set(self) -> None:
        """Set the event and wake its waiters, from any thread."""
        if threading.get_ident() == self._thread:
            self._event.set()
            return
        try:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._event.set)
            else:
                self._token.run_sync_soon(self._event.set)
        except RuntimeError:
            pass  # the waiter's loop has closed: nobody is left to wake

    def is_set(self) -> bool:
        """Tell whether the event is set (a set from another thread shows once delivered)."""
        return bool(self._event.is_set())

    async def wait(self) -> None:
        """Wait until the event is set."""
        await self._event.wait()


async def run_to_completion(fn: Fn[[], T]) -> T:
    """Run `await fn()` to its end even if this task is cancelled meanwhile.

    For cleanup that must finish (a rollback, compensations). A cancellation that arrives
    meanwhile is not lost: it is raised once `fn` is done (its result is then dropped, and
    an error it raised becomes the cancellation's `__context__`). On trio the call runs in a
    shielded scope. On asyncio it also runs in a shielded scope, against anyio's cancel
    scopes, and in a task of its own (a copy of this task's context) that this task awaits
    through `asyncio.shield`: a native `Task.cancel()` (from `asyncio.timeout`, a `TaskGroup`,
    a deadline) cannot interrupt it either.
    """
    loop = _get_running_loop()
    if loop is None:
        with anyio.CancelScope(shield=True):
            result = await fn()
        await anyio.lowlevel.checkpoint_if_cancelled()
        return result
    inner = loop.create_task(_awaited(fn))
    cancelled: BaseException | None = None
    with anyio.CancelScope(shield=True):
        while not inner.done():
            try:
                await asyncio.wait((inner,))  # a cancelled wait leaves `inner` running
            except _CancelledError as exc:
                cancelled = exc  # held until the call is done
    if cancelled is not None:
        if not inner.cancelled() and inner.exception() is not None:
            cancelled.__context__ = inner.exception()
        raise cancelled
    await anyio.lowlevel.checkpoint_if_cancelled()
    return inner.result()


async def _awaited(fn: Fn[[], T]) -> T:
    return await fn()


async def run_in_thread(fn: Callable[..., T], *args: object) -> T:
    """Run the blocking `fn(*args)` in a worker thread, off the event loop, and return its result.

    The thread cannot be interrupted: a cancellation waits for it to finish.
    """
    return await anyio.to_thread.run_sync(fn, *args)


def remaining_until(when: float) -> float:
    """Seconds from now until `when`, never negative (`math.inf` for no deadline)."""
    if when == math.inf:
        return math.inf
    return max(0.0, when - current_time())


async def wait_event(event: Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass; return whether it is set.

    `seconds` may be `math.inf` (no limit of its own). The effective deadline ends the wait
    too, and its scope raises `DeadlineExceeded`: in async code that scope cancels the wait;
    in sync code the wait stops at the deadline and `DeadlineExceeded` is raised here.
    Cancellation propagates; the event may have been set just before it arrived.
    """
    if seconds == math.inf:
        await event.wait()
        return True
    try:
        with DeadlineScope(current_time() + seconds, seconds):
            await event.wait()
    except DeadlineExceeded:
        pass  # this wait's own limit: an earlier deadline arms nothing here, and cancels
    return event.is_set()


def yield_now() -> Awaitable[None]:
    """Yield to other tasks once, delivering a pending cancellation: a cheap checkpoint.

    For loops that checkpoint on every turn (a retry with zero wait). Await the result: on
    asyncio it is the bare yield that `asyncio.sleep(0)` makes (the task runs again on the
    loop's next turn, or receives its pending cancellation), without the two coroutines
    around it; on trio it is `trio.lowlevel.checkpoint()`, called directly rather than
    through anyio's per-call backend lookup. In sync code there is nothing to yield to.
    """
    if _get_running_loop() is not None:
        return _bare_yield()
    return _trio().lowlevel.checkpoint()  # type: ignore[no-any-return]


@types.coroutine
def _bare_yield() -> Generator[None, None, None]:
    """One turn of the asyncio loop: what `asyncio.sleep(0)` awaits."""
    yield


# --- for clients of asyncio-only libraries (redis-py's asyncio client) -------------------


def loop_key() -> object:
    """The running asyncio loop, to tell when a client's connections belong to another."""
    return _get_running_loop()


def require_asyncio(what: str, instead: str) -> None:
    """Refuse to go on outside asyncio (for asyncio-only drivers), naming what needs it.

    Args:
        what: The operation that needs asyncio.
        instead: What a trio user can do instead, or why there is no way.

    Raises:
        RuntimeError: The running loop is not asyncio's (trio, or none).
    """
    if _get_running_loop() is None:
        raise RuntimeError(f"{what} runs only on asyncio, not on trio: {instead}")


async def within(seconds: float, awaitable: Awaitable[T]) -> T:
    """Await `awaitable` for at most `seconds` (asyncio only); raise `TimeoutError` after."""
    async with asyncio.timeout(seconds):
        return await awaitable


class Background:
    """A task that runs `fn()` beside the calls until it returns or is stopped (asyncio).

    The sync twin runs it in a daemon thread.
    """

    __slots__ = ("_task",)

    def __init__(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._task = asyncio.get_running_loop().create_task(fn())

    async def stop(self) -> None:
        """Cancel the task and wait for it to end (if it runs on this loop)."""
        task = self._task
        if task.done():
            return
        task.cancel()
        if task.get_loop() is _get_running_loop():
            await asyncio.wait({task})


# --- the lock difference between the twins ---------------------------------------------


def locked(lock: Lock, fn: Callable[..., T], /, *args: Any) -> T:
    """Return `fn(*args)`: a state change that needs `lock` in sync code only.

    Async drivers change shared state without an await in between, so no other task can
    interleave and the lock is not taken (entering even a no-op lock costs more than most
    state changes). The sync twin's `locked` holds the thread lock around the call.
    """
    return fn(*args)


def locking(lock: Lock, fn: Callable[..., T]) -> Callable[..., T]:
    """Return `fn` itself: `locked` bound once, for a state change on a hot path.

    The sync twin's `locking` returns a function that holds `lock` around each call of `fn`.
    """
    return fn


def now() -> float:
    """The library's clock (`current_time`), or the monotonic one where no loop runs.

    For what may run outside the loop: a state read from another thread or after the loop
    ended, a coroutine closed outside its loop. `time.monotonic()` is the library's clock on
    asyncio's default loop and on trio's real clock, so the answer is exact there.
    """
    try:
        return current_time()
    except RuntimeError:
        from time import monotonic  # the rare case: no loop runs in this thread

        return monotonic()
