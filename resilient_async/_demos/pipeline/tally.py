"""What each side saw, and what the library did: counted while the demo runs."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ..._async.breaker import BreakerState

__all__ = ["Actions", "Side", "Tally", "ms"]


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


def ms(seconds: float) -> str:
    """Format a duration in milliseconds ("-" for none)."""
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
