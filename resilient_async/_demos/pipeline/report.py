"""What the demo prints before it runs (the introduction) and after (the final report)."""

from __future__ import annotations

import math

from ..._async.breaker import BreakerState
from .guard import ATTEMPT_TIMEOUT, HEDGE_DELAY, REQUEST_DEADLINE, naive_timeout
from .service import PHASES, phase_bounds
from .tally import Actions, Side, Tally, ms

__all__ = ["final_report", "introduction"]


def introduction(seconds: float, clients: int, backend: str, seed: int) -> str:
    """What the run is about to do: the phases and how each side calls the dependency."""
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
        "unprotected:     each client calls it directly, with a "
        f"{naive_timeout(seconds):g} s timeout.",
        "resilient_async: each client calls it through pipeline(Fallback, Fallback.last_good,",
        f"                 Timeout({REQUEST_DEADLINE:g}), Retry(attempts=3, budget), "
        f"CircuitBreaker, Hedge({HEDGE_DELAY:g}), Timeout({ATTEMPT_TIMEOUT:g})).",
        "",
    ]
    return "\n".join(lines)


def final_report(
    seconds: float,
    clients: int,
    backend: str,
    seed: int,
    plain: Side,
    guarded: Side,
    actions: Actions,
) -> str:
    """The final report: totals side by side, then phase by phase, then the breaker."""
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
            ms(p.percentile(50)),
            ms(g.percentile(50)),
            "the protection costs nothing",
        ),
        (
            "latency p99",
            ms(p.percentile(99)),
            ms(g.percentile(99)),
            f"hedged after {HEDGE_DELAY * 1000:.0f} ms, deadline {REQUEST_DEADLINE:g} s",
        ),
        (
            "slowest request",
            ms(max(p.latencies, default=math.nan)),
            ms(max(g.latencies, default=math.nan)),
            f"unprotected: its {naive_timeout(seconds):g} s timeout",
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
            f"{pt.share(pt.fresh + pt.fallback):>9}{ms(pt.percentile(99)):>9}"
            f"{gt.share(gt.fresh + gt.fallback):>9}{ms(gt.percentile(99)):>9}   "
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
