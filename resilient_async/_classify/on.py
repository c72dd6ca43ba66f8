"""Compiling the `on=` argument every policy accepts into a fast matcher (`compile_on`)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Final, TypeAlias

from .._core.signals import is_stop_type
from .engine import class_matcher, classes_matcher
from .kinds import ErrorClass, Predicate, exception_types

__all__ = ["DEFAULT", "DefaultType", "OnSpec", "compile_on"]


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
        return class_matcher(spec)
    if isinstance(spec, (type, tuple)):
        types = exception_types(spec, param, _ON_KINDS)
        for cls in types:
            if is_stop_type(cls):
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
        return class_matcher(classes.pop())
    return classes_matcher(frozenset(classes))


# Every matcher starts with `is_catchable(exc)`, inlined as `isinstance(exc, Exception)`:
# a matcher runs on every failure a policy sees, and a call would double a type match's cost.


def _types_matcher(types: tuple[type[BaseException], ...]) -> Callable[[BaseException], bool]:
    def matches(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and isinstance(exc, types)

    return matches


def _predicate_matcher(predicate: Predicate) -> Callable[[BaseException], bool]:
    def matches(exc: BaseException) -> bool:
        return isinstance(exc, Exception) and bool(predicate(exc))

    return matches
