"""Adaptive limits and CoDel load shedding, against simulated dependencies in virtual time.

Run it with `python -m benchmarks.adaptive [--backend asyncio|trio] [--plot DIR]`:

- convergence: a dependency with capacity 10 (a semaphore of 10, 10 ms a call) and 50
  clients that call it in a loop through `Bulkhead.adaptive(initial=100)`: the limit settles
  near the capacity. With a flat-latency dependency (10 ms whatever the load) and
  `initial=5`, it grows past what the 50 clients can use.
- overload: 200 clients, a bulkhead of 2 slots (queue of 200), 10 ms calls: FIFO order vs
  CoDel, latency of the calls admitted (from entering the bulkhead to finishing) and how
  many were shed.

`--plot DIR` writes `adaptive-limit.png` (both limit curves, first second) into DIR. The
test suite runs the same scenarios (tests/drivers/test_adaptive.py), shorter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio
import trio
import trio.testing

import resilient_async as ra
from resilient_async.testing import virtual_time_loop

T = TypeVar("T")

SERVICE_TIME = 0.010


@dataclass(frozen=True)
class LimitCurve:
    """How an adaptive limit moved: `(time, limit)` points, sampled every `step` seconds."""

    label: str
    points: list[tuple[float, int]]

    def settled(self, since: float) -> tuple[float, int, int]:
        """Mean, min and max of the limit from `since` seconds on."""
        limits = [limit for time, limit in self.points if time >= since]
        return statistics.fmean(limits), min(limits), max(limits)


@dataclass(frozen=True)
class OverloadResult:
    """Latency of admitted calls (seconds) and the count of shed callers, for one discipline."""

    queue: str
    latencies: list[float]
    shed: int

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def limit_curve(
    *,
    capacity: int | None,
    clients: int,
    initial: int,
    duration: float,
    algorithm: str = "gradient",
    step: float = 0.002,
) -> LimitCurve:
    """Drive `clients` looping callers through an adaptive bulkhead for `duration` seconds.

    `capacity=None` is a flat-latency dependency; otherwise calls beyond `capacity` queue
    inside the dependency (a semaphore), so latency grows with concurrency.
    """
    bulkhead = ra.Bulkhead.adaptive(initial=initial, max_queue=clients, algorithm=algorithm)
    inside = anyio.Semaphore(capacity) if capacity is not None else None

    async def dependency() -> None:
        if inside is None:
            await anyio.sleep(SERVICE_TIME)
            return
        async with inside:
            await anyio.sleep(SERVICE_TIME)

    start = anyio.current_time()
    points: list[tuple[float, int]] = []

    async def client() -> None:
        while anyio.current_time() - start < duration:
            await bulkhead.call(dependency)

    async def sampler() -> None:
        while (elapsed := anyio.current_time() - start) < duration:
            points.append((round(elapsed, 6), bulkhead.limit))
            await anyio.sleep(step)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sampler)
        for _ in range(clients):
            tg.start_soon(client)
    where = "flat latency" if capacity is None else f"capacity {capacity}"
    return LimitCurve(f"{where}, {clients} clients, initial {initial}", points)


async def overload(
    *, queue: str, clients: int = 200, slots: int = 2, duration: float = 5.0
) -> OverloadResult:
    """`clients` callers loop through `Bulkhead(slots, max_queue=clients)` for `duration` s."""
    bulkhead = ra.Bulkhead(slots, max_queue=clients, queue=queue)
    latencies: list[float] = []
    shed = 0
    start = anyio.current_time()

    async def client() -> None:
        nonlocal shed
        while anyio.current_time() - start < duration:
            entered = anyio.current_time()
            try:
                await bulkhead.call(anyio.sleep, SERVICE_TIME)
            except ra.BulkheadFullError:
                shed += 1
            else:
                latencies.append(anyio.current_time() - entered)

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(client)
    return OverloadResult(queue, latencies, shed)


def run_virtual(backend: str, fn: Callable[[], Awaitable[T]]) -> T:
    """Run `fn()` on `backend` in virtual time."""

    async def main() -> T:
        return await fn()

    if backend == "asyncio":
        with asyncio.Runner(loop_factory=virtual_time_loop) as runner:
            return runner.run(main())
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def plot(curves: list[LimitCurve], capacity: int, clients: int, path: Path) -> None:
    """Write both limit curves into one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.0), dpi=110)
    for curve in curves:
        times, limits = zip(*curve.points, strict=True)
        axes.step(times, limits, where="post", label=curve.label)
    axes.axhline(capacity, color="grey", linestyle=":", label=f"dependency capacity ({capacity})")
    axes.axhline(clients, color="grey", linestyle="--", label=f"clients ({clients})")
    axes.set_xlim(0, min(1.0, curves[0].points[-1][0]))
    axes.set_xlabel("virtual time (s); the limit stays where it is at 1 s")
    axes.set_ylabel("Bulkhead.adaptive limit")
    axes.set_title('Bulkhead.adaptive(algorithm="gradient"), 10 ms calls')
    axes.legend(loc="center right", fontsize="small")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.adaptive", description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    parser.add_argument("--plot", type=Path, help="write adaptive-limit.png into this directory")
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args(argv)
    duration = args.duration
    for backend in args.backend or ["asyncio", "trio"]:
        queueing = run_virtual(
            backend,
            lambda: limit_curve(capacity=10, clients=50, initial=100, duration=duration),
        )
        flat = run_virtual(
            backend, lambda: limit_curve(capacity=None, clients=50, initial=5, duration=duration)
        )
        print(f"## adaptive limit, gradient [{backend}] (virtual time, {duration:g} s)")
        for curve in (queueing, flat):
            mean, low, high = curve.settled(duration / 2)
            print(
                f"  {curve.label}: limit over the second half mean {mean:.1f}, "
                f"range {low}..{high}; final {curve.points[-1][1]}"
            )
        print(f"## overload: 200 clients, 2 slots, 10 ms calls [{backend}]")
        for queue in ("fifo", "codel"):
            result = run_virtual(backend, lambda q=queue: overload(queue=q, duration=duration))
            print(
                f"  {queue:5}: admitted {len(result.latencies)}, shed {result.shed}; latency of "
                f"admitted calls p50 {result.percentile(0.5) * 1000:.0f} ms, "
                f"p99 {result.percentile(0.99) * 1000:.0f} ms"
            )
        if args.plot and backend == (args.backend or ["asyncio"])[0]:
            with contextlib.suppress(FileExistsError):
                args.plot.mkdir(parents=True)
            plot([queueing, flat], 10, 50, args.plot / "adaptive-limit.png")
            print(f"  wrote {args.plot / 'adaptive-limit.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
