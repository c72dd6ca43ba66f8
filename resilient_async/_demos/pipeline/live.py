"""The live view: progress and both sides' counters while the demo runs."""

from __future__ import annotations

from typing import IO

import anyio

from ..._async.breaker import CircuitBreaker
from .service import PHASE_TEXT, phase_at
from .tally import Actions, Side, ms

__all__ = ["LiveView"]


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
                f"p99 {ms(plain_p99)} | resilient_async: {guarded.share(guarded.errors)} "
                f"errors, {guarded.share(guarded.fallback)} fallbacks, p99 {ms(guarded_p99)}, "
                f"breaker {state}"
            ]
        done = int(30 * elapsed / self._seconds)
        a = self._actions
        return [
            f"{elapsed:5.1f} s / {self._seconds:g} s [{'#' * done}{'.' * (30 - done)}] "
            f"{phase}: {PHASE_TEXT[phase]}",
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
        f"{t.errors:>10,}{ms(p99):>18}"
    )
