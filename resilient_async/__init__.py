"""resilient_async: async-first fault tolerance for asyncio and trio.

Everything public is importable from here (`import resilient_async as ra`); the sync twin of
each dual-mode policy lives in `resilient_async.sync` under the same name.
"""

from __future__ import annotations

from . import instrumentation as instrumentation
from . import stores as stores
from ._async.timeout import Timeout as Timeout
from ._async.timeout import current_deadline as current_deadline
from ._async.timeout import deadline as deadline
from ._async.timeout import deadline_at as deadline_at
from ._async.timeout import remaining as remaining
from .classify import Classifier as Classifier
from .classify import ErrorClass as ErrorClass
from .classify import classify as classify
from .classify import get_classifier as get_classifier
from .classify import retry_after as retry_after
from .classify import set_classifier as set_classifier
from .classify import use_classifier as use_classifier
from .context import context_of as context_of
from .context import current_context as current_context
from .context import error_context as error_context
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
    "Classifier",
    "CompensationError",
    "DeadlineExceeded",
    "ErrorClass",
    "RateLimitedError",
    "ResilienceError",
    "SupervisorGaveUp",
    "Timeout",
    "classify",
    "context_of",
    "current_context",
    "current_deadline",
    "deadline",
    "deadline_at",
    "error_context",
    "get_classifier",
    "instrumentation",
    "remaining",
    "retry_after",
    "set_classifier",
    "stores",
    "use_classifier",
]
