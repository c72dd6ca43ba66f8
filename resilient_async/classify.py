"""Error classification: what kind of failure an exception is, and what a policy should match.

Every policy decides what to do with an exception by asking one question: is it transient,
throttled, a timeout, permanent, a cancellation, or unknown? `classify` answers it with the
current `Classifier`, which starts with sensible defaults (builtin exceptions, HTTP status
codes, httpx, aiohttp, requests, trio, redis-py, PostgreSQL drivers by SQLSTATE, sqlite3's
"database is locked", exception groups by their leaves) and takes user rules that always
win. No driver is imported to recognise its errors: they are matched by module and name.

`compile_on` turns the `on=` argument that every policy accepts into a fast matcher; it is the
building block for custom policies. A compiled matcher never matches cancellation,
`KeyboardInterrupt`, `SystemExit` or `GeneratorExit`.

`retry_after` reads a server's hint (a `.retry_after` attribute or a `Retry-After` header).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import errno
import math
import numbers
import operator
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Final, TypeAlias

from .errors import BulkheadFullError, CircuitOpenError, RateLimitedError

__all__ = [
    "Classifier",
    "DEFAULT",
    "DefaultType",
    "ErrorClass",
    "OnSpec",
    "classify",
    "compile_on",
    "get_classifier",
    "retry_after",
    "set_classifier",
    "use_classifier",
]


class ErrorClass(enum.Enum):
    """The kind of failure an exception stands for.

    Policies match on these rather than on exception types, so one classifier decides for
    every policy what is worth a retry, what counts against a breaker and what a fallback may
    hide. The values are lowercase strings (`ErrorClass("timeout") is ErrorClass.TIMEOUT`).

    Attributes:
        TRANSIENT: A failure that may well go away on its own (a reset connection, a 502).
        THROTTLED: The callee or a local guard asks for less load (a 429, an open breaker, a
            full bulkhead, a rate limit).
        TIMEOUT: A deadline or timeout expired.
        PERMANENT: Retrying the same call cannot help (a bad argument, a 404, a 403).
        CANCELLED: A stop signal: cancellation, `KeyboardInterrupt`, `SystemExit`,
            `GeneratorExit`. No policy ever catches these.
        UNKNOWN: Nothing is known about the failure.
    """

    TRANSIENT = "transient"
    THROTTLED = "throttled"
    TIMEOUT = "timeout"
    PERMANENT = "permanent"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


_Predicate: TypeAlias = Callable[[BaseException], bool]
_Matcher: TypeAlias = type[BaseException] | tuple[type[BaseException], ...] | _Predicate
# A check runs on an instance and returns None when it has no opinion.
_Check: TypeAlias = Callable[[BaseException], ErrorClass | None]
# A rule looks at an exception type once (the result is cached per type) and answers: cannot
# match (None), always matches (an ErrorClass), or ask this check for each instance.
_Rule: TypeAlias = Callable[[type[BaseException]], ErrorClass | _Check | None]
_Plan: TypeAlias = tuple[tuple[_Check, ...], ErrorClass]

# Distinct exception types are few in practice; the bound only guards against code that
# creates exception classes on the fly.
_PLAN_CACHE_LIMIT: Final = 1024


class Classifier:
    """Map exceptions to an `ErrorClass`, with user rules on top of the default rules.

    A new classifier holds the default rules (see the module documentation and
    docs/classification.md). `register` adds a rule that wins over every default and over
    every earlier registration, whatever their specificity. `classify` is cheap: the
    type-dependent part of the search is compiled once per exception type.

    A classifier is safe to share between threads and tasks: `register` swaps in a new rule
    set atomically, so `classify` sees the rules either before or after a registration,
    never half of it.

    Example:
        ```python
        classifier = Classifier()
        classifier.register(MyFlakyError, ErrorClass.TRANSIENT)
        classifier.register(lambda exc: "quota" in str(exc), ErrorClass.THROTTLED)
        with use_classifier(classifier):
            ...
        ```
    """

    __slots__ = ("_lock", "_state")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = _State(())

    def register(self, matcher: _Matcher, error_class: ErrorClass) -> None:
        """Classify exceptions that `matcher` matches as `error_class`, before any other rule.

        Later registrations win over earlier ones, and every registration wins over every
        default rule (a compiled `on=` matcher still never matches a stop signal). A
        predicate runs on each `classify` call that reaches it; an error it raises
        propagates.

        Args:
            matcher: An exception type (subclasses match too), a tuple of exception types, or
                a predicate `(BaseException) -> bool`.
            error_class: The class to answer when `matcher` matches.

        Raises:
            TypeError: `matcher` is none of the accepted kinds, or `error_class` is not an
                `ErrorClass`.
            ValueError: `matcher` is an empty tuple, or `error_class` is `CANCELLED`
                (reserved for stop signals, which no registration can change).
        """
        if error_class is ErrorClass.CANCELLED:
            raise ValueError(
                "error_class cannot be ErrorClass.CANCELLED: it is reserved for stop signals "
                "(cancellation, KeyboardInterrupt, SystemExit, GeneratorExit), which every "
                "classifier already recognises; register another class"
            )
        rule = _user_rule(matcher, error_class)
        with self._lock:
            self._state = _State((rule, *self._state.user_rules))

    def classify(self, exc: BaseException) -> ErrorClass:
        """Return the class of `exc` under this classifier's rules.

        Unlike the module-level `classify`, this ignores the current classifier.

        Args:
            exc: The exception to classify.

        Returns:
            The answer of the first rule that matches, newest registration first, then the
            defaults; `ErrorClass.UNKNOWN` when none does.
        """
        return self._state.classify(exc)

    def copy(self) -> Classifier:
        """Return an independent classifier with the same rules.

        Rules registered on either one afterwards do not affect the other.
        """
        clone = Classifier()
        clone._state = _State(self._state.user_rules)
        return clone

    __copy__ = copy

    def __repr__(self) -> str:
        count = len(self._state.user_rules)
        return f"<Classifier with {count} user rule{'' if count == 1 else 's'}>"


class _State:
    """One immutable rule set and the plans compiled from it."""

    __slots__ = ("plans", "rules", "user_rules")

    def __init__(self, user_rules: tuple[_Rule, ...]) -> None:
        self.user_rules = user_rules
        self.rules = user_rules + _DEFAULT_RULES
        self.plans: dict[type[BaseException], _Plan] = {}

    def classify(self, exc: BaseException) -> ErrorClass:
        plan = self.plans.get(type(exc))
        if plan is None:
            plan = self.plan_for(type(exc))
        checks, fallback = plan
        for check in checks:
            found = check(exc)
            if found is not None:
                return found
        return fallback

    def classify_group(self, group: BaseException) -> ErrorClass | None:
        """Classify a group by its leaves, under these same rules (see `_group_rule`)."""
        if _holds_stop_signal(group):
            return ErrorClass.CANCELLED
        found: set[ErrorClass] = set()
        for leaf in _leaves(group):
            found.add(self.classify(leaf))
            if len(found) > 1:
                return ErrorClass.CANCELLED if ErrorClass.CANCELLED in found else _MIXED
        return found.pop() if found else _MIXED

    def plan_for(self, cls: type[BaseException]) -> _Plan:
        checks: list[_Check] = []
        fallback = ErrorClass.UNKNOWN
        for rule in self.rules:
            step = rule(cls)
            if step is None:
                continue
            if isinstance(step, ErrorClass):
                fallback = step
                break
            if step is _group_check:
                step = self.classify_group  # the leaves are classified by these rules
            checks.append(step)
        plan = (tuple(checks), fallback)
        if len(self.plans) >= _PLAN_CACHE_LIMIT:
            self.plans.clear()
        self.plans[cls] = plan
        return plan


def _user_rule(matcher: object, error_class: object) -> _Rule:
    if not isinstance(error_class, ErrorClass):
        raise TypeError(f"error_class must be an ErrorClass member, got {error_class!r}")
    result = error_class
    if isinstance(matcher, (type, tuple)):
        types = _exception_types(matcher, "matcher", _MATCHER_KINDS)

        def type_rule(cls: type[BaseException]) -> ErrorClass | None:
            return result if issubclass(cls, types) else None

        return type_rule
    if callable(matcher):
        predicate = matcher

        def check(exc: BaseException) -> ErrorClass | None:
            return result if predicate(exc) else None

        def predicate_rule(cls: type[BaseException]) -> _Check:
            return check

        return predicate_rule
    raise TypeError(f"matcher must be {_MATCHER_KINDS}, got {matcher!r}")


def _exception_types(
    value: type | tuple[object, ...], param: str, accepted: str
) -> tuple[type[BaseException], ...]:
    items: tuple[object, ...] = value if isinstance(value, tuple) else (value,)
    if not items:
        raise ValueError(f"{param} must not be an empty tuple; pass {accepted}")
    types: list[type[BaseException]] = []
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            where = " in the tuple" if isinstance(value, tuple) else ""
            raise TypeError(f"{param} must be {accepted}; {item!r}{where} is not an exception type")
        types.append(item)
    return tuple(types)


_MATCHER_KINDS: Final = (
    "an exception type, a tuple of exception types, or a predicate (BaseException) -> bool"
)


_current: ContextVar[Classifier | None] = ContextVar("resilient_async_classifier", default=None)


def classify(exc: BaseException) -> ErrorClass:
    """Return the class of `exc` under the current classifier.

    The current classifier is the innermost `use_classifier` block's, else the process
    default (`set_classifier`). Every policy's `ErrorClass` matching goes through here.

    Args:
        exc: The exception to classify.

    Returns:
        Its `ErrorClass`.

    Example:
        ```python
        assert classify(ConnectionResetError()) is ErrorClass.TRANSIENT
        ```
    """
    classifier = _current.get()
    if classifier is None:
        classifier = _process_default
    return classifier.classify(exc)


def get_classifier() -> Classifier:
    """Return the current classifier: the innermost `use_classifier` one, else the default."""
    classifier = _current.get()
    return _process_default if classifier is None else classifier


def set_classifier(classifier: Classifier) -> None:
    """Make `classifier` the process default, used wherever no `use_classifier` block is active.

    Unlike `use_classifier`, this affects every thread and task, including those already
    running; a `use_classifier` block still takes precedence inside it.

    Args:
        classifier: The new process default.

    Raises:
        TypeError: `classifier` is not a `Classifier`.
    """
    global _process_default
    _process_default = _checked_classifier(classifier)


def use_classifier(classifier: Classifier) -> contextlib.AbstractContextManager[Classifier]:
    """Make `classifier` current for a block (a plain `with`, in sync or async code).

    The scope is a context variable: blocks nest (the innermost wins), the previous
    classifier is restored on exit even on an error, tasks started inside the block inherit
    it, and nothing set in a child task leaks into its parent.

    Args:
        classifier: The classifier for the block.

    Returns:
        A context manager that yields `classifier`.

    Raises:
        TypeError: `classifier` is not a `Classifier`.

    Example:
        ```python
        strict = Classifier()
        strict.register(ConnectionError, ErrorClass.PERMANENT)
        with use_classifier(strict):
            await retrying.call(fetch)  # connection errors are not retried here
        ```
    """
    return _scoped(_checked_classifier(classifier))


@contextlib.contextmanager
def _scoped(classifier: Classifier) -> Iterator[Classifier]:
    token = _current.set(classifier)
    try:
        yield classifier
    finally:
        _current.reset(token)


def _checked_classifier(classifier: object) -> Classifier:
    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier must be a Classifier, got {classifier!r}")
    return classifier


def retry_after(exc: BaseException) -> float | None:
    """Return the server's hint of how long to wait before retrying, in seconds, or None.

    Looks, in order, at a `.retry_after` attribute (seconds as a number, a
    `datetime.timedelta`, or a header string), then at a `Retry-After` header on
    `exc.response.headers` (httpx, requests) or on `exc.headers` (aiohttp, urllib). Header
    names match case-insensitively, even in a plain dict. A header holds delta-seconds
    (`"120"`, `"1.5"`) or an HTTP-date, turned into the seconds from now on the wall clock (a
    past date gives 0.0).

    Never raises: a missing, malformed, negative, NaN or infinite hint gives None (an
    unusable attribute falls through to the header).

    Args:
        exc: The exception that may carry a hint.

    Returns:
        Seconds to wait (>= 0, finite), or None.
    """
    if not _may_carry_hint(exc):
        return None  # the common case on a retry's failure path: skip three lookups
    try:
        hint = _seconds(getattr(exc, "retry_after", None))
        if hint is not None:
            return hint
        response = getattr(exc, "response", None)
        if response is not None:
            hint = _seconds(_retry_after_header(getattr(response, "headers", None)))
            if hint is not None:
                return hint
        return _seconds(_retry_after_header(getattr(exc, "headers", None)))
    except Exception:
        # The objects are duck-typed and may be anything; a hint is never worth an error.
        return None


def _may_carry_hint(exc: BaseException) -> bool:
    """Tell cheaply whether `exc` has any attribute a hint could come from."""
    cls = type(exc)
    by_class = _classes_with_hints.get(cls)
    if by_class is None:
        by_class = any(hasattr(cls, name) for name in ("retry_after", "response", "headers"))
        if len(_classes_with_hints) < 1024:  # bounded: classes may be made at run time
            _classes_with_hints[cls] = by_class
    if by_class:
        return True
    attributes = exc.__dict__
    return bool(attributes) and (
        "retry_after" in attributes or "response" in attributes or "headers" in attributes
    )


_classes_with_hints: dict[type[BaseException], bool] = {}


_DELTA_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _retry_after_header(headers: object) -> object:
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if callable(get):
        value = get("Retry-After")
        if value is not None:
            return value
    items = getattr(headers, "items", None)
    if callable(items):
        for key, value in items():
            name = key.decode("latin-1") if isinstance(key, bytes) else key
            if isinstance(name, str) and name.lower() == "retry-after":
                return value
    return None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        return _parse_retry_after(value.strip())
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, numbers.Real):
        seconds = float(value)
    else:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _parse_retry_after(text: str) -> float | None:
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # HTTP-dates are always GMT; the asctime form carries no zone.
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class DefaultType(enum.Enum):
    """The type of `DEFAULT`, for annotations: `on: OnSpec | DefaultType = DEFAULT`."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "DEFAULT"

    __str__ = __repr__


