"""`StructlogHook`: each event as one structlog event, its fields as key-values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._labels import import_extra

if TYPE_CHECKING:
    from . import Event

__all__ = ["StructlogHook"]

# Kinds ending so tell of a call that did not go as asked: logged at warning, the rest at
# info. A suffix rule rather than a list, so kinds added later get the right level too.
_WARNING_SUFFIXES = (".rejected", ".gave_up", ".expired", ".failed", ".degraded", ".overrun")


class StructlogHook:
    """A hook that logs each event as one structlog event.

    The structlog event is the kind (`"retry.scheduled"`), with `kind`, `policy` and each of
    the event's fields (`attempt`, `delay`, `exception`, ...) as key-values. Rejections,
    give-ups, expiries and failures log at warning; everything else at info.

    Args:
        logger: A structlog logger; `structlog.get_logger("resilient_async")` when omitted.
            A lazy logger (what `get_logger` returns) follows later changes to structlog's
            configuration but binds itself on every event unless structlog is configured
            with `cache_logger_on_first_use=True`; a bound one (`.bind()`) is faster.

    Raises:
        ImportError: structlog is not installed (`pip install resilient-async[structlog]`).
        TypeError: `logger` has no `info` and `warning` methods.

    Example:
        ```python
        import structlog
        from resilient_async.instrumentation import StructlogHook, set_hooks

        set_hooks([StructlogHook(structlog.get_logger("payments"))])
        ```
    """

    __slots__ = ("logger",)

    def __init__(self, logger: Any = None) -> None:
        structlog = import_extra("structlog", "StructlogHook", "structlog")
        if logger is None:
            logger = structlog.get_logger("resilient_async")
        elif not all(callable(getattr(logger, level, None)) for level in ("info", "warning")):
            raise TypeError(
                f"logger must be a structlog logger (with info and warning methods), got {logger!r}"
            )
        self.logger = logger

    def __repr__(self) -> str:
        return f"StructlogHook(logger={self.logger!r})"

    def __call__(self, event: Event) -> None:
        """Log `event` at the level its kind calls for."""
        kind: str = event.kind
        method = self.logger.warning if kind.endswith(_WARNING_SUFFIXES) else self.logger.info
        method(kind, kind=kind, policy=event.policy, **event.fields)
