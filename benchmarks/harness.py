"""A small in-process benchmark harness that reports ns/call and ratios to a baseline.

Each `Group` holds cases that do the same job (a guarded call, a retry loop, ...). For each
backend, every case runs inside one event loop; rounds are interleaved (case A, B, C, A, B,
C, ...) so that drift in machine speed hits every case alike, and the median round is kept
along with the spread of the rounds. Ratios compare cases measured in the same run, which is
what the performance targets are stated in: to the group's baseline, and to the floor (a bare
`await f()`, or a bare call for sync cases) measured in the same rounds.

Backends: `asyncio` (the default loop), `uvloop` (asyncio on uvloop, when it is installed;
cases written for asyncio run on it too) and `trio`.
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

FLOOR_ASYNC = "bare await"
FLOOR_SYNC = "bare call"


def uvloop_available() -> bool:
    """Whether uvloop can be imported (it does not build everywhere)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def backends_available() -> list[str]:
    """Every backend this machine can run, in report order."""
    return ["asyncio", *(["uvloop"] if uvloop_available() else []), "trio"]


def loop_kind(backend: str) -> str:
    """The library a backend's cases are written for: uvloop runs the asyncio cases."""
    return "asyncio" if backend == "uvloop" else backend


@dataclass
class Case:
    """One way of doing the group's job."""

    name: str
    factory: Factory
    backends: tuple[str, ...] = ("asyncio", "trio")
    is_async: bool = True

    def runs_on(self, backend: str) -> bool:
        return loop_kind(backend) in self.backends


async def _floor_work() -> int:
    return 1


def _floor_call() -> int:
    return 1


@dataclass
class Group:
    """Cases compared with each other; ratios are to `baseline`.

    `baseline` may name several cases: the first one that runs on the backend is used (for
    example `asyncio.timeout` on asyncio and `trio.move_on_after` on trio). A group without a
    floor case (`bare await`, or `bare call` when its cases are sync) gets one, measured in
    the same rounds, so every case also has its multiple of the floor.
    """

    name: str
    baseline: str | tuple[str, ...]
    cases: list[Case] = field(default_factory=list)
    note: str = ""
    clock: str = "cpu"  # "wall" for cases that wait on I/O

    def add(
        self,
        name: str,
        factory: Factory,
        *,
        backends: Sequence[str] = ("asyncio", "trio"),
        is_async: bool = True,
    ) -> None:
        self.cases.append(Case(name, factory, tuple(backends), is_async))

    def cases_on(self, backend: str) -> list[Case]:
        """The cases that run on `backend`, the floor first (added when missing)."""
        cases = [c for c in self.cases if c.runs_on(backend)]
        is_async = any(c.is_async for c in cases)
        # Sync cases never touch the loop: one run, on asyncio, says all there is.
        if not cases or (not is_async and backend != "asyncio"):
            return []
        floor = FLOOR_ASYNC if is_async else FLOOR_SYNC
        if not any(c.name == floor for c in cases):
            factory: Factory = (lambda: _floor_work) if is_async else (lambda: _floor_call)
            cases.insert(0, Case(floor, factory, (loop_kind(backend),), is_async))
        return cases


@dataclass
class Result:
    group: str
    backend: str
    case: str
    ns_per_call: float
    ratio: float | None
    floor_ratio: float | None = None
    low: float = 0.0  # the fastest round, ns/call
    high: float = 0.0  # the slowest round, ns/call
    rounds: int = 0

    @property
    def spread(self) -> float:
        """(slowest - fastest round) / median, as a fraction."""
        return (self.high - self.low) / self.ns_per_call if self.ns_per_call else 0.0


# The clock cases are timed on. On a machine shared with other work, the wall clock counts
# the time this thread waits for a CPU; the thread's CPU time does not. CPU time is the
# default; cases that wait on I/O (a server's reply, an fsync) need the wall clock.
CLOCKS: dict[str, Callable[[], int]] = {"cpu": time.thread_time_ns, "wall": time.perf_counter_ns}


async def _time_async(op: Op, n: int, clock: Callable[[], int] = time.thread_time_ns) -> float:
    start = clock()
    for _ in range(n):
        await op()
    return (clock() - start) / n


def _time_sync(op: SyncOp, n: int, clock: Callable[[], int] = time.thread_time_ns) -> float:
    start = clock()
    for _ in range(n):
        op()
    return (clock() - start) / n


async def _measure(
    group: Group, backend: str, rounds: int, target_ns: float, min_calls: int
) -> list[Result]:
    cases = group.cases_on(backend)
    clock = CLOCKS[group.clock]
    ops = [(c, c.factory()) for c in cases]
    # Calibrate: enough iterations that one round of one case takes about target_ns.
    counts = []
    for case, op in ops:
        n = min_calls
        while True:
            took = (
                await _time_async(op, n, clock) if case.is_async else _time_sync(op, n, clock)  # type: ignore[arg-type]
            )
            if took * n >= target_ns / 4 or n >= 1_000_000:
                break
            n *= 4
        counts.append(max(min_calls, int(target_ns / max(took, 1.0))))
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    for _ in range(rounds):
        for (case, op), n in zip(ops, counts, strict=True):
            took = (
                await _time_async(op, n, clock) if case.is_async else _time_sync(op, n, clock)  # type: ignore[arg-type]
            )
            samples[case.name].append(took)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    names = (group.baseline,) if isinstance(group.baseline, str) else group.baseline
    base = next((medians[n] for n in names if n in medians), None)
    floor = medians.get(FLOOR_ASYNC, medians.get(FLOOR_SYNC))
    return [
        Result(
            group.name,
            backend,
            name,
            ns,
            (ns / base) if base else None,
            (ns / floor) if floor else None,
            min(samples[name]),
            max(samples[name]),
            rounds,
        )
        for name, ns in medians.items()
    ]


def run_on(backend: str, fn: Callable[..., Awaitable[object]], *args: object) -> object:
    """Run `fn(*args)` in a fresh event loop of `backend`."""
    if backend == "trio":
        return trio.run(fn, *args)
    if backend == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(fn(*args))  # type: ignore[arg-type]
    return asyncio.run(fn(*args))  # type: ignore[arg-type]


def run_group(
    group: Group, backend: str, *, rounds: int = 7, target_ns: float = 20e6, min_calls: int = 10
) -> list[Result]:
    """Measure every case of `group` that supports `backend`, each at least `min_calls` times."""
    if not group.cases_on(backend):
        return []
    return run_on(backend, _measure, group, backend, rounds, target_ns, min_calls)  # type: ignore[return-value]


def format_results(results: list[Result], note: str = "") -> str:
    """Render one group's results on one backend as a small table."""
    if not results:
        return ""
    width = max(len(r.case) for r in results)
    lines = [f"## {results[0].group} [{results[0].backend}]" + (f"  ({note})" if note else "")]
    for r in results:
        ratio = f"{r.ratio:8.2f}x" if r.ratio is not None else "        -"
        floor = f"{r.floor_ratio:8.1f}x bare" if r.floor_ratio is not None else ""
        lines.append(
            f"  {r.case:<{width}}  {r.ns_per_call:12.1f} ns/call  ±{r.spread * 50:4.1f}%"
            f"  {ratio}  {floor}"
        )
    return "\n".join(lines)
