"""The base every policy shares: `call`, and the decorator form built on it."""

from __future__ import annotations

import functools
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Final,
    ParamSpec,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from . import _backend

if TYPE_CHECKING:
    from ..instrumentation import Hook

__all__ = ["MUST_WAIT", "Guard", "NamedPolicy", "Policy"]

P = ParamSpec("P")
T = TypeVar("T")


class Policy:
    """A reusable, shareable guard around calls.

    Subclasses implement `call`; this class turns it into a decorator that keeps the wrapped
    function's signature (ParamSpec) and `functools.wraps` metadata. Per-call state never lives
    on the policy, so one instance may guard any number of concurrent calls.
    """

    __slots__ = ()

    # False for a guard whose exit must await I/O (a breaker on a RedisStore): a pipeline
    # then runs it through `call` instead of folding it into its own driver.
    _guard_folds: ClassVar[bool] = True

    async def call(self, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` under this policy and return its result."""
        raise NotImplementedError

    def __call__(self, fn: _backend.Fn[P, T]) -> _backend.Fn[P, T]:
        """Decorate `fn` so that every call runs under this policy.

        Raises:
            TypeError: `fn` is not a callable this flavour of policy can run.
        """
        _backend.check_guarded_callable(fn)
        call = self.call

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            return await call(fn, *args, **kwargs)

        return guarded


class NamedPolicy(Policy):
    """The library's policies: a name and hooks of their own, both read-only.

    A separate base, so that a user's own `Policy` subclass stays free to use these names.
    """

    __slots__ = ()

    # Set by each subclass's constructor (as slots of its own, checked by `check_name` and
    # `check_hooks`).
    _name: str | None
    _hooks: tuple[Hook, ...]

    @property
    def name(self) -> str | None:
        """The name used in events, error context and metric labels, or None."""
        return self._name

    @property
    def hooks(self) -> tuple[Hook, ...]:
        """The hooks that receive this policy's events only (its `hooks=`)."""
        return self._hooks


class _MustWait:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MUST_WAIT"


MUST_WAIT: Final = _MustWait()
"""Returned by `Guard._guard_enter` when the guard must wait (`_guard_wait`) to admit."""


@runtime_checkable
class Guard(Protocol):
    """What a policy offers to be folded into a pipeline's single driver.

    `_guard_enter()` admits the call without waiting and returns a token (or raises the
    guard's rejection), or returns `MUST_WAIT`, after which `_guard_wait()` waits for
    admission and returns the token. `_guard_exit(token, error)` records the outcome (error is
    None on success) and may raise a replacement error (a timeout turns its own cancellation
    into `DeadlineExceeded`).
    """

    def _guard_enter(self) -> Any: ...

    async def _guard_wait(self) -> Any: ...

    def _guard_exit(self, token: Any, error: BaseException | None) -> None: ...
