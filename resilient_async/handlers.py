"""Unhandled errors: the asyncio loop exception handler, thread hooks, and `run_reported`.

An error nobody awaits (a task whose exception is never retrieved, a failing callback, a
transport error) reaches asyncio's loop exception handler. `install_exception_handler` puts a
handler there that reports each such error once: it classifies it, logs it with its error
context, and passes it to `on_error(exc, context)`, then chains the handler that was there
before. Async only.

trio has no loop exception handler: a trio task cannot fail unnoticed, its error travels to
the nursery that started it. What trio programs lack is the same reporting on the way, and
`run_reported` (for a function, on either backend) and `Supervisor(on_error=...)` (for the
children it restarts) give it: the same classification, context and `on_error` as the loop
handler.

Asyncio calls the handler with a context dict (`message`, `exception`, and `task`, `future`,
`handle` or `transport`); the reporting adds `error_class` (the `ErrorClass`) and
`error_context` (a dict of `context_of(exc)`) to a copy, which `on_error` and the chained
handler receive.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ._core.signals import is_catchable
from ._reporting import (
    ERROR_CLASS,
    OnError,
    Reporter,
    ThreadHooks,
    library_log,
    mark_reported,
)

__all__ = ["ExceptionHandler", "OnError", "install_exception_handler", "run_reported"]

T = TypeVar("T")

LoopHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


def install_exception_handler(
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    on_error: OnError | None = None,
    logger: logging.Logger | None = None,
    excepthooks: bool = False,
) -> ExceptionHandler:
    """Set the asyncio loop's exception handler: report each unhandled error once, then chain.

    For each error the loop reports (a task exception never retrieved, a callback or a
    transport that raised), the handler classifies it, attaches the context of the task or
    callback it came from (on Python 3.12+, where `Task.get_context()` exists; before, a task's
    context is out of reach and only what the exception captured itself is there), writes it
    out once and calls `on_error(exc, context)` inside that context. `ra.context_of(exc)`
    then gives the error context. Reports without an exception (a pending task destroyed) are
    passed on untouched.

    The handler that was installed before is called after, with the same enriched context.
    When there was none, the loop's default handler is: it writes the one log record (on the
    `asyncio` logger), which now lists `error_class` and `error_context`. With `logger=`,
    the record goes to that logger instead and the default handler, whose only job is that
    record, is not called. A previous custom handler is always chained; the error is then
    also logged on `logger` (default: the `resilient_async` logger). A failing `on_error` or
    chained handler is logged and never escapes into the loop.

    Args:
        loop: The loop to install on; the running loop when omitted.
        on_error: Called as `on_error(exc, context)` for each error (sync).
        logger: Where to log each error (see above).
        excepthooks: Also report errors that end a thread (`threading.excepthook`) or the
            program (`sys.excepthook`) the same way; the previous hooks are chained by the
            same rule (the interpreter's default ones print the traceback to stderr).

    Returns:
        The installed handler: `uninstall()` restores the previous handler (and hooks)
        exactly; it is also a context manager that uninstalls on exit.

    Raises:
        RuntimeError: No `loop` given and no asyncio loop runs in this thread (on trio there
            is no loop handler: use `run_reported` or `Supervisor(on_error=...)`).
        TypeError: `on_error` is not callable, `logger` is not a `logging.Logger`, or `loop`
            is not an asyncio event loop.

    Example:
        ```python
        async def main() -> None:
            with ra.install_exception_handler(on_error=sentry_capture):
                await serve()
        ```
    """
    reporter = Reporter(on_error, logger)
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "install_exception_handler needs loop= or a running asyncio event loop, and "
                "none runs in this thread (trio has no loop exception handler: use "
                "run_reported() or Supervisor(on_error=...) there)"
            ) from None
    elif not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop or None, got {loop!r}")
    return ExceptionHandler(loop, reporter, excepthooks=bool(excepthooks))


class ExceptionHandler:
    """An installed loop exception handler; built by `install_exception_handler`.

    It is the callable the loop calls (`loop.get_exception_handler()` returns it). Once
    uninstalled it only passes reports on to the previous handler, should a handler
    installed after it still chain to it.

    Attributes:
        loop: The loop it is installed on.
    """

    __slots__ = ("_active", "_hooks", "_previous", "_reporter", "loop")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, reporter: Reporter, *, excepthooks: bool
    ) -> None:
        self.loop = loop
        self._reporter = reporter
        self._previous: LoopHandler | None = loop.get_exception_handler()
        self._active = True
        self._hooks = ThreadHooks(reporter) if excepthooks else None
        loop.set_exception_handler(self)

    @property
    def installed(self) -> bool:
        """True until `uninstall()`."""
        return self._active

    def uninstall(self) -> None:
        """Restore the handler (and hooks) that were installed before; idempotent.

        If another handler was installed on the loop since, it is left in place (it chains
        to this one, which from now on only passes reports on).
        """
        if not self._active:
            return
        self._active = False
        if self.loop.get_exception_handler() is self:
            self.loop.set_exception_handler(self._previous)
        if self._hooks is not None:
            self._hooks.uninstall()

    def __enter__(self) -> ExceptionHandler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """Handle one report from the loop (asyncio calls this)."""
        try:
            self._handle(loop, context)
        except Exception:  # never let the handler itself take the loop down
            library_log.exception("resilient_async loop exception handler failed")

    def __repr__(self) -> str:
        state = "installed" if self._active else "uninstalled"
        return f"<ExceptionHandler {state} on {self.loop!r}>"

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not self._active or not isinstance(exc, BaseException):
            self._chain(loop, context, write_default=ERROR_CLASS not in context)
            return
        written = ERROR_CLASS in context  # an inner resilient_async handler wrote it out
        if not written and not mark_reported(exc):
            return  # this very exception was reported already
        reporter = self._reporter
        write_here = not written and (reporter.logger is not None or self._previous is not None)
        enriched = _run_in(
            _source_context(context), reporter.report, exc, context, write_here, True
        )
        self._chain(loop, enriched, write_default=not written and reporter.logger is None)

    def _chain(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any], *, write_default: bool
    ) -> None:
        previous = self._previous
        try:
            if previous is not None:
                previous(loop, context)
            elif write_default:
                loop.default_exception_handler(context)
        except Exception:
            self._reporter.log.exception(
                "the exception handler chained by resilient_async failed on: %s",
                context.get("message"),
            )


async def run_reported(
    fn: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    on_error: OnError | None = None,
    logger: logging.Logger | None = None,
    name: str | None = None,
) -> T:
    """Run `fn(*args)` with error reporting on, on asyncio or trio, and return its result.

    An error that escapes `fn` is reported as the loop handler reports one (classified,
    logged once on `logger` with its error context, passed to `on_error(exc, context)`), and
    then re-raised unchanged: reporting never handles an error. An exception group (from a
    task group or nursery inside `fn`) is reported leaf by leaf, each with its own context.
    Cancellation is never reported. On asyncio, the loop exception handler is also installed
    for the duration of the call, with the same `on_error` and `logger`, so tasks that fail
    unnoticed are reported too; on trio no task can.

    The `context` dict passed to `on_error` has `message`, `exception`, `function` (the
    name), `error_class` and `error_context`.

    Args:
        fn: The async function to run (typically the program's `main`).
        *args: Its positional arguments.
        on_error: Called as `on_error(exc, context)` for each error reported (sync).
        logger: Where to log; the `resilient_async` logger when omitted.
        name: The name used in reports; `fn`'s qualified name when omitted.

    Raises:
        TypeError: `on_error` is not callable or `logger` is not a `logging.Logger`.

    Example:
        ```python
        trio.run(functools.partial(ra.run_reported, main, on_error=sentry_capture))
        ```
    """
    reporter = Reporter(on_error, logger)
    label = name if name is not None else getattr(fn, "__qualname__", repr(fn))
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # trio: nothing escapes a nursery unnoticed
    handler = None if loop is None else ExceptionHandler(loop, reporter, excepthooks=False)
    try:
        return await fn(*args)
    except BaseExceptionGroup as group:
        for leaf in _leaves(group):
            reporter.report_once(
                leaf, {"message": f"unhandled error in {label}", "function": label}
            )
        raise
    except Exception as exc:
        reporter.report_once(exc, {"message": f"unhandled error in {label}", "function": label})
        raise
    finally:
        if handler is not None:
            handler.uninstall()


def _source_context(context: Mapping[str, Any]) -> contextvars.Context | None:
    """Return the contextvars context of the task or callback a loop report came from."""
    for key in ("task", "future", "handle"):
        source = context.get(key)
        if source is None:
            continue
        get_context = getattr(source, "get_context", None)  # Task and Handle on 3.12+
        found = get_context() if callable(get_context) else getattr(source, "_context", None)
        if isinstance(found, contextvars.Context):
            return found
    return None


def _run_in(
    ctx: contextvars.Context | None, fn: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """Call `fn(*args)` inside `ctx`, or here when there is none or it is entered already."""
    if ctx is None:
        return fn(*args)
    started = False

    def body() -> dict[str, Any]:
        nonlocal started
        started = True
        return fn(*args)

    try:
        return ctx.run(body)
    except RuntimeError:
        if started:
            raise
        return fn(*args)  # the context is the current one (reported from inside the task)


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[Exception]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        elif is_catchable(exc):
            yield exc
