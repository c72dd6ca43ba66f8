"""The demo: one workload against a failing dependency, unprotected and guarded, side by side.

A simulated dependency goes through five phases: healthy; flaky (a quarter of the calls fail
at once); slow (a fifth of the calls take 1 to 3 s); down (every call is refused or hangs);
healthy again. Two groups of clients send the same workload at the same time, each group to
its own copy of the dependency (same seed, same phases):

- unprotected clients call it plainly, with a 5 s client timeout, as naive code would;
- the other clients call it through one pipeline, each policy with one job:

      pipeline(Fallback(default), Fallback.last_good,   # answer something while it is down
               Timeout(1.0),                            # a request's whole budget
               Retry(attempts=3, budget),               # absorb transient errors
               CircuitBreaker,                          # stop calling it while it is down
               Hedge(0.1),                              # a second attempt for a slow reply
               Timeout(0.5))                            # bound each attempt

While it runs, a live view shows the phase and both sides' counters (updated in place on a
terminal, one plain line per step otherwise). The run ends with the final report: totals,
then phase by phase what each side saw and what the library did.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import IO, Any

import anyio

from . import backoff
from ._async.breaker import BreakerState, CircuitBreaker
from ._async.fallback import Fallback
from ._async.pipeline import Pipeline, pipeline
from ._async.retry import Retry, RetryBudget
from ._async.timeout import Timeout
from .classify import ErrorClass
from .hedging import Hedge
from .instrumentation import Event, hooks

__all__ = ["SeededBackoff", "demo_scenario", "run_demo"]

# (name, share of the run, what the dependency does then)
PHASES = (
    ("healthy", 0.2, "answers in 10-30 ms"),
    ("flaky", 0.15, "25% of calls fail at once (connection reset)"),
    ("slow", 0.2, "20% of calls take 1-3 s"),
    ("down", 0.25, "every call is refused or hangs"),
    ("recovered", 0.2, "answers in 10-30 ms again"),
)
_PHASE_TEXT = {name: what for name, _, what in PHASES}
DEFAULT_ANSWER = "default"
NAIVE_TIMEOUT = 5.0
REQUEST_DEADLINE = 1.0
ATTEMPT_TIMEOUT = 0.5
HEDGE_DELAY = 0.1
THINK = 0.05  # each client's pause between two requests


class RequestRandom(random.Random):
    """Random draws from the current request's own generator, so that a seed gives one run.

    Concurrent requests finish in an order the event loop chooses (trio shuffles it on
    purpose; asyncio cancels a task group's tasks in set order); one generator shared by
    all of them would hand each call a draw that depends on that order. Each request
    instead gets a generator seeded by its client and its number (see `_client`), and
    every draw made for it (its attempts' fates, its retries' jitter) comes from that one.
    """

    def __init__(self, fallback_seed: int) -> None:
        super().__init__(fallback_seed)

    def random(self) -> float:
        """Draw from the current request's generator (this one outside a request)."""
        current = _REQUEST_RNG.get()
        return super().random() if current is None else current.random()


_REQUEST_RNG: ContextVar[random.Random | None] = ContextVar("demo_request_rng", default=None)


class Dependency:
    """A simulated remote service whose behaviour follows the phase of the run."""

    def __init__(self, seed: int, started: float, seconds: float) -> None:
        self._rng = RequestRandom(seed)
        self._started = started
        self._seconds = seconds
        self.calls: Counter[str] = Counter()

    def phase(self, now: float | None = None) -> str:
        """Name the phase the run is in at `now` (default: the loop's time now)."""
        if now is None:
            now = anyio.current_time()
        return phase_at((now - self._started) / self._seconds)

    async def fetch(self, item: int) -> str:
        """Answer for `item`, or fail, or hang, as the phase dictates."""
        phase = self.phase()
        self.calls[phase] += 1
        draw = self._rng.random()
        latency = self._rng.uniform(0.01, 0.03)
        if phase == "flaky" and draw < 0.25:
            await anyio.sleep(0.005)
            raise ConnectionResetError("connection reset by peer")
        if phase == "slow" and draw < 0.2:
            latency = self._rng.uniform(1.0, 3.0)
        if phase == "down":
            if draw < 0.8:
                await anyio.sleep(0.002)
                raise ConnectionRefusedError("connection refused")
            latency = math.inf  # hangs until the caller gives up
        await anyio.sleep(latency)
        return f"item-{item}"


class SeededBackoff(backoff.Backoff):
    """A schedule whose jitter comes from the demo's seeded generator, so runs repeat.

    `Retry` draws jitter from a process-wide generator; the demo wants the same figures for
    the same `--seed`, so it hands its own.
    """

    __slots__ = ("_inner", "_rng")

    def __init__(self, inner: backoff.Backoff, rng: random.Random) -> None:
        self._inner = inner
        self._rng = rng

    @property
    def max(self) -> float | None:
        """The wrapped schedule's cap."""
        return self._inner.max

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Return the wrapped schedule's delay, drawn from the seeded generator."""
        return self._inner.delay(attempt, previous, self._rng)


def phase_at(share: float) -> str:
    """Name the phase at `share` (0 to 1) of the run."""
    edge = 0.0
    for name, length, _ in PHASES:
        edge += length
        if share < edge:
            return name
    return PHASES[-1][0]


def phase_bounds(seconds: float) -> dict[str, tuple[float, float]]:
    """Map each phase to its (start, end) in seconds from the start of the run."""
    bounds, edge = {}, 0.0
    for name, length, _ in PHASES:
        bounds[name] = (edge * seconds, (edge + length) * seconds)
        edge += length
    return bounds


@dataclass
class Tally:
    """What one side saw, overall or during one phase."""

    fresh: int = 0
    fallback: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def record(self, latency: float, outcome: str) -> None:
        self.latencies.append(latency)
        if outcome == "fresh":
            self.fresh += 1
        elif outcome == "fallback":
            self.fallback += 1
        else:
            self.errors += 1

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def share(self, count: int) -> str:
        return f"{100 * count / self.requests:.1f}%" if self.requests else "-"

    def percentile(self, q: float) -> float:
        return _percentile(self.latencies, q)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.0f} ms"


