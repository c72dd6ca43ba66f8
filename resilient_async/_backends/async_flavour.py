"""The async flavour's one-sided steps: what it accepts, refuses and calls differently.

Hand-written, re-exported by `_async/_backend.py`; the sync backend defines the same names
for the sync twin (a coroutine function refused, a coroutine returned refused, sqlite3
connections...). Most are no-ops here, so that generated code can call them where only the
sync twin has something to do, off the hot paths.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, Final

from .deadline_scope import DeadlineScope

__all__ = [
    "check_guarded_callable",
    "check_awaited",
    "misuse_of",
    "handler_answer",
    "check_handler",
    "check_result",
    "check_deadline",
    "report_overrun",
    "invoke",
    "check_compensation",
    "database_of",
]

# Code flags of functions whose body runs only when awaited or iterated asynchronously.
_ASYNC_CODE: Final = (
    inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
)


def check_guarded_callable(fn: Any, param: str = "fn") -> None:
    """Reject, at decoration time, a callable that the async policies cannot await.

    Raises:
        TypeError: `fn` is not callable, or is a plain (sync) function: use
            `resilient_async.sync` for those.
    """
    if not callable(fn):
        raise TypeError(f"{param} must be an async callable, got {fn!r}")
    if inspect.isfunction(fn) and not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"{param} must be an async function, got the sync function {fn.__qualname__}; "
            "use the same policy from resilient_async.sync for sync code"
        )


def check_awaited(exc: BaseException, fn: object, policy: str) -> None:
    """Raise `misuse_of(exc, fn, policy)` when there is one (see there).

    Raises:
        TypeError: `fn` is a sync callable.
    """
    misuse = misuse_of(exc, fn, policy)
    if misuse is not None:
        raise misuse


def misuse_of(exc: BaseException, fn: object, policy: str) -> TypeError | None:
    """Tell whether `exc` shows that `fn` is a sync callable given to an async policy.

    Called on a policy's error path with the error of `await fn(...)`, caught in the frame
    that made that call; returns the clear `TypeError` to raise instead (its `__cause__` set
    as it should be), or None. Two signs that `fn` is a sync callable, both read from the
    traceback (the success path pays nothing):

    - the interpreter's "can't be used in 'await' expression", raised by the `await` in the
      policy's own frame: `fn` returned something that cannot be awaited;
    - the frame right after the policy's is `fn`'s own code, and that code is not a
      coroutine's: `fn` is a plain function that raised when called. (A coroutine
      function's body only ever runs inside its coroutine; a lambda that merely builds an
      awaitable is left alone.)
    """
    tb = exc.__traceback__
    if tb is None:
        return None
    following = tb.tb_next
    if following is None:
        if type(exc) is TypeError and "'await' expression" in str(exc):
            error = TypeError(
                f"{policy}.call needs an async callable, but {_name_of(fn)} returned a value that "
                f"cannot be awaited: it is a sync callable; use resilient_async.sync.{policy} "
                "for sync code"
            )
            error.__suppress_context__ = True  # as `raise ... from None`
            return error
        return None
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if (
        code is not None
        and following.tb_frame.f_code is code
        and not code.co_flags & _ASYNC_CODE
        and code.co_name != "<lambda>"
    ):
        error = TypeError(
            f"{policy}.call needs an async callable, but {_name_of(fn)} is a sync function (it "
            f"raised {type(exc).__name__} when called); use resilient_async.sync.{policy} for sync "
            "code"
        )
        error.__cause__ = exc  # as `raise ... from exc`
        error.__suppress_context__ = True
        return error
    return None


def _name_of(fn: object) -> str:
    """`fn`'s name for a misuse message (read only when there is one: errors are common)."""
    return getattr(fn, "__qualname__", None) or repr(fn)


# --- fallback helpers --------------------------------------------------------------------


async def handler_answer(answer: object, handler: object) -> object:
    """What `handler` answered, awaited when it is awaitable (a plain function's is as is).

    The sync twin's takes the answer as it is, and refuses a coroutine (see `check_result`).
    """
    if inspect.isawaitable(answer):
        return await answer
    return answer


def check_handler(handler: object) -> None:
    """Nothing to check: an async fallback takes a coroutine function or a plain one."""


# --- retry helpers ---------------------------------------------------------------------


def check_result(result: object, fn: object, policy: str) -> None:
    """Nothing to check: an async policy's misuse shows in its error (see `check_awaited`).

    The sync twin refuses a coroutine as a sync callable's result; this one lets generated
    code call it where the sync twin needs it, off the hot paths.
    """


def check_deadline() -> None:
    """Nothing to check: an async deadline cancels what runs (the sync twin refuses late starts)."""


def report_overrun(scope: DeadlineScope, policy: str | None, hooks: tuple[Any, ...]) -> None:
    """Nothing to report: an async deadline cancels the block, it never overruns it.

    The sync twin names the policy (and its own hooks) that a scope's `timeout.overrun`
    event comes from.
    """


# --- transaction helpers: what each flavour's compensations and connections are ---------


async def invoke(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
    """Run a compensation, sync or async: await what it returns when that is awaitable."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        await result


def check_compensation(fn: Callable[..., Any]) -> None:
    """Nothing to refuse: async code runs sync and async compensations alike."""


def database_of(connection: Any) -> str:
    """Tell which database an async driver's connection talks to: "sqlite" or "postgres".

    Raises:
        TypeError: `connection` is not an aiosqlite or asyncpg connection.
    """
    aiosqlite = sys.modules.get("aiosqlite")
    if aiosqlite is not None and isinstance(connection, aiosqlite.Connection):
        return "sqlite"
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(
        connection, asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
    ):
        return "postgres"
    raise TypeError(
        f"enlist takes an aiosqlite or asyncpg connection, got {type(connection).__qualname__}; "
        "for sqlite3 connections use resilient_async.sync.Transaction"
    )
