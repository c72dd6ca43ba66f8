"""The cost of the shared building blocks: error context and classification.

Sync operations (no event loop involved), measured side by side with the plain Python they
replace: a bare context-variable set/reset, and an isinstance chain.
"""

from __future__ import annotations

import contextvars
import errno

import resilient_async as ra
from resilient_async.classify import Classifier
from resilient_async.context import attach_context

from .harness import Group

_var: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "bench", default=None
)


def _contextvar_set_reset() -> object:
    fields = {"request": "r-1"}

    def op() -> None:
        _var.reset(_var.set(fields))

    return op


def _error_context_push_pop() -> object:
    def op() -> None:
        with ra.error_context(request="r-1"):
            pass

    return op


def _error_context_nested_read() -> object:
    def op() -> object:
        with ra.error_context(request="r-1"), ra.error_context(user="u-2"):
            return ra.current_context()

    return op


def _raise_and_catch() -> object:
    def op() -> None:
        try:
            raise ConnectionError("down")
        except ConnectionError:
            pass

    return op


def _raise_through_error_context() -> object:
    def op() -> None:
        try:
            with ra.error_context(request="r-1"):
                raise ConnectionError("down")
        except ConnectionError:
            pass

    return op


def _attach_context() -> object:
    def op() -> None:
        attach_context(ConnectionError("down"), {"policy": "db", "attempt": 3})

    return op


context = Group(
    "error context: push/pop, read, capture on an error",
    baseline="contextvar set/reset",
    note="sync; no event loop involved",
)
context.add("contextvar set/reset", _contextvar_set_reset, backends=["asyncio"], is_async=False)
context.add("with error_context", _error_context_push_pop, backends=["asyncio"], is_async=False)
context.add(
    "two nested + current_context()",
    _error_context_nested_read,
    backends=["asyncio"],
    is_async=False,
)
context.add("raise + catch", _raise_and_catch, backends=["asyncio"], is_async=False)
context.add(
    "raise through error_context",
    _raise_through_error_context,
    backends=["asyncio"],
    is_async=False,
)
context.add("attach_context (2 fields)", _attach_context, backends=["asyncio"], is_async=False)


def _isinstance_chain() -> object:
    error = ConnectionResetError(errno.ECONNRESET, "reset")

    def op() -> str:
        if isinstance(error, (ValueError, TypeError, KeyError)):
            return "permanent"
        if isinstance(error, TimeoutError):
            return "timeout"
        if isinstance(error, ConnectionError):
            return "transient"
        return "unknown"

    return op


def _classify(error: BaseException) -> object:
    def op() -> object:
        return ra.classify(error)

    return op


def _classify_custom() -> object:
    classifier = Classifier()
    classifier.register(lambda exc: "maintenance" in str(exc), ra.ErrorClass.THROTTLED)
    error = ConnectionResetError(errno.ECONNRESET, "reset")

    def op() -> object:
        return classifier.classify(error)

    return op


classification = Group(
    "classify: the default table and a custom rule",
    baseline="isinstance chain",
    note="sync; cached per exception type",
)
classification.add("isinstance chain", _isinstance_chain, backends=["asyncio"], is_async=False)
classification.add(
    "classify(ConnectionResetError)",
    lambda: _classify(ConnectionResetError(errno.ECONNRESET, "reset")),
    backends=["asyncio"],
    is_async=False,
)
classification.add(
    "classify(ValueError)",
    lambda: _classify(ValueError("bad")),
    backends=["asyncio"],
    is_async=False,
)
classification.add(
    "Classifier + predicate rule", _classify_custom, backends=["asyncio"], is_async=False
)

GROUPS = [context, classification]
