"""What every store offers the policies: one port per shared primitive, by kind and name."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Protocol, TypeVar, runtime_checkable

__all__ = ["StateStore"]

S = TypeVar("S")


@runtime_checkable
class StateStore(Protocol):
    """Where policies given a `store=` keep the state they share.

    `shared` returns the port of the primitive of `kind` named `name` (a breaker's, a token
    bucket's, a retry budget's). `factory` builds the memory port of the caller's flavour: a
    `MemoryStore` shares the one it built first; a distributed store keeps it as the local
    fallback of its own port. `flavour` is "async" or "sync": in-process state may only be
    shared within one flavour (their locks and clocks differ).
    """

    def shared(
        self,
        kind: str,
        name: str,
        config: Hashable,
        factory: Callable[[], S],
        *,
        flavour: str | None = None,
    ) -> S:
        """Return the port of `kind` named `name`, made with `factory` the first time."""
        ...