DEFAULT: Final = DefaultType.DEFAULT
"""The default value of every policy's `on=` parameter: "use this policy's own default"."""

OnSpec: TypeAlias = (
    type[BaseException]
    | tuple[type[BaseException], ...]
    | ErrorClass
    | AbstractSet[ErrorClass]
    | Callable[[BaseException], bool]
)
"""What an `on=` parameter accepts; `compile_on` turns it into a matcher."""

_ON_KINDS: Final = (
    "an exception type, a tuple of exception types, an ErrorClass, a non-empty set of "
    "ErrorClass, or a predicate (BaseException) -> bool"
)


def compile_on(
    on: OnSpec | DefaultType,
    *,
    default: OnSpec,
    param: str = "on",
) -> Callable[[BaseException], bool]:
    """Validate an `on=` argument and compile it into a matcher `(BaseException) -> bool`.

    The building block for custom policies: call it once, at construction, and call the
    matcher on each failure. The matcher returns False for anything that is not an
    `Exception` (cancellation, `KeyboardInterrupt`, `SystemExit`, `GeneratorExit`, a
    `BaseExceptionGroup` holding one of them) before looking at `on`, so no policy can
    catch a stop signal, even with `on=BaseException` or a predicate that returns True.

    Kinds of `on`: an exception type or tuple of types matches with `isinstance`; an
    `ErrorClass` or set of them matches on `classify(exc)` at match time (so
    `use_classifier` applies); a predicate is called with the exception.

    Args:
        on: The user's argument, or `DEFAULT` to use `default`.
        default: The policy's own default, of the same kinds.
        param: The parameter's name, used in error messages.

    Returns:
        The matcher.

    Raises:
        TypeError: `on` is none of the accepted kinds, or holds something that is not an
            exception type (in a tuple) or not an `ErrorClass` (in a set).
        ValueError: `on` is an empty tuple or set, or names cancellation
            (`ErrorClass.CANCELLED`, `asyncio.CancelledError`, `KeyboardInterrupt`, ...),
            which is never matched.

    Example:
        ```python
        class Hedged:
            def __init__(self, *, on: OnSpec | DefaultType = DEFAULT) -> None:
                self._matches = compile_on(on, default={ErrorClass.TRANSIENT})
        ```
    """
    spec: object = default if on is DefaultType.DEFAULT else on
    if isinstance(spec, ErrorClass):
        _reject_cancelled(spec, param)
        return _class_matcher(spec)
    if isinstance(spec, (type, tuple)):
        types = _exception_types(spec, param, _ON_KINDS)
        for cls in types:
            if _is_stop_type(cls):
                raise ValueError(
                    f"{param}={spec!r} names {cls.__qualname__}, which is never matched: "
                    "cancellation, KeyboardInterrupt, SystemExit and GeneratorExit always "
                    "propagate through every policy"
                )
        return _types_matcher(types)
    if isinstance(spec, AbstractSet):
        return _set_matcher(spec, param)
    if callable(spec):
        return _predicate_matcher(spec)
    hint = "; use ErrorClass members, not strings" if isinstance(spec, str) else ""
    raise TypeError(f"{param} must be {_ON_KINDS}, got {spec!r}{hint}")


