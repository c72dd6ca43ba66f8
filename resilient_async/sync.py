"""The sync twin of resilient_async: the same policies for threaded, blocking code.

Generated from the async drivers (see `tools/unasync.py`), with the same names and
parameters. Policies guard plain functions (`policy.call(fn, *args)`, `@policy`); guards are
plain context managers; every policy is thread-safe. A sync deadline cannot interrupt a
blocking call: it bounds retries and waits, and raises `DeadlineExceeded` when a call returns
after it. Hedging, supervision and the loop exception handler are async only.
"""

from __future__ import annotations

from . import backoff as backoff
from ._exports import publish
from ._journal import SQLiteJournal as SQLiteJournal
from ._journal import compensation as compensation
from ._sync.breaker import BreakerMetrics as BreakerMetrics
from ._sync.breaker import BreakerState as BreakerState
from ._sync.breaker import CircuitBreaker as CircuitBreaker
from ._sync.bulkhead import Bulkhead as Bulkhead
from ._sync.bulkhead import BulkheadMetrics as BulkheadMetrics
from ._sync.bulkhead import KeyedBulkhead as KeyedBulkhead
from ._sync.fallback import Fallback as Fallback
from ._sync.fallback import degraded as degraded
from ._sync.pipeline import Pipeline as Pipeline
from ._sync.pipeline import pipeline as pipeline
from ._sync.policy import MUST_WAIT as MUST_WAIT
from ._sync.policy import Guard as Guard
from ._sync.policy import Policy as Policy
from ._sync.ratelimit import KeyedRateLimiter as KeyedRateLimiter
from ._sync.ratelimit import RateLimiter as RateLimiter
from ._sync.recovery import recover as recover
from ._sync.redis_store import RedisStore as RedisStore
from ._sync.retry import Attempt as Attempt
from ._sync.retry import Retry as Retry
from ._sync.retry import RetryBudget as RetryBudget
from ._sync.retry import RetryMetrics as RetryMetrics
from ._sync.retry import retry as retry
from ._sync.timeout import Timeout as Timeout
from ._sync.timeout import current_deadline as current_deadline
from ._sync.timeout import deadline as deadline
from ._sync.timeout import deadline_at as deadline_at
from ._sync.timeout import remaining as remaining
from ._sync.transaction import Transaction as Transaction
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
    "Attempt",
    "BreakerMetrics",
    "BreakerState",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadMetrics",
    "CircuitBreaker",
    "CircuitOpenError",
    "Classifier",
    "CompensationError",
    "DeadlineExceeded",
    "ErrorClass",
    "Fallback",
    "Guard",
    "KeyedBulkhead",
    "KeyedRateLimiter",
    "MUST_WAIT",
    "Pipeline",
    "Policy",
    "RateLimitedError",
    "RateLimiter",
    "RedisStore",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryMetrics",
    "SQLiteJournal",
    "SupervisorGaveUp",
    "Timeout",
    "Transaction",
    "backoff",
    "classify",
    "compensation",
    "context_of",
    "current_context",
    "current_deadline",
    "deadline",
    "deadline_at",
    "degraded",
    "error_context",
    "get_classifier",
    "pipeline",
    "recover",
    "remaining",
    "retry",
    "retry_after",
    "set_classifier",
    "use_classifier",
]

# Last, once every public name is bound: they report this module as theirs.
publish(__name__, globals())