@dataclass
class Side:
    """One group of clients: its totals, its tallies per phase, its recent latencies."""

    name: str
    total: Tally = field(default_factory=Tally)
    phases: dict[str, Tally] = field(default_factory=dict)
    recent: list[tuple[float, float]] = field(default_factory=list)  # (finished at, latency)

    def record(self, phase: str, finished: float, latency: float, outcome: str) -> None:
        self.total.record(latency, outcome)
        self.phases.setdefault(phase, Tally()).record(latency, outcome)
        self.recent.append((finished, latency))

    def recent_p99(self, now: float, span: float) -> float:
        self.recent = [(t, lat) for t, lat in self.recent if t >= now - span]
        return _percentile([lat for _, lat in self.recent], 99)


@dataclass
class Actions:
    """What the library did, counted per phase from its events."""

    retries: Counter[str] = field(default_factory=Counter)
    hedges: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    transitions: list[tuple[float, BreakerState]] = field(default_factory=list)


async def _client(
    call: Callable[[int], Awaitable[str]],
    side: Side,
    dependency: Dependency,
    seed: int,
    until: float,
) -> None:
    rng = random.Random(seed)
    number = 0
    while anyio.current_time() < until:
        item = rng.randrange(50)
        start = anyio.current_time()
        number += 1
        # String seeds are hashed the same way in every process, whatever PYTHONHASHSEED.
        _REQUEST_RNG.set(random.Random(f"{seed}/{number}"))
        try:
            outcome = await call(item)
        except Exception:
            outcome = "error"
        now = anyio.current_time()
        side.record(dependency.phase(start), now, now - start, outcome)
        await anyio.sleep(THINK)


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


