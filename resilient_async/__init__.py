"""resilient_async: async-first fault tolerance for asyncio and trio.

Everything public is importable from here (`import resilient_async as ra`); the sync twin of
each dual-mode policy lives in `resilient_async.sync` under the same name.
"""

from __future__ import annotations

from . import backoff as backoff
from . import instrumentation as instrumentation
from . import stores as stores
from ._async.breaker import BreakerMetrics as BreakerMetrics
from ._async.breaker import BreakerState as BreakerState
from ._async.breaker import CircuitBreaker as CircuitBreaker
from ._async.bulkhead import Bulkhead as Bulkhead
from ._async.bulkhead import BulkheadMetrics as BulkheadMetrics
from ._async.bulkhead import KeyedBulkhead as KeyedBulkhead
from ._async.fallback import Fallback as Fallback
from ._async.fallback import degraded as degraded
from ._async.pipeline import Pipeline as Pipeline
from ._async.pipeline import pipeline as pipeline
from ._async.policy import MUST_WAIT as MUST_WAIT
from ._async.policy import Guard as Guard
from ._async.policy import Policy as Policy
from ._async.ratelimit import KeyedRateLimiter as KeyedRateLimiter
from ._async.ratelimit import RateLimiter as RateLimiter
from ._async.recovery import recover as recover
from ._async.retry import Attempt as Attempt
from ._async.retry import Retry as Retry
from ._async.retry import RetryBudget as RetryBudget
from ._async.retry import RetryMetrics as RetryMetrics
from ._async.retry import retry as retry
from ._async.timeout import Timeout as Timeout
from ._async.timeout import current_deadline as current_deadline
from ._async.timeout import deadline as deadline
from ._async.timeout import deadline_at as deadline_at
from ._async.timeout import remaining as remaining
from ._async.transaction import Transaction as Transaction
from ._exports import publish
from ._journal import SQLiteJournal as SQLiteJournal
from ._journal import compensation as compensation
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
from .handlers import ExceptionHandler as ExceptionHandler
from .handlers import install_exception_handler as install_exception_handler
from .handlers import run_reported as run_reported
from .hedging import Hedge as Hedge
from .supervision import ChildInfo as ChildInfo
from .supervision import ChildState as ChildState
from .supervision import Supervisor as Supervisor

__all__ = [
    "Attempt",
    "BreakerMetrics",
    "BreakerState",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadMetrics",
    "ChildInfo",
    "ChildState",
    "CircuitBreaker",
    "CircuitOpenError",
    "Classifier",
    "CompensationError",
    "DeadlineExceeded",
    "ErrorClass",
    "ExceptionHandler",
    "Fallback",
    "Guard",
    "Hedge",
    "KeyedBulkhead",
    "KeyedRateLimiter",
    "MUST_WAIT",
    "Pipeline",
    "Policy",
    "RateLimitedError",
    "RateLimiter",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryMetrics",
    "SQLiteJournal",
    "Supervisor",
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
    "install_exception_handler",
    "instrumentation",
    "pipeline",
    "recover",
    "remaining",
    "retry",
    "retry_after",
    "run_reported",
    "set_classifier",
    "stores",
    "use_classifier",
]

# Last, once every public name is bound: they report this module as theirs.
publish(__name__, globals())
