"""Reporting an unhandled error once: classify it, log it with its context, call `on_error`.

Shared by the loop exception handler, the thread hooks, `run_reported` and the `Supervisor`
(see `handlers.py` for what reaches each of them).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final

from ._core.signals import is_catchable
from .classify import ErrorClass, classify
from .context import attach_context, context_of

__all__ = ["ERROR_CLASS", "OnError", "Reporter", "ThreadHooks", "library_log", "mark_reported"]

OnError = Callable[[BaseException, dict[str, Any]], object]
"""The `on_error(exc, context)` callback: sync; what it returns is ignored."""


library_log = logging.getLogger("resilient_async")
"""The library's own logger: where errors go without `logger=`, and reporting failures."""

# Set on an exception once it has been reported, so that a second report of the same error
# (the same instance reaching the loop twice, or re-raised from a reported call) is dropped.
_REPORTED: Final = "_resilient_async_reported"

# The key the reporting adds; its presence tells a chained resilient_async handler that the
# error was already written out.
ERROR_CLASS: Final = "error_class"


class Reporter:
    """Classify, write out once, pass to `on_error`: shared by every reporting path."""

    __slots__ = ("logger", "on_error")

    def __init__(self, on_error: OnError | None, logger: logging.Logger | None) -> None:
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be a callable (exc, context) or None, got {on_error!r}")
        if logger is not None and not isinstance(logger, logging.Logger):
            raise TypeError(f"logger must be a logging.Logger or None, got {logger!r}")
        self.on_error = on_error
        self.logger = logger

    @property
    def log(self) -> logging.Logger:
        return self.logger if self.logger is not None else library_log

    def report_once(
        self, exc: Exception, context: Mapping[str, Any], *, again: bool = False
    ) -> dict[str, Any] | None:
        """Report `exc` unless it was reported already (or `again`); write it to `log`.

        `again` reports an exception instance that was reported before: a supervised child
        that raises the same instance twice crashed twice.
        """
        if not mark_reported(exc) and not again:
            return None
        return self.report(exc, {**context, "exception": exc}, True, False)

    def report(
        self,
        exc: BaseException,
        context: Mapping[str, Any],
        write: bool,
        merge_current: bool,
    ) -> dict[str, Any]:
        """Report `exc` (already marked) and return the enriched context; never raises.

        `merge_current` adds the current error context to what `exc` captured (run inside the
        context of the task or callback the error came from).
        """
        if merge_current:
            attach_context(exc, {})
        try:
            error_class = classify(exc)
        except Exception:  # a user classifier rule that raises must not hide the error
            self.log.exception("classifying %r failed", exc)
            error_class = ErrorClass.UNKNOWN
        fields = dict(context_of(exc) or {})
        enriched = {**context, ERROR_CLASS: error_class, "error_context": fields}
        if write:
            self._write(exc, enriched)
        on_error = self.on_error
        if on_error is not None:
            try:
                on_error(exc, enriched)
            except Exception:
                self.log.exception(
                    "on_error %r failed while reporting %s", on_error, type(exc).__name__
                )
        return enriched

    def _write(self, exc: BaseException, context: Mapping[str, Any]) -> None:
        fields = context["error_context"]
        rendered = ", ".join(f"{key}={value!r}" for key, value in fields.items())
        try:
            self.log.error(
                "%s [%s]%s",
                context.get("message") or "unhandled error",
                context[ERROR_CLASS].name,
                f" context: {rendered}" if rendered else "",
                exc_info=(type(exc), exc, exc.__traceback__),
                extra={"error_class": context[ERROR_CLASS], "error_context": fields},
            )
        except Exception:  # a broken value repr or log handler: report that, keep going
            library_log.exception("logging an unhandled %s failed", type(exc).__name__)


class ThreadHooks:
    """`sys.excepthook` and `threading.excepthook`, reporting then chaining the previous ones."""

    __slots__ = ("_active", "_previous_sys", "_previous_thread", "_reporter", "_sys", "_thread")

    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter
        self._active = True
        self._previous_sys = sys.excepthook
        self._previous_thread = threading.excepthook
        # Bound once, so that "is this hook still ours" is an identity check.
        self._sys = self._sys_hook
        self._thread = self._thread_hook
        sys.excepthook = self._sys
        threading.excepthook = self._thread

    def uninstall(self) -> None:
        self._active = False
        if sys.excepthook is self._sys:
            sys.excepthook = self._previous_sys
        if threading.excepthook is self._thread:
            threading.excepthook = self._previous_thread

    def _sys_hook(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        previous = self._previous_sys
        if self._report(exc, {"message": "uncaught exception"}, previous is sys.__excepthook__):
            return
        previous(exc_type, exc, tb)

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        previous = self._previous_thread
        thread = args.thread
        context = {
            "message": f"exception in thread {thread.name if thread else '?'}",
            "thread": thread,
        }
        if self._report(args.exc_value, context, previous is threading.__excepthook__):
            return
        previous(args)

    def _report(
        self, exc: BaseException | None, context: dict[str, Any], default_previous: bool
    ) -> bool:
        """Report `exc`; tell whether the previous hook must be skipped."""
        reporter = self._reporter
        if not self._active or not is_catchable(exc) or not mark_reported(exc):
            return False
        write_here = reporter.logger is not None or not default_previous
        # The hook runs in the thread that failed, so the current context is its own.
        try:
            reporter.report(exc, {**context, "exception": exc}, write_here, True)
        except Exception:
            library_log.exception("resilient_async thread hook failed")
        # An interpreter default hook only prints what was just logged to `logger`.
        return default_previous and reporter.logger is not None


def mark_reported(exc: BaseException) -> bool:
    """Mark `exc` as reported; tell whether it was not already."""
    if getattr(exc, _REPORTED, False):
        return False
    # A type that refuses attributes is reported each time it comes.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _REPORTED, True)
    return True
