"""A small in-process benchmark harness that reports ns/call and ratios to a baseline.

Each `Group` holds cases that do the same job (a guarded call, a retry loop, ...). For each
backend, every case runs inside one event loop; rounds are interleaved (case A, B, C, A, B,
C, ...) so that drift in machine speed hits every case alike, and the median round is kept.
Ratios compare cases measured in the same run, which is what the performance targets in the
design are stated in.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import trio

Op = Callable[[], Awaitable[object]]
SyncOp = Callable[[], object]
# A factory builds the operation inside the running loop (some primitives need one).
Factory = Callable[[], Op | SyncOp]


@dataclass
class Case:
    """One way of doing the group's job."""

    name: str
    factory: Factory
    backends: tuple[str, ...] = ("asyncio", "trio")
    is_async: bool = True


@dataclass
class Group:
    """Cases compared with each other; ratios are to `baseline`.

    `baseline` may name several cases: the first one that runs on the backend is used (for
    example `asyncio.timeout` on asyncio and `trio.move_on_after` on trio).
    """

    name: str
    baseline: str | tuple[str, ...]
    cases: list[Case] = field(default_factory=list)
    note: str = ""

    def add(
        self,
        name: str,
        factory: Factory,
        *,
        backends: Sequence[str] = ("asyncio", "trio"),
        is_async: bool = True,
    ) -> None:
        self.cases.append(Case(name, factory, tuple(backends), is_async))


@dataclass
class Result:
    group: str
    backend: str
    case: str
    ns_per_call: float
    ratio: float | None


async def _time_async(op: Op, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        await op()
    return (time.perf_counter_ns() - start) / n


def _time_sync(op: SyncOp, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        op()
    return (time.perf_counter_ns() - start) / n


async def _measure(group: Group, backend: str, rounds: int, target_ns: float) -> list[Result]:
    cases = [c for c in group.cases if backend in c.backends]
    ops = [(c, c.factory()) for c in cases]
    # Calibrate: enough iterations that one round of one case takes about target_ns.
    counts = []
    for case, op in ops:
        n = 10
        while True:
            took = await _time_async(op, n) if case.is_async else _time_sync(op, n)  # type: ignore[arg-type]
            if took * n >= target_ns / 4 or n >= 1_000_000:
                break
            n *= 4
        counts.append(max(10, int(target_ns / max(took, 1.0))))
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    for _ in range(rounds):
        for (case, op), n in zip(ops, counts, strict=True):
            took = await _time_async(op, n) if case.is_async else _time_sync(op, n)  # type: ignore[arg-type]
            samples[case.name].append(took)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    names = (group.baseline,) if isinstance(group.baseline, str) else group.baseline
    base = next((medians[n] for n in names if n in medians), None)
    return [
        Result(group.name, backend, name, ns, (ns / base) if base else None)
        for name, ns in medians.items()
    ]


def run_group(
    group: Group, backend: str, *, rounds: int = 7, target_ns: float = 20e6
) -> list[Result]:
    """Measure every case of `group` that supports `backend`."""
    if not any(backend in c.backends for c in group.cases):
        return []
    if backend == "asyncio":
        return asyncio.run(_measure(group, backend, rounds, target_ns))
    return trio.run(_measure, group, backend, rounds, target_ns)


def format_results(results: list[Result], note: str = "") -> str:
    """Render one group's results on one backend as a small table."""
    if not results:
        return ""
    width = max(len(r.case) for r in results)
    lines = [f"## {results[0].group} [{results[0].backend}]" + (f"  ({note})" if note else "")]
    for r in results:
        ratio = f"{r.ratio:8.2f}x" if r.ratio is not None else "        -"
        lines.append(f"  {r.case:<{width}}  {r.ns_per_call:12.1f} ns/call  {ratio}")
    return "\n".join(lines)
