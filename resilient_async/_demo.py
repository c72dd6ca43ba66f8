"""The demo: one workload against a flaky dependency, unprotected and guarded, side by side.

A simulated dependency goes through five phases: healthy, an error burst, a slowdown, an
outage (refused connections and hung calls) and a recovery. Two groups of clients send the
same workload at the same time, each to its own copy of the dependency (same seed, same
phases): one calls it plainly, with a client timeout as naive code would (5 s, or a quarter
of a short run); the other
calls it through

    pipeline(Fallback(value), Fallback.last_good, Retry(budget), CircuitBreaker, Bulkhead,
             Timeout)

The run ends with a table: answers, errors, fallbacks served, latency percentiles, calls that
reached the dependency, and the breaker's transitions.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import IO

import anyio

from . import backoff
from ._async.breaker import CircuitBreaker
from ._async.bulkhead import Bulkhead
from ._async.fallback import Fallback
from ._async.pipeline import pipeline
from ._async.retry import Retry, RetryBudget
from ._async.timeout import Timeout
from .instrumentation import Event, hooks

__all__ = ["demo_scenario", "run_demo"]

PHASES = (  # (name, share of the run)
    ("healthy", 0.2),
    ("error burst", 0.15),
    ("slowdown", 0.2),
    ("outage", 0.25),
    ("recovery", 0.2),
)
DEGRADED_ANSWER = "default"
NAIVE_TIMEOUT = 5.0


class Dependency:
    """A simulated remote service whose behaviour follows the phase of the run."""

    def __init__(self, seed: int, started: float, seconds: float) -> None:
        self._rng = random.Random(seed)
        self._started = started
        self._seconds = seconds
        self.calls = 0

    def phase(self) -> str:
        """Name the phase the run is in now."""
        elapsed = (anyio.current_time() - self._started) / self._seconds
        edge = 0.0
        for name, share in PHASES:
            edge += share
            if elapsed < edge:
                return name
        return PHASES[-1][0]

    async def fetch(self, item: int) -> str:
        """Answer for `item`, or fail, or hang, as the phase dictates."""
        self.calls += 1
        phase = self.phase()
        draw = self._rng.random()
        latency = self._rng.uniform(0.005, 0.03)
        if phase == "error burst" and draw < 0.5:
            await anyio.sleep(latency)
            raise ConnectionResetError("connection reset by peer")
        if phase == "slowdown" and draw < 0.6:
            latency = self._rng.uniform(0.4, 1.2)
        if phase == "outage":
            if draw < 0.85:
                await anyio.sleep(0.002)
                raise ConnectionRefusedError("connection refused")
            latency = math.inf  # hangs until the caller gives up
        if draw < 0.01:
            await anyio.sleep(latency)
            raise ConnectionError("sporadic failure")
        await anyio.sleep(latency)
        return f"item-{item}"


@dataclass
class Tally:
    """What one side of the demo saw."""

    answered: int = 0
    degraded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def record(self, latency: float, outcome: str | BaseException) -> None:
        self.latencies.append(latency)
        if isinstance(outcome, BaseException):
            self.errors[type(outcome).__name__] += 1
        elif outcome == DEGRADED_ANSWER or outcome.startswith("stale:"):
            self.degraded += 1
        else:
            self.answered += 1

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def share(self, count: int) -> str:
        return f"{100 * count / self.requests:5.1f}%" if self.requests else "   - "

    def slowest(self) -> str:
        return f"{max(self.latencies) * 1000:.0f} ms" if self.latencies else "-"

    def percentile(self, q: float) -> str:
        if len(self.latencies) < 2:
            return "-"
        cuts = statistics.quantiles(self.latencies, n=100, method="inclusive")
        return f"{cuts[int(q) - 1] * 1000:.0f} ms"


async def _client(call: object, tally: Tally, seed: int, until: float, think: float = 0.02) -> None:
    rng = random.Random(seed)
    while anyio.current_time() < until:
        item = rng.randrange(50)
        start = anyio.current_time()
        outcome: str | BaseException
        try:
            outcome = await call(item)  # type: ignore[operator]
        except Exception as exc:
            outcome = exc
        tally.record(anyio.current_time() - start, outcome)
        await anyio.sleep(think)


def _guarded(dependency: Dependency, seconds: float) -> tuple[object, CircuitBreaker, Bulkhead]:
    breaker = CircuitBreaker(
        "dependency",
        failure_rate=0.5,
        window=max(1.0, seconds / 10),
        window_type="time",
        min_calls=20,
        open_for=max(0.5, seconds / 20),
        half_open_calls=3,
        slow_call_duration=0.3,
        slow_call_rate=0.6,
    )
    bulkhead = Bulkhead(16, max_queue=16, max_wait=0.2, name="dependency")
    guarded = pipeline(
        Fallback(DEGRADED_ANSWER, name="default answer"),
        Fallback.last_good(ttl=seconds, name="last good"),
        Retry(
            attempts=3,
            backoff=backoff.exponential(0.05, max=0.5),
            budget=RetryBudget(ratio=0.2, min_per_second=5.0, ttl=5.0),
            name="retry",
        ),
        breaker,
        bulkhead,
        Timeout(0.5, name="per-attempt timeout"),
    )

    async def fetch(item: int) -> str:
        events: list[Event] = []
        with hooks(events.append):  # this request's events only: hooks are context-scoped
            answer = await guarded.call(dependency.fetch, item)
        if any(e.kind == "fallback.used" for e in events):
            return answer if answer == DEGRADED_ANSWER else f"stale:{answer}"
        return answer

    return fetch, breaker, bulkhead


async def demo_scenario(seconds: float, seed: int, clients: int, progress: IO[str] | None) -> str:
    """Run both sides of the demo on the running loop and return the final table."""
    started = anyio.current_time()
    until = started + seconds
    plain_dependency = Dependency(seed, started, seconds)
    guarded_dependency = Dependency(seed, started, seconds)
    plain, guarded = Tally(), Tally()
    transitions: list[Event] = []
    served: Counter[str] = Counter()

    def watch(event: Event) -> None:
        if event.kind == "breaker.state_changed":
            transitions.append(event)
        elif event.kind == "fallback.used":
            served[event.policy or "fallback"] += 1

    async def plain_fetch(item: int) -> str:
        with anyio.fail_after(min(NAIVE_TIMEOUT, seconds / 4)):
            return await plain_dependency.fetch(item)

    guarded_fetch, breaker, bulkhead = _guarded(guarded_dependency, seconds)

    with hooks(watch):
        async with anyio.create_task_group() as tg:
            for i in range(clients):
                tg.start_soon(_client, plain_fetch, plain, seed * 1000 + i, until)
                tg.start_soon(_client, guarded_fetch, guarded, seed * 1000 + i, until)
            if progress is not None:
                tg.start_soon(
                    _report_progress, progress, plain, guarded, breaker, guarded_dependency, until
                )

    lines = [
        "",
        f"{'':32}{'unprotected':>14}{'resilient_async':>18}",
        f"{'requests completed':32}{plain.requests:>14}{guarded.requests:>18}",
        f"{'answered by the dependency':32}{plain.share(plain.answered):>14}"
        f"{guarded.share(guarded.answered):>18}",
        f"{'answered by a fallback':32}{plain.share(plain.degraded):>14}"
        f"{guarded.share(guarded.degraded):>18}",
        f"{'errors seen by the caller':32}{plain.share(sum(plain.errors.values())):>14}"
        f"{guarded.share(sum(guarded.errors.values())):>18}",
        f"{'latency p50':32}{plain.percentile(50):>14}{guarded.percentile(50):>18}",
        f"{'latency p99':32}{plain.percentile(99):>14}{guarded.percentile(99):>18}",
        f"{'slowest request':32}{plain.slowest():>14}{guarded.slowest():>18}",
        f"{'calls that reached dependency':32}{plain_dependency.calls:>14}"
        f"{guarded_dependency.calls:>18}",
        "",
        f"breaker transitions: {len(transitions)}"
        + (": " + ", ".join(f"{e.new_state.name}" for e in transitions[:12]) if transitions else "")
        + (" ..." if len(transitions) > 12 else ""),
        f"fallbacks served: {dict(served) or 'none'}",
        f"bulkhead: {_bulkhead_summary(bulkhead)}",
        f"errors, unprotected: {dict(plain.errors) or 'none'}",
        f"errors, resilient_async: {dict(guarded.errors) or 'none'}",
    ]
    return "\n".join(lines)


async def _report_progress(
    out: IO[str],
    plain: Tally,
    guarded: Tally,
    breaker: CircuitBreaker,
    dependency: Dependency,
    until: float,
) -> None:
    last_plain = last_guarded = (0, 0)
    step = max(0.5, (until - anyio.current_time()) / 15)
    while anyio.current_time() < until:
        await anyio.sleep(step)
        now_plain = (plain.requests, plain.answered + plain.degraded)
        now_guarded = (guarded.requests, guarded.answered + guarded.degraded)
        print(
            f"[{dependency.phase():>11}] unprotected: {_rate(last_plain, now_plain)} ok, "
            f"{now_plain[0] - last_plain[0]:4d} done | resilient_async: "
            f"{_rate(last_guarded, now_guarded)} ok, {now_guarded[0] - last_guarded[0]:4d} done "
            f"| breaker {breaker.state.name}",
            file=out,
            flush=True,
        )
        last_plain, last_guarded = now_plain, now_guarded


def _bulkhead_summary(bulkhead: Bulkhead) -> str:
    m = bulkhead.metrics()
    return (
        f"{m.submitted} admitted or queued, {m.rejected} rejected, {m.failed} failed, "
        f"{m.cancelled} cancelled (limit {m.max_concurrent}, queue {m.max_queue})"
    )


def _rate(before: tuple[int, int], now: tuple[int, int]) -> str:
    done = now[0] - before[0]
    return f"{100 * (now[1] - before[1]) / done:5.1f}%" if done else "    - "


def run_demo(
    *,
    backend: str = "asyncio",
    seconds: float = 30.0,
    seed: int = 7,
    clients: int = 40,
    progress: IO[str] | None = None,
) -> str:
    """Run the demo and return the final table as text.

    Args:
        backend: "asyncio" or "trio".
        seconds: How long the workload runs.
        seed: Seed of the simulated dependency and the clients.
        clients: Concurrent clients on each side.
        progress: Where to print progress lines while it runs (None: silent).
    """
    return anyio.run(demo_scenario, seconds, seed, clients, progress, backend=backend)
