"""Timeout and deadline on the success path, against the loops' own timeouts and anyio."""

from __future__ import annotations

import asyncio

import anyio
import trio

import resilient_async as ra

from .harness import Group


async def _work() -> int:
    return 1


def _bare() -> object:
    return _work


def _asyncio_timeout() -> object:
    async def op() -> int:
        async with asyncio.timeout(10):
            return await _work()

    return op


def _trio_move_on_after() -> object:
    async def op() -> int:
        with trio.move_on_after(10):
            return await _work()
        return 0

    return op


def _anyio_fail_after() -> object:
    async def op() -> int:
        with anyio.fail_after(10):
            return await _work()

    return op


def _ra_timeout_call() -> object:
    timeout = ra.Timeout(10)

    async def op() -> int:
        return await timeout.call(_work)

    return op


def _ra_deadline() -> object:
    async def op() -> int:
        with ra.deadline(10):
            return await _work()

    return op


def _ra_timeout_decorated() -> object:
    return ra.Timeout(10)(_work)


timeouts = Group(
    "timeout: one guarded call, no expiry",
    baseline=("asyncio.timeout", "trio.move_on_after"),
    note=(
        "target (asyncio): <= 15x the floor, >= 3x faster than asyncio.timeout; "
        "trio: <= 1.0x trio.move_on_after"
    ),
)
timeouts.add("bare await", _bare)
timeouts.add("asyncio.timeout", _asyncio_timeout, backends=["asyncio"])
timeouts.add("trio.move_on_after", _trio_move_on_after, backends=["trio"])
timeouts.add("anyio.fail_after", _anyio_fail_after)
timeouts.add("ra.Timeout.call", _ra_timeout_call)
timeouts.add("@ra.Timeout", _ra_timeout_decorated)
timeouts.add("with ra.deadline", _ra_deadline)

GROUPS = [timeouts]
