"""resilient_async: async-first fault tolerance for asyncio and trio."""

from __future__ import annotations

from .errors import BulkheadFullError as BulkheadFullError
from .errors import CircuitOpenError as CircuitOpenError
from .errors import CompensationError as CompensationError
from .errors import DeadlineExceeded as DeadlineExceeded
from .errors import RateLimitedError as RateLimitedError
from .errors import ResilienceError as ResilienceError
from .errors import SupervisorGaveUp as SupervisorGaveUp

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "CompensationError",
    "DeadlineExceeded",
    "RateLimitedError",
    "ResilienceError",
    "SupervisorGaveUp",
]
