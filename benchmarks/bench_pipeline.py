"""The full pipeline on the success path, against the loops' own primitives and a peer stack.

Cases:
- `asyncio.timeout + Semaphore` (asyncio) / `trio move_on_after + CapacityLimiter` (trio): the
  baseline, what a careful hand-written guard costs;
- `peer stack`: tenacity's retry + asyncio.Semaphore + asyncio.timeout + aiobreaker, the
  usual way to get the same protection from separate libraries (asyncio only);
- `ra.pipeline(Retry, CircuitBreaker, Bulkhead, Timeout)`, and the same with a Fallback.

Targets: the pipeline <= 1.5x the baseline, and >= 5x faster than the peer stack.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiobreaker
import tenacity
import trio

from resilient_async import backoff
from resilient_async._async.breaker import CircuitBreaker
from resilient_async._async.bulkhead import Bulkhead
from resilient_async._async.fallback import Fallback
from resilient_async._async.pipeline import pipeline
from resilient_async._async.retry import Retry
from resilient_async._async.timeout import Timeout

from .harness import Group


async def _work() -> int:
    return 1


def _bare() -> object:
    return _work


def _asyncio_baseline() -> object:
    semaphore = asyncio.Semaphore(10)

    async def op() -> int:
        async with semaphore, asyncio.timeout(10):
            return await _work()

    return op


def _trio_baseline() -> object:
    limiter = trio.CapacityLimiter(10)

    async def op() -> int:
        async with limiter:
            with trio.move_on_after(10):
                return await _work()
        return 0

    return op


def _peer_stack() -> object:
    semaphore = asyncio.Semaphore(10)
    breaker = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(seconds=30))

    @tenacity.retry(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_exponential())
    async def guarded() -> int:
        async with semaphore, asyncio.timeout(10):
            return await breaker.call_async(_work)  # type: ignore[no-any-return]

    return guarded


def _ra_pipeline() -> object:
    guarded = pipeline(
        Retry(attempts=3, backoff=backoff.exponential()),
        CircuitBreaker("bench"),
        Bulkhead(10),
        Timeout(10),
    )

    async def op() -> int:
        return await guarded.call(_work)

    return op


def _ra_pipeline_with_fallback() -> object:
    return pipeline(
        Fallback(0),
        Retry(attempts=3),
        CircuitBreaker("bench"),
        Bulkhead(10),
        Timeout(10),
    )(_work)


full = Group(
    "pipeline: Retry + CircuitBreaker + Bulkhead + Timeout, success path",
    baseline=("asyncio.timeout + Semaphore", "trio move_on_after + CapacityLimiter"),
    note="target (asyncio): <= 25x the floor, below asyncio.timeout alone (see the timeout group)",
)
full.add("bare await", _bare)
full.add("asyncio.timeout + Semaphore", _asyncio_baseline, backends=["asyncio"])
full.add("trio move_on_after + CapacityLimiter", _trio_baseline, backends=["trio"])
full.add("peer stack (tenacity+Semaphore+timeout+aiobreaker)", _peer_stack, backends=["asyncio"])
full.add("ra.pipeline", _ra_pipeline)
full.add("@ra.pipeline with Fallback", _ra_pipeline_with_fallback)

GROUPS = [full]
