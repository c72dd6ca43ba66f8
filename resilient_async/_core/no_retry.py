"""A call that must not be sent twice: one context variable, read by `Retry` and `Hedge`.

An integration that knows a call is unsafe to repeat (an HTTP POST, a streamed request body)
sets `NO_RETRY` around the policy's call. The call still passes every guard (breaker,
bulkhead, limiter, timeout) once, but a `Retry` stops at its first failure
(`stop_reason="not_retryable"`) and a `Hedge` starts no second attempt. The variable is read
only after a failure (or before a hedge), so it costs nothing on the success path.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["NO_RETRY"]

NO_RETRY: ContextVar[bool] = ContextVar("resilient_async.no_retry", default=False)
