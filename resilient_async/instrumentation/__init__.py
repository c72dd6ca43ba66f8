"""Events that policies emit, and the hooks that receive them.

Every policy reports what it does as an `Event`: a frozen record with a dotted `kind` (such as
`"retry.scheduled"` or `"breaker.state_changed"`), the policy's name, the error context at the
time, and fields of that kind (`event.attempt`, `event.delay`, ...). Hooks are plain callables
taking one event. Install them for the process with `set_hooks`, or for a block (and the tasks
it starts) with `hooks(...)`. A hook that raises is logged and never breaks the call.

Until a hook is installed (with `set_hooks` or a first `hooks()` block), emitting an event
costs one check of a module global.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from .._exports import publish
from ._opentelemetry import OpenTelemetryHook as OpenTelemetryHook
from ._prometheus import PrometheusHook as PrometheusHook
from ._structlog import StructlogHook as StructlogHook

__all__ = [
    "Event",
    "Hook",
    "LoggingHook",
    "OpenTelemetryHook",
    "PrometheusHook",
    "StructlogHook",
    "emit",
    "emit_to",
    "enabled",
    "get_hooks",
    "hooks",
    "set_hooks",
]

_log = logging.getLogger("resilient_async")


class Event:
    """One thing a policy did: immutable, cheap, and readable by attribute.

    Attributes:
        kind: A dotted name such as `"retry.scheduled"`.
        policy: The name of the policy that emitted it, or None.
        context: The error context when it was emitted.
        fields: The kind's own fields (also readable as attributes: `event.attempt`).
    """

    __slots__ = ("context", "fields", "kind", "policy")

    kind: str
    policy: str | None
    context: Mapping[str, object]
    fields: Mapping[str, Any]

    def __init__(
        self,
        kind: str,
        policy: str | None,
        context: Mapping[str, object],
        fields: Mapping[str, Any],
    ) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "policy", policy)
        object.__setattr__(self, "context", context)
        object.__setattr__(self, "fields", MappingProxyType(dict(fields)))

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"{self.kind} event has no field {name!r}") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("events are immutable")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"Event({self.kind!r}, policy={self.policy!r}{', ' if fields else ''}{fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.kind, self.policy, dict(self.context), dict(self.fields)) == (
            other.kind,
            other.policy,
            dict(other.context),
            dict(other.fields),
        )

    __hash__ = None  # type: ignore[assignment]


Hook = Callable[[Event], object]

_global_hooks: tuple[Hook, ...] = ()
_scoped_hooks: ContextVar[tuple[Hook, ...]] = ContextVar("resilient_async.hooks", default=())
# False until a process-wide hook is set or a first `hooks()` block is entered: until then
# emitting costs this one check. It stays True after a `hooks()` block, because tasks that
# block started may outlive it and still carry its hooks in their context.
_maybe_active = False


def set_hooks(new_hooks: Iterable[Hook]) -> None:
    """Replace the process-wide hooks.

    Raises:
        TypeError: An item is not callable.
    """
    global _global_hooks, _maybe_active
    checked = tuple(new_hooks)
    for hook in checked:
        if not callable(hook):
            raise TypeError(f"hooks must be callables taking one event, got {hook!r}")
    _global_hooks = checked
    _maybe_active = _maybe_active or bool(checked)


def get_hooks() -> tuple[Hook, ...]:
    """Return the hooks active here: the process-wide ones, then those of enclosing `hooks()`."""
    return _global_hooks + _scoped_hooks.get()


@contextmanager
def hooks(*extra: Hook) -> Iterator[None]:
    """Add hooks for the enclosed block and the tasks it starts; remove them afterwards.

    Raises:
        TypeError: An argument is not callable.
    """
    global _maybe_active
    for hook in extra:
        if not callable(hook):
            raise TypeError(f"hooks must be callables taking one event, got {hook!r}")
    _maybe_active = _maybe_active or bool(extra)
    token = _scoped_hooks.set(_scoped_hooks.get() + extra)
    try:
        yield
    finally:
        _scoped_hooks.reset(token)


def emit(kind: str, policy: str | None, /, **fields: Any) -> None:
    """Send an event to every active hook; a failing hook is logged, never raised."""
    if not _maybe_active:
        return
    active = _global_hooks + _scoped_hooks.get() if _global_hooks else _scoped_hooks.get()
    if not active:
        return
    from ..context import current_context

    event = Event(kind, policy, current_context(), fields)
    for hook in active:
        try:
            hook(event)
        except Exception:
            _log.exception("resilient_async hook %r failed on %s", hook, kind)


def emit_to(own: tuple[Hook, ...], kind: str, policy: str | None, /, **fields: Any) -> None:
    """Like `emit`, and also send the event to `own`: a policy's own hooks (its `hooks=`).

    The policy's hooks run after the process-wide and scoped ones; they see only the events
    of the policy that holds them.
    """
    if not own:
        if _maybe_active:
            emit(kind, policy, **fields)
        return
    active = _global_hooks + _scoped_hooks.get() + own
    from ..context import current_context

    event = Event(kind, policy, current_context(), fields)
    for hook in active:
        try:
            hook(event)
        except Exception:
            _log.exception("resilient_async hook %r failed on %s", hook, kind)


def enabled() -> bool:
    """Tell whether any hook would receive an event here (to skip building costly fields)."""
    return _maybe_active and bool(_global_hooks or _scoped_hooks.get())


class LoggingHook:
    """A hook that logs each event through the standard `logging` module, one line each.

    Records carry `kind` and `policy` as attributes (`extra`, with the event as `event`) and
    name both in the message (`policy=` is left out for an unnamed policy). An event's
    exception is shown on the same line as `ExcType: message`; a traceback is attached only
    when work finally fails (`retry.gave_up`, `compensation.failed`, `supervisor.gave_up`): a
    failed attempt that is retried, a rejection or a fallback is an expected outcome, not a
    crash. Rejections and give-ups log
    at WARNING, everything else at INFO.

    Args:
        logger: The logger to use; `logging.getLogger("resilient_async")` when omitted.
    """

    _WARNING_KINDS = frozenset(
        {
            "retry.gave_up",
            "breaker.rejected",
            "bulkhead.rejected",
            "limiter.rejected",
            "timeout.expired",
            "timeout.overrun",
            "compensation.failed",
            "store.degraded",
            "supervisor.child_crashed",
            "supervisor.gave_up",
        }
    )
    # The events that mean work failed for good: the only ones logged with a traceback.
    _TRACEBACK_KINDS = frozenset({"retry.gave_up", "compensation.failed", "supervisor.gave_up"})

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else _log

    def __call__(self, event: Event) -> None:
        """Log `event` at the level its kind calls for."""
        kind = event.kind
        level = logging.WARNING if kind in self._WARNING_KINDS else logging.INFO
        if not self.logger.isEnabledFor(level):
            return
        parts = [kind]
        if event.policy is not None:
            parts.append(f"policy={event.policy}")
        exception = event.fields.get("exception")
        for key, value in event.fields.items():
            if key != "exception":
                parts.append(f"{key}={_one_line(value)}")
        if isinstance(exception, BaseException):
            parts.append(f"exception={_describe(exception)}")
        traceback = exception if kind in self._TRACEBACK_KINDS else None
        self.logger.log(
            level,
            "%s",
            " ".join(parts),
            extra={"kind": kind, "policy": event.policy, "event": event},
            exc_info=traceback if isinstance(traceback, BaseException) else None,
        )


_MAX_FIELD = 200


def _one_line(value: object) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= _MAX_FIELD else text[: _MAX_FIELD - 3] + "..."


def _describe(exc: BaseException) -> str:
    message = str(exc).replace("\n", " ")
    name = type(exc).__qualname__
    text = f"{name}: {message}" if message else name
    return text if len(text) <= _MAX_FIELD else text[: _MAX_FIELD - 3] + "..."


# Last, once every public name is bound: they report this module as theirs.
publish(__name__, globals())
