"""The in-process store: named state shared by the policies of one process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import TypeVar, cast

__all__ = ["MemoryStore"]

T = TypeVar("T")


class MemoryStore:
    """Share policy state between instances in this process, by kind and name.

    Two breakers (or limiters, or budgets) built with the same `MemoryStore` and the same
    name use one state object; their configurations must agree, or construction fails.
    Thread-safe: the sync policies may share it across threads.

    Example:
        >>> store = MemoryStore()
        >>> # CircuitBreaker("payments", store=store) in two modules share one window
    """

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], tuple[Hashable, object]] = {}
        self._lock = threading.Lock()

    def shared(self, kind: str, name: str, config: Hashable, factory: Callable[[], T]) -> T:
        """Return the state of `kind` named `name`, creating it with `factory` the first time.

        Raises:
            ValueError: A state of that kind and name exists with a different `config`.
        """
        key = (kind, name)
        with self._lock:
            found = self._states.get(key)
            if found is None:
                created = factory()
                self._states[key] = (config, created)
                return created
        existing_config, existing = found
        if existing_config != config:
            raise ValueError(
                f"a {kind} named {name!r} already exists in this store with another "
                f"configuration ({existing_config!r}); use another name or the same settings"
            )
        return cast(T, existing)

    def __len__(self) -> int:
        return len(self._states)
