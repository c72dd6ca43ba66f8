"""The in-process store: named state shared by the policies of one process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar, cast

__all__ = ["MemoryStore"]

T = TypeVar("T")


class MemoryStore:
    """Share policy state between instances in this process, by kind and name.

    Two breakers (or limiters, or budgets) built with the same `MemoryStore` and the same
    name use one state; their configurations must agree, or construction fails. Thread-safe:
    sync policies may share it across threads. Async and sync policies never share one state
    (the async drivers take no lock, and the two read different clocks): a policy of the
    other flavour with the same kind and name is refused at construction.

    Example:
        >>> store = MemoryStore()
        >>> # CircuitBreaker("payments", store=store) in two modules share one window
    """

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], tuple[Hashable, str | None, object]] = {}
        self._lock = threading.Lock()

    def shared(
        self,
        kind: str,
        name: str,
        config: Hashable,
        factory: Callable[[], T],
        *,
        flavour: str | None = None,
    ) -> T:
        """Return the state of `kind` named `name`, creating it with `factory` the first time.

        Args:
            kind: The primitive ("breaker", "limiter", "retry_budget").
            name: The policy's name.
            config: The settings every sharer must agree on.
            factory: Builds the state the first time.
            flavour: "async" or "sync" (None: either may share it).

        Raises:
            ValueError: A state of that kind and name exists with a different `config`, or
                belongs to policies of the other flavour.
        """
        key = (kind, name)
        with self._lock:
            found = self._states.get(key)
            if found is None:
                created = factory()
                self._states[key] = (config, flavour, created)
                return created
        existing_config, existing_flavour, existing = found
        if existing_flavour != flavour:
            raise ValueError(
                f"a {kind} named {name!r} in this store is used by {existing_flavour} "
                f"policies; {flavour} policies cannot share its in-process state (the async "
                "drivers take no lock and read the event loop's clock): give it another "
                "name, another MemoryStore, or share it through a RedisStore"
            )
        if existing_config != config:
            raise ValueError(
                f"a {kind} named {name!r} already exists in this store with another "
                f"configuration ({_describe(existing_config)}, asked for "
                f"{_describe(config)}); use another name or the same settings"
            )
        return cast(T, existing)

    def __len__(self) -> int:
        return len(self._states)


def _describe(config: Hashable) -> str:
    """Show a configuration as `key=value` pairs when it has names, else as it is."""
    if isinstance(config, Mapping):
        return ", ".join(f"{key}={value!r}" for key, value in config.items())
    fields = getattr(config, "_asdict", None)
    if fields is not None:
        return ", ".join(f"{key}={value!r}" for key, value in fields().items())
    return repr(config)
