"""The guarded side's pipeline, each policy with one job, and the unprotected side's timeout."""

from __future__ import annotations

from ... import backoff
from ..._async.breaker import CircuitBreaker
from ..._async.fallback import Fallback
from ..._async.pipeline import Pipeline, pipeline
from ..._async.retry import Retry, RetryBudget
from ..._async.timeout import Timeout
from ...classify import ErrorClass
from ...hedging import Hedge
from ..repeatable import SeededBackoff
from .service import RequestRandom

__all__ = [
    "ATTEMPT_TIMEOUT",
    "DEFAULT_ANSWER",
    "HEDGE_DELAY",
    "REQUEST_DEADLINE",
    "build_pipeline",
    "naive_timeout",
]

DEFAULT_ANSWER = "default"
NAIVE_TIMEOUT = 5.0
REQUEST_DEADLINE = 1.0
ATTEMPT_TIMEOUT = 0.5
HEDGE_DELAY = 0.1


def naive_timeout(seconds: float) -> float:
    """The unprotected clients' timeout for a run of `seconds`."""
    return min(NAIVE_TIMEOUT, seconds / 4)


def build_pipeline(seconds: float, seed: int = 7) -> tuple[Pipeline, CircuitBreaker]:
    """Build the guarded side's pipeline; its time scales follow the length of the run.

    `seed` seeds the retry's jitter, so that a run repeats for a seed.
    """
    breaker = CircuitBreaker(
        "dependency",
        failure_rate=0.5,
        window=max(0.1, seconds / 30),
        window_type="time",
        min_calls=20,
        open_for=max(0.1, seconds / 30),
        half_open_calls=1,
    )
    guarded = pipeline(
        Fallback(DEFAULT_ANSWER, name="default answer"),
        Fallback.last_good(ttl=seconds, name="last good answer"),
        Timeout(REQUEST_DEADLINE, name="request deadline"),
        Retry(
            attempts=3,
            # An open breaker (THROTTLED) is not retried: the fallbacks answer at once.
            on={ErrorClass.TRANSIENT, ErrorClass.TIMEOUT},
            backoff=SeededBackoff(backoff.exponential(0.01, max=0.1), RequestRandom(seed)),
            budget=RetryBudget(ratio=0.5, min_per_second=10.0, ttl=5.0),
            name="retry",
        ),
        breaker,
        # Only a slow attempt starts a hedge; an error is the retry's job.
        Hedge(HEDGE_DELAY, max_attempts=3, on=ErrorClass.TIMEOUT, name="hedge"),
        Timeout(ATTEMPT_TIMEOUT, name="attempt timeout"),
    )
    return guarded, breaker