async def demo_scenario(
    seconds: float,
    seed: int,
    clients: int,
    progress: IO[str] | None,
    *,
    live: bool | None = None,
    backend: str = "",
) -> str:
    """Run both sides of the demo on the running loop and return the final report.

    Args:
        seconds: Length of the run.
        seed: Seed of the simulated dependency and of the clients.
        clients: Concurrent clients on each side.
        progress: Where the live view goes (None: nowhere).
        live: Redraw the view in place (default: when `progress` is a terminal).
        backend: Named in the report.
    """
    started = anyio.current_time()
    until = started + seconds
    plain_dependency = Dependency(seed, started, seconds)
    guarded_dependency = Dependency(seed, started, seconds)
    plain, guarded = Side("unprotected"), Side("resilient_async")
    actions = Actions()
    guarded_pipeline, breaker = build_pipeline(seconds, seed)

    def watch(event: Event) -> None:
        phase = guarded_dependency.phase()
        if event.kind == "retry.scheduled":
            actions.retries[phase] += 1
        elif event.kind == "hedge.started":
            actions.hedges[phase] += 1
        elif event.kind == "breaker.rejected":
            actions.rejected[phase] += 1
        elif event.kind == "breaker.state_changed":
            actions.transitions.append((anyio.current_time() - started, event.new_state))

    async def plain_fetch(item: int) -> str:
        with anyio.fail_after(_naive(seconds)):
            await plain_dependency.fetch(item)
        return "fresh"

    async def guarded_fetch(item: int) -> str:
        fallbacks: list[Event] = []
        with hooks(fallbacks.append):  # this request's events only: hooks are context-scoped
            await guarded_pipeline.call(guarded_dependency.fetch, item)
        return "fallback" if any(e.kind == "fallback.used" for e in fallbacks) else "fresh"

    if progress is not None:
        print(_introduction(seconds, clients, backend, seed), file=progress, flush=True)
    with hooks(watch):
        async with anyio.create_task_group() as tg:
            for i in range(clients):
                tg.start_soon(_client, plain_fetch, plain, plain_dependency, seed * 1000 + i, until)
                tg.start_soon(
                    _client, guarded_fetch, guarded, guarded_dependency, seed * 1000 + i, until
                )
            if progress is not None:
                view = LiveView(progress, seconds, started, plain, guarded, breaker, actions)
                tg.start_soon(view.run, progress.isatty() if live is None else live)
    return _report(
        seconds,
        clients,
        backend,
        seed,
        plain,
        guarded,
        actions,
        plain_dependency,
        guarded_dependency,
    )


def _introduction(seconds: float, clients: int, backend: str, seed: int) -> str:
    bounds = phase_bounds(seconds)
    lines = [
        f"resilient_async demo: {clients} clients on each side for {seconds:g} s"
        + (f" on {backend}" if backend else "")
        + f", seed {seed}.",
        "A simulated dependency goes through five phases:",
        *(
            f"  {name:<10} {bounds[name][0]:5.1f}-{bounds[name][1]:5.1f} s  {what}"
            for name, _, what in PHASES
        ),
        f"unprotected:     each client calls it directly, with a {_naive(seconds):g} s timeout.",
        "resilient_async: each client calls it through pipeline(Fallback, Fallback.last_good,",
        f"                 Timeout({REQUEST_DEADLINE:g}), Retry(attempts=3, budget), "
        f"CircuitBreaker, Hedge({HEDGE_DELAY:g}), Timeout({ATTEMPT_TIMEOUT:g})).",
        "",
    ]
    return "\n".join(lines)


def _naive(seconds: float) -> float:
    return min(NAIVE_TIMEOUT, seconds / 4)


