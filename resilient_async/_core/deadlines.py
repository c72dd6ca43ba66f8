"""Where the effective deadline lives: one context variable, shared by every driver.

The value is an absolute time on the running driver's clock (the event loop's clock in async
code, `time.monotonic` in sync code), `math.inf` when no deadline is set. Because it is a
context variable it reaches child tasks, retry attempts, hedges, fallbacks and compensations,
and nothing set inside a task leaks to its parent.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

__all__ = ["DEADLINE"]

DEADLINE: ContextVar[float] = ContextVar("resilient_async.deadline", default=math.inf)
