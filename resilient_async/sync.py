"""The sync twin of resilient_async: the same policies for threaded, blocking code.

Generated from the async drivers (see `tools/unasync.py`), with the same names and
parameters. Policies guard plain functions (`policy.call(fn, *args)`, `@policy`); guards are
plain context managers; every policy is thread-safe. A sync deadline cannot interrupt a
blocking call: it bounds retries and waits, and raises `DeadlineExceeded` when a call returns
after it.
"""

from __future__ import annotations

from ._sync.timeout import Timeout as Timeout
from ._sync.timeout import current_deadline as current_deadline
from ._sync.timeout import deadline as deadline
from ._sync.timeout import deadline_at as deadline_at
from ._sync.timeout import remaining as remaining
from .classify import Classifier as Classifier
from .classify import ErrorClass as ErrorClass
from .classify import classify as classify
from .classify import retry_after as retry_after
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

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "Classifier",
    "CompensationError",
    "DeadlineExceeded",
    "ErrorClass",
    "RateLimitedError",
    "ResilienceError",
    "Timeout",
    "classify",
    "context_of",
    "current_context",
    "current_deadline",
    "deadline",
    "deadline_at",
    "error_context",
    "remaining",
    "retry_after",
    "use_classifier",
]
