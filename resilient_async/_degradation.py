"""The one "running as a fallback" flag, shared by the async and the sync `Fallback`.

A single contextvar, so `degraded()` (exported at the top level and by the sync module) reads
the same flag whichever flavour of fallback set it.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["DEGRADED", "degraded"]

DEGRADED: ContextVar[bool] = ContextVar("resilient_async.degraded", default=False)


def degraded() -> bool:
    """Return True inside a fallback handler and anything it calls.

    Downstream code can use it to shed optional work (skip a recommendation call, serve a
    smaller page) when it already runs as a fallback.
    """
    return DEGRADED.get()
