"""Soak: the figures RELIABILITY.md asks for, per backend.

- 100k calls through `pipeline(Fallback, Retry, CircuitBreaker, Bulkhead, Timeout)` with 10%
  injected faults (errors, slow calls, hangs) and random caller cancellations, in virtual
  time: leaked permits, pending tasks, never-retrieved exceptions, peak concurrency.
- 1M calls through a breaker and a rate limiter: growth of the resident set size.

Run it with `python -m benchmarks.soak [--calls N] [--memory-calls N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
from typing import Any

import anyio
import trio
import trio.testing

import resilient_async as ra
from resilient_async import backoff
from resilient_async.testing import virtual_time_loop


def _rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * 4


async def _pipeline_soak(calls: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    breaker = ra.CircuitBreaker("soak", window=100, min_calls=50, open_for=1)
    bulkhead = ra.Bulkhead(32, max_queue=64)
    guarded = ra.pipeline(
        ra.Fallback("fallback"),
        ra.Retry(attempts=2, backoff=backoff.constant(0.05)),
        breaker,
        bulkhead,
        ra.Timeout(0.5),
    )
    state = {"concurrent": 0, "peak": 0}
    outcomes = {"ok": 0, "fallback": 0, "cancelled": 0, "rejected": 0}

    async def dependency() -> str:
        state["concurrent"] += 1
        state["peak"] = max(state["peak"], state["concurrent"])
        try:
            draw = rng.random()
            if draw < 0.05:
                raise ConnectionError("injected")
            if draw < 0.08:
                await anyio.sleep(2)  # slower than the timeout
            if draw < 0.10:
                await anyio.sleep(3600)  # hangs until the timeout cancels it
            await anyio.sleep(rng.uniform(0.001, 0.02))
            return "ok"
        finally:
            state["concurrent"] -= 1

    async def client() -> None:
        with anyio.CancelScope() as scope:
            if rng.random() < 0.05:
                scope.deadline = anyio.current_time() + rng.uniform(0, 0.1)
            try:
                result = await guarded.call(dependency)
            except ra.ResilienceError:
                outcomes["rejected"] += 1
                return
            outcomes["ok" if result == "ok" else "fallback"] += 1
        if scope.cancelled_caught:
            outcomes["cancelled"] += 1

    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(client)
            await anyio.sleep(0.002)  # 500 calls a second: about half the bulkhead busy
    metrics = bulkhead.metrics()
    return {
        **outcomes,
        "leaked slots": bulkhead.in_use,
        "queued at end": bulkhead.queued,
        "ledger balanced": metrics.submitted
        == metrics.rejected + metrics.completed + metrics.failed + metrics.cancelled,
        "probes in flight": breaker.metrics().probes_in_flight,
        "dependency still running": state["concurrent"],
        "peak concurrency (limit 32)": state["peak"],
    }


async def _memory_soak(calls: int) -> dict[str, Any]:
    breaker = ra.CircuitBreaker("memory", window=100)
    limiter = ra.RateLimiter(1e12, burst=1e12)

    async def ok() -> int:
        return 1

    guarded = ra.pipeline(breaker, limiter)
    for _ in range(10_000):  # warm up caches and free lists
        await guarded.call(ok)
    gc.collect()
    before = _rss_kib()
    for _ in range(calls):
        await guarded.call(ok)
    gc.collect()
    return {"calls": calls, "RSS growth (KiB)": _rss_kib() - before}


def _run(backend: str, fn: Any, *args: Any) -> Any:
    if backend == "asyncio":
        errors: list[dict[str, Any]] = []

        def factory() -> asyncio.AbstractEventLoop:
            loop = virtual_time_loop()
            loop.set_exception_handler(lambda _loop, context: errors.append(context))
            return loop

        with asyncio.Runner(loop_factory=factory) as runner:
            result = runner.run(fn(*args))
            pending = [t for t in asyncio.all_tasks(runner.get_loop()) if not t.done()]
        gc.collect()
        return {**result, "pending tasks": len(pending), "loop errors": len(errors)}
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(fn, *args, clock=clock)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--memory-calls", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for backend in ("asyncio", "trio"):
        print(f"## pipeline soak, {args.calls} calls [{backend}]", flush=True)
        for key, value in _run(backend, _pipeline_soak, args.calls, args.seed).items():
            print(f"  {key:32} {value}")
        print(f"## memory, {args.memory_calls} calls [{backend}]", flush=True)
        for key, value in _run(backend, _memory_soak, args.memory_calls).items():
            print(f"  {key:32} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
