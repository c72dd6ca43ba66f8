"""The run: both groups of clients send one workload, each to its own copy of the dependency."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import IO

import anyio

from ...instrumentation import Event, hooks
from ..repeatable import run_scenario
from .guard import build_pipeline, naive_timeout
from .live import LiveView
from .report import final_report, introduction
from .service import REQUEST_RNG, Dependency
from .tally import Actions, Side

__all__ = ["demo_scenario", "run_demo"]

THINK = 0.05  # each client's pause between two requests


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
        with anyio.fail_after(naive_timeout(seconds)):
            await plain_dependency.fetch(item)
        return "fresh"

    async def guarded_fetch(item: int) -> str:
        fallbacks: list[Event] = []
        with hooks(fallbacks.append):  # this request's events only: hooks are context-scoped
            await guarded_pipeline.call(guarded_dependency.fetch, item)
        return "fallback" if any(e.kind == "fallback.used" for e in fallbacks) else "fresh"

    if progress is not None:
        print(introduction(seconds, clients, backend, seed), file=progress, flush=True)
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
    return final_report(seconds, clients, backend, seed, plain, guarded, actions)


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
        REQUEST_RNG.set(random.Random(f"{seed}/{number}"))
        try:
            outcome = await call(item)
        except Exception:
            outcome = "error"
        now = anyio.current_time()
        side.record(dependency.phase(start), now, now - start, outcome)
        await anyio.sleep(THINK)


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
    return run_scenario(
        lambda: demo_scenario(seconds, seed, clients, progress, backend=backend),
        backend=backend,
        virtual_time=virtual_time,
    )
