"""Bulkhead on the uncontended path, against the loops' own semaphores and limiters.

Every case runs one guarded `await` with a free slot. The targets (DESIGN.md): at most 1.2x
`asyncio.Semaphore` on asyncio, and no slower than `trio.CapacityLimiter` on trio.
`anyio.CapacityLimiter` is listed to show what a portable limiter costs.
"""

from __future__ import annotations

import asyncio

import anyio
import trio

import resilient_async as ra
from resilient_async._async.bulkhead import Bulkhead

from .harness import Group, Op

# Prefer the public name once it is exported; the driver module otherwise.
_Bulkhead = getattr(ra, "Bulkhead", Bulkhead)


async def _work() -> int:
    return 1


def _bare() -> Op:
    return _work


def _asyncio_semaphore() -> Op:
    semaphore = asyncio.Semaphore(10)

    async def op() -> int:
        async with semaphore:
            return await _work()

    return op


def _trio_capacity_limiter() -> Op:
    limiter = trio.CapacityLimiter(10)

    async def op() -> int:
        async with limiter:
            return await _work()

    return op


def _anyio_capacity_limiter() -> Op:
    limiter = anyio.CapacityLimiter(10)

    async def op() -> int:
        async with limiter:
            return await _work()

    return op


def _ra_bulkhead_call() -> Op:
    bulkhead = _Bulkhead(10, max_queue=10)

    async def op() -> int:
        return await bulkhead.call(_work)

    return op


def _ra_bulkhead_with() -> Op:
    bulkhead = _Bulkhead(10, max_queue=10)

    async def op() -> int:
        async with bulkhead:
            return await _work()

    return op


def _ra_bulkhead_codel_call() -> Op:
    bulkhead = _Bulkhead(10, max_queue=10, queue="codel")

    async def op() -> int:
        return await bulkhead.call(_work)

    return op


def _ra_bulkhead_adaptive_call() -> Op:
    bulkhead = _Bulkhead.adaptive(initial=10, max_queue=10)

    async def op() -> int:
        return await bulkhead.call(_work)

    return op


def _ra_bulkhead_decorated() -> Op:
    return _Bulkhead(10, max_queue=10)(_work)


bulkheads = Group(
    "bulkhead: one guarded call, a slot free",
    baseline=("asyncio.Semaphore", "trio.CapacityLimiter"),
    note="target <= 1.2x asyncio.Semaphore; <= 1.0x trio.CapacityLimiter",
)
bulkheads.add("bare await", _bare)
bulkheads.add("asyncio.Semaphore", _asyncio_semaphore, backends=["asyncio"])
bulkheads.add("trio.CapacityLimiter", _trio_capacity_limiter, backends=["trio"])
bulkheads.add("anyio.CapacityLimiter", _anyio_capacity_limiter)
bulkheads.add("ra.Bulkhead.call", _ra_bulkhead_call)
bulkheads.add("async with ra.Bulkhead", _ra_bulkhead_with)
bulkheads.add("@ra.Bulkhead", _ra_bulkhead_decorated)
bulkheads.add("ra.Bulkhead(queue='codel').call", _ra_bulkhead_codel_call)
bulkheads.add("ra.Bulkhead.adaptive().call", _ra_bulkhead_adaptive_call)

GROUPS = [bulkheads]
