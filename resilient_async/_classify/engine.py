"""The classification engine: `Classifier`, the current classifier, and `classify`.

A classifier asks its user rules (newest first), then the default rules (`rules`), and
compiles the type-dependent part of that search once per exception type into a plan: the
per-instance checks to run and the answer when none of them has an opinion.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Final, TypeAlias

from .._core.signals import is_stop_type
from .kinds import Check, ErrorClass, Predicate, Rule, exception_types
from .rules import DEFAULT_RULES, group_check

__all__ = [
    "Classifier",
    "classify",
    "class_matcher",
    "classes_matcher",
    "get_classifier",
    "set_classifier",
    "use_classifier",
]

_Matcher: TypeAlias = type[BaseException] | tuple[type[BaseException], ...] | Predicate
_Plan: TypeAlias = tuple[tuple[Check, ...], ErrorClass]

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

    def __init__(self, user_rules: tuple[Rule, ...]) -> None:
        self.user_rules = user_rules
        self.rules = user_rules + DEFAULT_RULES
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
        """Classify a group by its leaves, under these same rules (see `rules.groups`)."""
        if _holds_stop_signal(group):
            return ErrorClass.CANCELLED
        found: set[ErrorClass] = set()
        for leaf in _leaves(group):
            found.add(self.classify(leaf))
            if len(found) > 1:
                return ErrorClass.CANCELLED if ErrorClass.CANCELLED in found else _MIXED
        return found.pop() if found else _MIXED

    def plan_for(self, cls: type[BaseException]) -> _Plan:
        checks: list[Check] = []
        fallback = ErrorClass.UNKNOWN
        for rule in self.rules:
            step = rule(cls)
            if step is None:
                continue
            if isinstance(step, ErrorClass):
                fallback = step
                break
            if step is group_check:
                step = self.classify_group  # the leaves are classified by these rules
            checks.append(step)
        plan = (tuple(checks), fallback)
        if len(self.plans) >= _PLAN_CACHE_LIMIT:
            self.plans.clear()
        self.plans[cls] = plan
        return plan


def _user_rule(matcher: object, error_class: object) -> Rule:
    if not isinstance(error_class, ErrorClass):
        raise TypeError(f"error_class must be an ErrorClass member, got {error_class!r}")
    result = error_class
    if isinstance(matcher, (type, tuple)):
        types = exception_types(matcher, "matcher", _MATCHER_KINDS)

        def type_rule(cls: type[BaseException]) -> ErrorClass | None:
            return result if issubclass(cls, types) else None

        return type_rule
    if callable(matcher):
        predicate = matcher

        def check(exc: BaseException) -> ErrorClass | None:
            return result if predicate(exc) else None

        def predicate_rule(cls: type[BaseException]) -> Check:
            return check

        return predicate_rule
    raise TypeError(f"matcher must be {_MATCHER_KINDS}, got {matcher!r}")


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


def class_matcher(wanted: ErrorClass) -> Predicate:
    """Return a matcher for `compile_on`: an `Exception` that classifies as `wanted` now."""

    def matches(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):  # `is_catchable`, inlined (see `on`)
            return False
        classifier = _current.get()
        if classifier is None:
            classifier = _process_default
        return classifier._state.classify(exc) is wanted  # `Classifier.classify`, inlined

    return matches


def classes_matcher(wanted: frozenset[ErrorClass]) -> Predicate:
    """Return a matcher for `compile_on`: an `Exception` that classifies as one of `wanted`."""
    # A tuple: members compare by identity, where a set would call `Enum.__hash__` (Python).
    members = tuple(wanted)

    def matches(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):  # `is_catchable`, inlined
            return False
        classifier = _current.get()
        if classifier is None:
            classifier = _process_default
        return classifier._state.classify(exc) in members  # `Classifier.classify`, inlined

    return matches


# A group whose leaves disagree: nothing is known about it as a whole.
_MIXED: Final = ErrorClass.UNKNOWN


def _leaves(group: BaseException) -> Iterator[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        for inner in group.exceptions:
            yield from _leaves(inner)
    else:
        yield group


def _holds_stop_signal(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return any(_holds_stop_signal(inner) for inner in exc.exceptions)
    return is_stop_type(type(exc))


# Created last: a classifier needs the default rules.
_process_default = Classifier()
