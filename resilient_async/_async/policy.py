"""The bases every policy shares: `call` and the decorator; a guard's three admission steps."""

from __future__ import annotations

import functools
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, ParamSpec, TypeVar

from . import _backend

if TYPE_CHECKING:
    from ..instrumentation import Hook

__all__ = ["MUST_WAIT", "WITHDRAWN", "Guard", "NamedPolicy", "Policy", "Withdrawn"]

P = ParamSpec("P")
T = TypeVar("T")


class Policy:
    """A reusable, shareable guard around calls.

    Subclasses implement `call`; this class turns it into a decorator that keeps the wrapped
    function's signature (ParamSpec) and `functools.wraps` metadata. Per-call state never lives
    on the policy, so one instance may guard any number of concurrent calls.
    """

    __slots__ = ()

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
    """What `Guard.enter_nowait` returns when admission has to wait (then `await enter()`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MUST_WAIT"


MUST_WAIT: Final = _MustWait()
"""Returned by `Guard.enter_nowait` when admission has to wait: call `Guard.enter` then."""


class Withdrawn(BaseException):
    """The outcome a guard's `exit` gets for a call that counts as nothing.

    A call that never really ran (a callable of the other flavour) is recorded like a
    cancelled one: not an `Exception`, so no guard counts it as a failure.
    """


WITHDRAWN: Final = Withdrawn()

# The guards entered by `async with` in this task (and its children), as a chain of links
# (guard, token, the link below), innermost first: entering and leaving in order is one
# tuple and one set each.
_Link = tuple["Guard", Any, Any]
_held: ContextVar[_Link | None] = ContextVar("resilient_async.held_guards", default=None)


class Guard(NamedPolicy):
    """A policy that admits a call, lets it run unchanged, then records how it ended.

    Circuit breakers, bulkheads, rate limiters and timeouts are guards. Each writes its
    admission once, in three steps, and gets `call`, `async with`, the decorator and its place
    in a pipeline from them (as trio builds `acquire` on `acquire_nowait`):

    - `enter_nowait()` admits the call without waiting and returns a token, raises the
      guard's rejection, or returns `MUST_WAIT` when admission has to wait;
    - `enter()` waits for admission and returns the token (after `MUST_WAIT` only);
    - `exit(token, error)` records the outcome: `error` is None on success, the error the
      call raised, or `WITHDRAWN` for a call that counts as nothing. It may raise a
      replacement (a timeout turns its own cancellation into `DeadlineExceeded`), and
      returns `MUST_WAIT` when recording has to wait: `finish(token, error)` is then awaited
      instead (a breaker whose state lives on a server), and `exit_may_wait` says so.

    A pipeline folds consecutive guards into one driver that calls these steps directly; a
    guard class that overrides `call`, or whose `exit_may_wait`, is run through its `call`.
    """

    __slots__ = ()

    # True for a guard whose token is always None (a bulkhead, a rate limiter): `async with`
    # then keeps no token for it, and its exit is not matched to an enter (the statement
    # pairs them; a hand-made `__aexit__` without `__aenter__` is not detected).
    _tokenless: ClassVar[bool] = False
    # True for a guard whose token is what `async with guard as x` binds (a timeout's
    # deadline scope); otherwise it binds the guard itself.
    _binds_token: ClassVar[bool] = False

    def enter_nowait(self) -> Any:
        """Admit a call without waiting: its token, or `MUST_WAIT`.

        Raises:
            ResilienceError: The guard rejects the call (its own subclass).
        """
        raise NotImplementedError

    async def enter(self) -> Any:
        """Wait for admission (after `enter_nowait` gave `MUST_WAIT`): the call's token.

        Raises:
            ResilienceError: The guard rejects the call (its own subclass).
        """
        raise NotImplementedError

    def exit(self, token: Any, error: BaseException | None) -> Any:
        """Record the outcome of the call admitted with `token`; never suppress `error`.

        Returns None, or `MUST_WAIT` when recording has to wait: call `finish` then.
        """
        raise NotImplementedError

    async def finish(self, token: Any, error: BaseException | None) -> None:
        """Record the outcome when `exit` answered `MUST_WAIT` (an awaited step)."""
        raise NotImplementedError

    @property
    def exit_may_wait(self) -> bool:
        """Whether `exit` may answer `MUST_WAIT`; a pipeline then runs the guard by `call`."""
        return False

    async def call(self, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` once the guard admits it, and record how it ended."""
        token = self.enter_nowait()
        if token is MUST_WAIT:
            token = await self.enter()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            misuse = _backend.misuse_of(exc, fn, self._kind)
            if misuse is not None:
                if self.exit(token, WITHDRAWN) is MUST_WAIT:
                    await self.finish(token, WITHDRAWN)
                raise misuse from misuse.__cause__  # None: as `from None`
            if self.exit(token, exc) is MUST_WAIT:
                await self.finish(token, exc)
            raise
        # unasync: sync-only: if type(result) is _backend.CoroutineType:
        # unasync: sync-only:     if self.exit(token, WITHDRAWN) is MUST_WAIT:
        # unasync: sync-only:         self.finish(token, WITHDRAWN)
        # unasync: sync-only:     _backend.check_result(result, fn, self._kind)
        if self.exit(token, None) is MUST_WAIT:
            await self.finish(token, None)
        return result

    async def __aenter__(self) -> Any:
        """Admit the block as one call (waiting if the guard makes calls wait)."""
        token = self.enter_nowait()
        if token is MUST_WAIT:
            token = await self.enter()
        if not self._tokenless:
            _held.set((self, token, _held.get()))
        return token if self._binds_token else self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Record the block's outcome like that of a call; never suppress its error."""
        token = None if self._tokenless else _release(self)
        if self.exit(token, exc) is MUST_WAIT:
            await self.finish(token, exc)

    @property
    def _kind(self) -> str:
        """The policy's public name, for error messages."""
        return type(self).__name__


def _release(guard: Guard) -> Any:
    """Take `guard`'s innermost link off this task's chain; return the token it holds.

    Raises:
        RuntimeError: `guard` holds no link here (an exit without its enter).
    """
    top = _held.get()
    if top is not None and top[0] is guard:  # blocks leave in order: the common case
        _held.set(top[2])
        return top[1]
    above: list[_Link] = []
    link = top
    while link is not None and link[0] is not guard:
        above.append(link)
        link = link[2]
    if link is None:
        raise RuntimeError(f"{guard!r} exited without a matching enter")
    below = link[2]
    for held, token, _ in reversed(above):  # the blocks entered after it, still open
        below = (held, token, below)
    _held.set(below)
    return link[1]
