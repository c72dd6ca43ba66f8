"""What a `Retry` counts over its life: the frozen snapshot `Retry.metrics()` returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["RetryMetrics"]


@dataclass(frozen=True, slots=True)
class RetryMetrics:
    """A frozen snapshot of a `Retry`'s counters, from `Retry.metrics()`.

    Attributes:
        calls: Retry loops started (calls through the policy, decorated calls, `attempts()`
            loops).
        attempts: Attempts made by all of them (`calls + retries`).
        retries: Attempts after the first (each followed a failure or a rejected result).
        gave_up: Loops that stopped without a success, by stop reason (`"attempts"`,
            `"not_retryable"`, `"deadline"`, `"budget"`, `"retry_after"`,
            `"circuit_open"`); a loop that ran out of attempts on a rejected result
            (`on_result`) counts under `"attempts"` too.
        budget_refusals: Retries a `RetryBudget` refused (each also gave up, as `"budget"`).
    """

    calls: int
    attempts: int
    retries: int
    gave_up: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    budget_refusals: int = 0