class LiveView:
    """Progress and counters while the demo runs: redrawn in place, or one line per step."""

    def __init__(
        self,
        out: IO[str],
        seconds: float,
        started: float,
        plain: Side,
        guarded: Side,
        breaker: CircuitBreaker,
        actions: Actions,
    ) -> None:
        self._out = out
        self._seconds = seconds
        self._started = started
        self._plain = plain
        self._guarded = guarded
        self._breaker = breaker
        self._actions = actions
        self._drawn = 0

    async def run(self, in_place: bool) -> None:
        """Draw until the run ends: every 0.25 s in place, else about 15 lines in all."""
        step = 0.25 if in_place else max(0.5, self._seconds / 15)
        until = self._started + self._seconds
        if not in_place:
            print(
                f"Every {step:g} s: errors and fallbacks so far, p99 of the last "
                f"{self._span():g} s.",
                file=self._out,
            )
        while (now := anyio.current_time()) < until:
            await anyio.sleep(min(step, max(until - now, 0.0)))
            lines = self._frame(in_place)
            if in_place and self._drawn:
                self._out.write(f"\x1b[{self._drawn}F")  # back to the top of the last frame
            self._out.write(
                "".join(f"\x1b[2K{line}\n" if in_place else f"{line}\n" for line in lines)
            )
            self._out.flush()
            self._drawn = len(lines)
        if in_place:
            self._out.write("\n")

    def _span(self) -> float:
        return 1.0 if self._seconds >= 10 else self._seconds / 10

    def _frame(self, in_place: bool) -> list[str]:
        now = anyio.current_time()
        elapsed = min(now - self._started, self._seconds)
        phase = phase_at(elapsed / self._seconds)
        span = self._span()
        plain_p99 = self._plain.recent_p99(now, span)
        guarded_p99 = self._guarded.recent_p99(now, span)
        state = self._breaker.state.name
        if not in_place:
            plain, guarded = self._plain.total, self._guarded.total
            return [
                f"{elapsed:5.1f} s {phase:<9} | unprotected: {plain.share(plain.errors)} errors, "
                f"p99 {_ms(plain_p99)} | resilient_async: {guarded.share(guarded.errors)} "
                f"errors, {guarded.share(guarded.fallback)} fallbacks, p99 {_ms(guarded_p99)}, "
                f"breaker {state}"
            ]
        done = int(30 * elapsed / self._seconds)
        a = self._actions
        return [
            f"{elapsed:5.1f} s / {self._seconds:g} s [{'#' * done}{'.' * (30 - done)}] "
            f"{phase}: {_PHASE_TEXT[phase]}",
            f"{'':17}{'requests':>10}{'answered':>10}{'fallback':>10}{'errors':>10}"
            f"{'p99, last ' + format(span, 'g') + ' s':>18}",
            _live_row(self._plain, plain_p99),
            _live_row(self._guarded, guarded_p99),
            f"breaker {state:<9} retries {sum(a.retries.values()):,}   hedges "
            f"{sum(a.hedges.values()):,}   calls rejected by the breaker "
            f"{sum(a.rejected.values()):,}",
        ]


def _live_row(side: Side, p99: float) -> str:
    t = side.total
    return (
        f"{side.name:<17}{t.requests:>10,}{t.fresh + t.fallback:>10,}{t.fallback:>10,}"
        f"{t.errors:>10,}{_ms(p99):>18}"
    )


def _report(
    seconds: float,
    clients: int,
    backend: str,
    seed: int,
    plain: Side,
    guarded: Side,
    actions: Actions,
    plain_dependency: Dependency,
    guarded_dependency: Dependency,
) -> str:
    p, g = plain.total, guarded.total
    rows = [
        ("requests completed", f"{p.requests:,}", f"{g.requests:,}", "nobody waits on a hung call"),
        (
            "fresh answers",
            p.share(p.fresh),
            g.share(g.fresh),
            "from the dependency (after retries/hedges)",
        ),
        (
            "answered by a fallback",
            p.share(p.fallback),
            g.share(g.fallback),
            "last good answer, while it was down",
        ),
        (
            "errors seen by the caller",
            p.share(p.errors),
            g.share(g.errors),
            "exceptions that reached the user",
        ),
        (
            "latency p50",
            _ms(p.percentile(50)),
            _ms(g.percentile(50)),
            "the protection costs nothing",
        ),
        (
            "latency p99",
            _ms(p.percentile(99)),
            _ms(g.percentile(99)),
            f"hedged after {HEDGE_DELAY * 1000:.0f} ms, deadline {REQUEST_DEADLINE:g} s",
        ),
        (
            "slowest request",
            _ms(max(p.latencies, default=math.nan)),
            _ms(max(g.latencies, default=math.nan)),
            f"unprotected: its {_naive(seconds):g} s timeout",
        ),
    ]
    header = (
        f"Final report: {seconds:g} s, {clients} clients per side"
        + (f", {backend}" if backend else "")
        + f", seed {seed}"
    )
    lines = [
        "",
        header,
        "",
        f"{'':26}{'unprotected':>12}{'resilient_async':>17}   why",
        *(f"{label:26}{a:>12}{b:>17}   {why}" for label, a, b, why in rows),
        "",
        "Phase by phase (answered = fresh or fallback; p99 of the requests started in it):",
        f"{'':21}{'unprotected':>18}{'resilient_async':>18}   what resilient_async did",
        f"{'':21}{'answered':>9}{'p99':>9}{'answered':>9}{'p99':>9}",
    ]
    bounds = phase_bounds(seconds)
    periods = _open_periods(actions.transitions)
    for name, _, _ in PHASES:
        start, end = bounds[name]
        pt, gt = plain.phases.get(name, Tally()), guarded.phases.get(name, Tally())
        lines.append(
            f"{name:<10}{start:4.1f}-{end:4.1f} s"
            f"{pt.share(pt.fresh + pt.fallback):>9}{_ms(pt.percentile(99)):>9}"
            f"{gt.share(gt.fresh + gt.fallback):>9}{_ms(gt.percentile(99)):>9}   "
            f"{_did(name, gt, actions, periods, bounds)}"
        )
    lines += ["", _breaker_summary(periods, bounds["down"], actions)]
    return "\n".join(lines)