def _reject_cancelled(error_class: ErrorClass, param: str) -> None:
    if error_class is ErrorClass.CANCELLED:
        raise ValueError(
            f"{param} cannot include ErrorClass.CANCELLED: cancellation is never matched, "
            "it always propagates through every policy"
        )


def _set_matcher(spec: AbstractSet[object], param: str) -> Callable[[BaseException], bool]:
    if not spec:
        raise ValueError(f"{param} must not be an empty set; pass {_ON_KINDS}")
    classes: set[ErrorClass] = set()
    for item in spec:
        if not isinstance(item, ErrorClass):
            hint = " (use a tuple for exception types)" if isinstance(item, type) else ""
            raise TypeError(
                f"{param} must be {_ON_KINDS}; the set holds {item!r}, not an ErrorClass{hint}"
            )
        _reject_cancelled(item, param)
        classes.add(item)
    if len(classes) == 1:
        return _class_matcher(classes.pop())
    return _classes_matcher(frozenset(classes))


def _types_matcher(types: tuple[type[BaseException], ...]) -> Callable[[BaseException], bool]:
    def matches(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and isinstance(exc, types)

    return matches


def _class_matcher(wanted: ErrorClass) -> Callable[[BaseException], bool]:
    def matches(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return False
        classifier = _current.get()
        if classifier is None:
            classifier = _process_default
        return classifier.classify(exc) is wanted

    return matches


def _classes_matcher(wanted: frozenset[ErrorClass]) -> Callable[[BaseException], bool]:
    def matches(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return False
        classifier = _current.get()
        if classifier is None:
            classifier = _process_default
        return classifier.classify(exc) in wanted

    return matches


def _predicate_matcher(predicate: _Predicate) -> Callable[[BaseException], bool]:
    def matches(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and bool(predicate(exc))

    return matches


# Stop signals that no policy may catch. concurrent.futures.CancelledError (an Exception, raised
# by a cancelled future's result()) is classified as CANCELLED too, but may be matched by type.
_STOP_SIGNALS: Final = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def _is_stop_type(cls: type[BaseException]) -> bool:
    if issubclass(cls, _STOP_SIGNALS):
        return True
    # Never import trio: if it is not imported, no trio.Cancelled can exist.
    cancelled = getattr(sys.modules.get("trio"), "Cancelled", None)
    return isinstance(cancelled, type) and issubclass(cls, cancelled)


def _stop_rule(cls: type[BaseException]) -> ErrorClass | None:
    if _is_stop_type(cls) or issubclass(cls, concurrent.futures.CancelledError):
        return ErrorClass.CANCELLED
    return None


# A group whose leaves disagree: nothing is known about it as a whole.
_MIXED: Final = ErrorClass.UNKNOWN


def _group_rule(cls: type[BaseException]) -> _Check | None:
    """Classify an exception group (from a task group) by its leaves.

    A group holding a stop signal is CANCELLED; one whose leaves all classify the same takes
    that class; any other is UNKNOWN. The placeholder check returned here is swapped by
    `_State.plan_for` for one that classifies the leaves under the same rules.
    """
    if issubclass(cls, BaseExceptionGroup):
        return _group_check
    return None


def _group_check(exc: BaseException) -> ErrorClass | None:
    raise AssertionError("replaced by _State.classify_group")  # pragma: no cover


def _leaves(group: BaseException) -> Iterator[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        for inner in group.exceptions:
            yield from _leaves(inner)
    else:
        yield group


def _holds_stop_signal(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_holds_stop_signal(inner) for inner in exc.exceptions)
    return _is_stop_type(type(exc))


def _http_rule(cls: type[BaseException]) -> _Check:
    return _http_check


def _http_check(exc: BaseException) -> ErrorClass | None:
    status = _status_of(exc)
    if status is None:
        return None
    if status == 429:
        return ErrorClass.THROTTLED
    if status == 503:
        return ErrorClass.TRANSIENT if retry_after(exc) is None else ErrorClass.THROTTLED
    if status == 408 or status >= 500:
        return ErrorClass.TRANSIENT
    if status >= 400:
        return ErrorClass.PERMANENT
    return None


def _status_of(exc: BaseException) -> int | None:
    try:
        response = getattr(exc, "response", None)
        if response is not None:
            status = _as_status(getattr(response, "status_code", None))
            if status is not None:
                return status
        status = _as_status(getattr(exc, "status_code", None))
        if status is not None:
            return status
        return _as_status(getattr(exc, "status", None))
    except Exception:
        # Duck-typed attributes may be properties that raise; no status then.
        return None


def _as_status(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        status = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None
    return status if 100 <= status <= 599 else None


# Third-party errors, recognised by (top-level package, class name) anywhere in the MRO so that
# the libraries never need to be imported. The most derived match wins.
_LIBRARY_CLASSES: Final[dict[tuple[str, str], ErrorClass]] = {
    ("httpx", "TimeoutException"): ErrorClass.TIMEOUT,
    ("httpx", "UnsupportedProtocol"): ErrorClass.PERMANENT,
    ("httpx", "LocalProtocolError"): ErrorClass.PERMANENT,
    ("httpx", "TransportError"): ErrorClass.TRANSIENT,
    ("aiohttp", "ServerTimeoutError"): ErrorClass.TIMEOUT,
    ("aiohttp", "ClientConnectorCertificateError"): ErrorClass.PERMANENT,
    ("aiohttp", "ClientConnectionError"): ErrorClass.TRANSIENT,
    ("requests", "ConnectTimeout"): ErrorClass.TIMEOUT,
    ("requests", "Timeout"): ErrorClass.TIMEOUT,
    ("requests", "ConnectionError"): ErrorClass.TRANSIENT,
    ("trio", "TooSlowError"): ErrorClass.TIMEOUT,
    # redis-py: its ConnectionError and TimeoutError do not derive from the builtins.
    ("redis", "AuthenticationError"): ErrorClass.PERMANENT,
    ("redis", "AuthorizationError"): ErrorClass.PERMANENT,
    ("redis", "BusyLoadingError"): ErrorClass.TRANSIENT,
    ("redis", "ConnectionError"): ErrorClass.TRANSIENT,
    ("redis", "TimeoutError"): ErrorClass.TIMEOUT,
    ("redis", "ReadOnlyError"): ErrorClass.TRANSIENT,  # a replica during a failover
    ("redis", "TryAgainError"): ErrorClass.TRANSIENT,
    ("redis", "ClusterDownError"): ErrorClass.TRANSIENT,
    ("redis", "ResponseError"): ErrorClass.PERMANENT,
    # PostgreSQL errors are classified by SQLSTATE first (`_driver_rule`); these are the
    # answers for errors without a known SQLSTATE.
    ("psycopg", "OperationalError"): ErrorClass.TRANSIENT,
    ("psycopg2", "OperationalError"): ErrorClass.TRANSIENT,
    ("aiohttp", "InvalidURL"): ErrorClass.PERMANENT,
}

# PostgreSQL SQLSTATE codes (asyncpg's and psycopg's `.sqlstate`, psycopg2's `.pgcode`):
# exact codes first, then the two-character class.
_SQLSTATE_CODES: Final[dict[str, ErrorClass]] = {
    "40001": ErrorClass.TRANSIENT,  # serialization_failure: run the transaction again
    "40P01": ErrorClass.TRANSIENT,  # deadlock_detected
    "57P01": ErrorClass.TRANSIENT,  # admin_shutdown (pg_terminate_backend)
    "57P02": ErrorClass.TRANSIENT,  # crash_shutdown
    "57P03": ErrorClass.TRANSIENT,  # cannot_connect_now (starting up)
    "57014": ErrorClass.TIMEOUT,  # query_canceled (statement_timeout)
}
_SQLSTATE_CLASSES: Final[dict[str, ErrorClass]] = {
    "08": ErrorClass.TRANSIENT,  # connection exception
    "53": ErrorClass.THROTTLED,  # insufficient resources (too many connections, disk full)
    "22": ErrorClass.PERMANENT,  # data exception
    "23": ErrorClass.PERMANENT,  # integrity constraint violation
    "42": ErrorClass.PERMANENT,  # syntax error or access rule violation
}
_SQLSTATE_PACKAGES: Final = frozenset({"asyncpg", "psycopg", "psycopg2"})
_SQLITE_BUSY: Final = ("database is locked", "database table is locked")


def _driver_rule(cls: type[BaseException]) -> _Check | None:
    """Database drivers' errors, by what the instance carries (never importing a driver)."""
    module = str(getattr(cls, "__module__", ""))
    if module == "sqlite3" and cls.__name__ == "OperationalError":
        return _sqlite_check  # aiosqlite raises sqlite3's own errors
    for klass in cls.__mro__:
        if str(getattr(klass, "__module__", "")).partition(".")[0] in _SQLSTATE_PACKAGES:
            return _sqlstate_check
    return None


def _sqlstate_check(exc: BaseException) -> ErrorClass | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if not isinstance(code, str) or len(code) != 5:
        return None
    found = _SQLSTATE_CODES.get(code)
    return found if found is not None else _SQLSTATE_CLASSES.get(code[:2])


def _sqlite_check(exc: BaseException) -> ErrorClass | None:
    # SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock; it is released soon.
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return ErrorClass.TRANSIENT
    message = str(exc)
    return ErrorClass.TRANSIENT if message.startswith(_SQLITE_BUSY) else None


def _library_rule(cls: type[BaseException]) -> ErrorClass | None:
    for klass in cls.__mro__:
        package = str(getattr(klass, "__module__", "")).partition(".")[0]
        found = _LIBRARY_CLASSES.get((package, klass.__name__))
        if found is not None:
            return found
    return None


_TYPE_TABLE: Final[tuple[tuple[tuple[type[BaseException], ...], ErrorClass], ...]] = (
    ((CircuitOpenError, BulkheadFullError, RateLimitedError), ErrorClass.THROTTLED),
    ((TimeoutError,), ErrorClass.TIMEOUT),
    ((ConnectionError,), ErrorClass.TRANSIENT),
    (
        (
            ValueError,
            TypeError,
            LookupError,
            AttributeError,
            NotImplementedError,
            PermissionError,
        ),
        ErrorClass.PERMANENT,
    ),
)


def _type_rule(cls: type[BaseException]) -> ErrorClass | None:
    for types, error_class in _TYPE_TABLE:
        if issubclass(cls, types):
            return error_class
    return None


# An OSError subclass that Python did not pick from the errno (a library's own subclass, or a
# bare OSError) is classified by its errno the way Python's own subclasses are: connection
# and network errors transient, ETIMEDOUT a timeout, EACCES/EPERM permanent.
_ERRNO_NAMES: Final = {
    ErrorClass.TRANSIENT: (
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "EPIPE",
        "ESHUTDOWN",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "EAGAIN",
        "EWOULDBLOCK",
        "EADDRNOTAVAIL",
        "ENOBUFS",
    ),
    ErrorClass.TIMEOUT: ("ETIMEDOUT",),
    ErrorClass.PERMANENT: ("EACCES", "EPERM"),
}
_ERRNO_CLASSES: Final[dict[int, ErrorClass]] = {
    code: error_class
    for error_class, names in _ERRNO_NAMES.items()
    for name in names
    if (code := getattr(errno, name, None)) is not None
}


def _errno_rule(cls: type[BaseException]) -> _Check | None:
    if not issubclass(cls, OSError):
        return None
    if issubclass(cls, socket.gaierror):
        return _gaierror_check
    if issubclass(cls, socket.herror):
        return None  # h_errno codes are not errno codes
    return _errno_check


def _errno_check(exc: BaseException) -> ErrorClass | None:
    code = getattr(exc, "errno", None)
    return _ERRNO_CLASSES.get(code) if isinstance(code, int) else None


_EAI_AGAIN: Final = getattr(socket, "EAI_AGAIN", None)


def _gaierror_check(exc: BaseException) -> ErrorClass | None:
    # A resolver's EAI_AGAIN is "temporary failure in name resolution"; its codes are not
    # errno codes, so the errno table does not apply.
    code = getattr(exc, "errno", None)
    return ErrorClass.TRANSIENT if code is not None and code == _EAI_AGAIN else None


_DEFAULT_RULES: Final[tuple[_Rule, ...]] = (
    _stop_rule,
    _group_rule,
    _http_rule,
    _driver_rule,
    _library_rule,
    _type_rule,
    _errno_rule,
)

# Created last: a classifier needs the default rules above.
_process_default = Classifier()
