"""Fallbacks and graceful degradation: answer something useful when a call fails.

`Fallback(value=...)` returns a fixed value, `Fallback(handler=...)` computes one from the
error and the call's arguments, and `Fallback.last_good(ttl)` serves the last successful result
for the same arguments (stale-if-error). A fallback runs once, only for the errors its `on=`
matches, never for cancellation, in the caller's context; `degraded()` is True while it runs.
"""

from __future__ import annotations

import inspect  # unasync: remove
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar, cast

from .._core.checks import check_hooks, check_int, check_name, check_period
from .._degradation import DEGRADED, degraded
from ..classify import DEFAULT, DefaultType, ErrorClass, OnSpec, classify, compile_on
from ..context import attach_context
from ..instrumentation import Hook, emit_to
from . import _backend
from .policy import NamedPolicy

__all__ = ["Fallback", "degraded"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

_NOT_GIVEN: Any = object()


def _not_permanent(exc: BaseException) -> bool:
    return classify(exc) is not ErrorClass.PERMANENT


class Fallback(NamedPolicy, Generic[R]):
    """Replace a failed call's error by a value, a handler's answer, or the last good result.

    Give exactly one of `value` and `handler`. The handler is called with the exception first,
    then the call's own arguments; its own error propagates with the original error as its
    `__context__`, so nothing is hidden. In async code the handler may be a coroutine
    function or a plain function (called directly, its result used as is: handy for a quick
    default that needs no I/O); in sync code it must be a plain function.

    Args:
        value: The value to return instead of the error.
        handler: A callable `(exc, *args, **kwargs) -> result` computing the replacement.
        on: Which errors fall back (see `compile_on`); default: every `Exception` except those
            classified PERMANENT. Cancellation never falls back.
        name: A name for events and error context.
        hooks: Hooks (callables taking one event) for this fallback's events only.

    Raises:
        ValueError: Both or neither of `value` and `handler` were given, or `name` is empty.
        TypeError: `handler` is not callable (or, in sync code, is a coroutine function), or
            `on` is of an unsupported kind.

    Example:
        >>> @Fallback(value=[])
        ... async def recommendations(user_id: str) -> list[str]: ...
    """

    __slots__ = (
        "_handler",
        "_hooks",
        "_last_good",
        "_matches",
        "_name",
        "_on_is_default",
        "_value",
    )

    def __init__(
        self,
        value: R = _NOT_GIVEN,
        *,
        handler: _backend.Fn[..., R] | Callable[..., R] | None = None,
        on: OnSpec | DefaultType = DEFAULT,
        name: str | None = None,
        hooks: Iterable[Hook] = (),
    ) -> None:
        if (value is _NOT_GIVEN) == (handler is None):
            raise ValueError("give exactly one of value= and handler=, got both or neither")
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be a callable, got {handler!r}")
        # unasync: sync-only: if handler is not None:
        # unasync: sync-only:     _backend.check_guarded_callable(handler, "handler")
        self._value = value
        self._handler = handler
        self._matches = compile_on(on, default=_not_permanent)
        self._on_is_default = on is DEFAULT
        self._last_good: _LastGood | None = None
        self._name = check_name(name)
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)

    @classmethod
    def last_good(
        cls,
        ttl: float | timedelta,
        *,
        key: Callable[..., Hashable] | None = None,
        max_entries: int = 1024,
        on: OnSpec | DefaultType = DEFAULT,
        name: str | None = None,
        hooks: Iterable[Hook] = (),
    ) -> Fallback[Any]:
        """Serve the last successful result for the same key when a call fails.

        Each success is remembered per key (the call's positional and keyword arguments when
        `key` is None; calls with unhashable arguments are not remembered). When a call fails
        with an error matched by `on`, the last result for its key that is younger than `ttl`
        seconds is returned instead; without one the original error propagates. At most
        `max_entries` keys are kept, least recently used first out.

        Args:
            ttl: How old a remembered result may be, in seconds (or a `timedelta`), >= 1e-6.
            key: A callable taking the call's arguments and returning a hashable key.
            max_entries: How many keys to remember (>= 1).
            on: Which errors fall back (default as for `Fallback`).
            name: A name for events and error context.
            hooks: Hooks for this fallback's events only.

        Raises:
            ValueError: `ttl` too short (< 1e-6 s) or not finite, or `max_entries` < 1.
            TypeError: `key` is not callable.
        """
        ttl = check_period(ttl, "ttl")
        max_entries = check_int(max_entries, "max_entries", 1)
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable returning a hashable key, got {key!r}")
        fallback: Fallback[Any] = Fallback(value=None, on=on, name=name, hooks=hooks)
        fallback._last_good = _LastGood(ttl, key, max_entries)
        return fallback

    @property
    def _answers_every_match(self) -> bool:
        """True when this fallback never lets a matched error through (a plain value)."""
        return self._last_good is None and self._handler is None

    def __repr__(self) -> str:
        kind = "last_good" if self._last_good else "handler" if self._handler else "value"
        return f"Fallback({kind}, name={self._name!r})"

    async def call(self, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)`; on a matched error, return the fallback's answer.

        Raises:
            Exception: The original error when it is not matched by `on` (or `last_good` has
                nothing fresh for the key); the handler's error, chained to the original.
        """
        # unasync: sync-only: _backend.check_deadline()
        last_good = self._last_good
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            _backend.check_awaited(exc, fn, "Fallback")  # unasync: remove
            if not self._matches(exc):
                raise
            if last_good is not None:
                return cast(T, self._serve_last_good(last_good, exc, args, kwargs))
            emit_to(self._hooks, "fallback.used", self._name, exception=exc)
            if self._handler is None:
                return cast(T, self._value)
            return cast(T, await self._run_handler(exc, args, kwargs))
        # unasync: sync-only: _backend.check_result(result, fn, "Fallback")
        if last_good is not None:
            last_good.remember(args, kwargs, result, _backend.current_time())
        return result

    async def _run_handler(
        self, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> object:
        assert self._handler is not None
        token = DEGRADED.set(True)
        try:
            answer = self._handler(exc, *args, **kwargs)
            # unasync: begin-remove
            if inspect.isawaitable(answer):
                answer = await answer  # a plain function's answer is used as it is
            # unasync: end-remove
            # unasync: sync-only: _backend.check_result(answer, self._handler, "Fallback")
            return answer
        except Exception as failed:
            attach_context(failed, {"policy": self._name or "Fallback", "fallback": "failed"})
            raise
        finally:
            DEGRADED.reset(token)

    def _serve_last_good(
        self,
        last_good: _LastGood,
        exc: Exception,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> object:
        found, value = last_good.lookup(args, kwargs, _backend.current_time())
        if not found:
            raise exc
        emit_to(self._hooks, "fallback.used", self._name, exception=exc, stale=True)
        return value


class _LastGood:
    """A bounded LRU of the last good result per key, with the time it was stored."""

    __slots__ = ("_entries", "_key", "_lock", "_max_entries", "_ttl")

    def __init__(self, ttl: float, key: Callable[..., Hashable] | None, max_entries: int) -> None:
        self._ttl = ttl
        self._key = key
        self._max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self._lock = threading.Lock()  # the sync twin shares a cache across threads

    def _key_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable | None:
        if self._key is not None:
            return self._key(*args, **kwargs)
        key = (args, tuple(sorted(kwargs.items()))) if kwargs else args
        try:
            hash(key)
        except TypeError:
            return None  # unhashable arguments: such calls are not remembered
        return key

    def remember(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], value: object, now: float
    ) -> None:
        key = self._key_of(args, kwargs)
        if key is None:
            return
        with self._lock:
            self._entries[key] = (now, value)
            self._entries.move_to_end(key)
            if len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def lookup(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float
    ) -> tuple[bool, object]:
        key = self._key_of(args, kwargs)
        if key is None:
            return False, None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or now - entry[0] > self._ttl:
                return False, None
            self._entries.move_to_end(key)
            return True, entry[1]

    def __len__(self) -> int:
        return len(self._entries)