def _did(
    phase: str,
    tally: Tally,
    actions: Actions,
    periods: list[tuple[float, float | None, int]],
    bounds: dict[str, tuple[float, float]],
) -> str:
    parts = [
        _count(n, what)
        for n, what in (
            (actions.retries[phase], "retry/retries"),
            (actions.hedges[phase], "hedge/hedges"),
            (actions.rejected[phase], "stopped by the breaker"),
            (tally.fallback, "fallback/fallbacks"),
        )
        if n
    ]
    start, end = bounds[phase]
    closes = [c for _, c, _ in periods if c is not None and start <= c < end]
    if closes and phase != "down":
        parts.append(f"breaker closed at {closes[0]:.1f} s")
    return ", ".join(parts) or "nothing to do"


def _count(n: int, what: str) -> str:
    one, _, many = what.partition("/")
    return f"{n:,} {one if n == 1 or not many else many}"


def _open_periods(
    transitions: list[tuple[float, BreakerState]],
) -> list[tuple[float, float | None, int]]:
    """Group transitions into periods away from CLOSED: (opened, closed or None, failed probes)."""
    periods: list[tuple[float, float | None, int]] = []
    opened: float | None = None
    probes = 0
    previous = BreakerState.CLOSED
    for at, state in transitions:
        if opened is None and state is not BreakerState.CLOSED:
            opened, probes = at, 0
        elif opened is not None and state is BreakerState.CLOSED:
            periods.append((opened, at, probes))
            opened = None
        elif previous is BreakerState.HALF_OPEN and state is BreakerState.OPEN:
            probes += 1
        previous = state
    if opened is not None:
        periods.append((opened, None, probes))
    return periods


def _breaker_summary(
    periods: list[tuple[float, float | None, int]],
    outage: tuple[float, float],
    actions: Actions,
) -> str:
    if not periods:
        return "Circuit breaker: never opened."
    spans = "; ".join(
        f"{opened:.1f}-{closed:.1f} s" if closed is not None else f"{opened:.1f} s to the end"
        for opened, closed, _ in periods
    )
    first_open, first_close, probes = periods[0]
    lines = [
        f"Circuit breaker: open {len(periods)} time{'s' if len(periods) > 1 else ''} "
        f"({spans}); the outage lasted {outage[0]:.1f}-{outage[1]:.1f} s.",
        f"It opened {first_open - outage[0]:.2f} s into the outage"
        + (
            f" and closed {first_close - outage[1]:.2f} s after it ended"
            if first_close is not None
            else ""
        )
        + f"; {probes} probe{'s' if probes != 1 else ''} failed in between, and",
        f"{sum(actions.rejected.values()):,} calls were answered without reaching the dependency.",
    ]
    return "\n".join(lines)


def run_demo(
    *,
    backend: str = "asyncio",
    seconds: float = 30.0,
    seed: int = 7,
    clients: int = 40,
    progress: IO[str] | None = None,
    virtual_time: bool = False,
) -> str:
    """Run the demo and return the final report as text.

    Args:
        backend: "asyncio" or "trio".
        seconds: How long the workload runs.
        seed: Seed of the simulated dependency and the clients.
        clients: Concurrent clients on each side.
        progress: Where the live view goes while it runs (None: nowhere).
        virtual_time: Run on a simulated clock that skips idle time (the same run, faster).
    """
    options: dict[str, Any] = {}
    if virtual_time and backend == "asyncio":
        from .testing import virtual_time_loop

        options["loop_factory"] = virtual_time_loop
    elif virtual_time:
        import trio.testing

        options["clock"] = trio.testing.MockClock(autojump_threshold=0)
    return anyio.run(
        lambda: demo_scenario(seconds, seed, clients, progress, backend=backend),
        backend=backend,
        backend_options=options,
    )
