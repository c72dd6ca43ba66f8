"""The base every policy shares: `call`, and the decorator form built on it."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from . import _backend

__all__ = ["Policy"]

P = ParamSpec("P")
T = TypeVar("T")


class Policy:
    """A reusable, shareable guard around calls.

    Subclasses implement `call`; this class turns it into a decorator that keeps the wrapped
    function's signature (ParamSpec) and `functools.wraps` metadata. Per-call state never lives
    on the policy, so one instance may guard any number of concurrent calls.
    """

    __slots__ = ()

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` under this policy and return its result."""
        raise NotImplementedError

    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
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
