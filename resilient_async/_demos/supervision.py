"""The supervision demo: a pool of workers under a Supervisor, crashing and coming back.

Three workers take jobs from their queues (dealt round robin). Now and then a job is
malformed and the worker that took it crashes; the supervisor restarts that worker alone
(one_for_one) after a short backoff, and the pool keeps draining the queues. Near the end
the database behind the jobs goes away: every job crashes its worker, more than
`max_restarts` crashes fall within the window, and the supervisor cancels the pool and gives
up with `SupervisorGaveUp`, as an operator would want rather than a restart loop that never
ends.

Each crash is printed as it happens (from the supervisor's events), and the run ends with
a table per worker.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from contextlib import AsyncExitStack
from typing import IO

import anyio
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream

from .. import backoff
from ..errors import SupervisorGaveUp
from ..instrumentation import Event, hooks
from ..supervision import Supervisor
from .repeatable import run_scenario

__all__ = ["run_supervision_demo", "supervision_scenario"]

WORKERS = 3
MAX_RESTARTS = 5
WITHIN = 10.0
MALFORMED_EVERY = 149  # every 149th job (about one every 4 s) crashes its worker
OUTAGE_SHARE = 0.2  # the last fifth of the run: the database is gone


class MalformedJob(ValueError):
    """A job the worker cannot parse: a bug in the producer, not the worker's fault."""


async def supervision_scenario(seconds: float, seed: int, progress: IO[str] | None) -> str:
    """Run the worker pool on the running loop and return the final table."""
    started = anyio.current_time()
    outage_at = started + seconds * (1 - OUTAGE_SHARE)
    done: Counter[str] = Counter()
    lines: list[str] = []

    def say(text: str) -> None:
        line = f"[{anyio.current_time() - started:6.2f}s] {text}"
        lines.append(line)
        if progress is not None:
            print(line, file=progress, flush=True)

    def watch(event: Event) -> None:
        if event.kind == "supervisor.child_crashed":
            say(f"{event.child} crashed: {event.exception!r}")
        elif event.kind == "supervisor.restarted":
            say(f"{event.child} restarts in {event.delay:.2f}s")
        elif event.kind == "supervisor.child_started" and event.restarts:
            say(f"{event.child} is back (restart {event.restarts})")
        elif event.kind == "supervisor.gave_up":
            say(f"supervisor gave up after {len(event.exceptions)} crashes within {WITHIN:g}s")

    async def worker(name: str, jobs: ObjectReceiveStream[int]) -> None:
        async for job in jobs:
            # Each job's duration comes from the seed and the job alone: the order in which
            # the loop wakes the workers (trio shuffles it) cannot change the figures.
            await anyio.sleep(random.Random(f"{seed}/{job}").uniform(0.02, 0.06))
            if anyio.current_time() >= outage_at:
                raise ConnectionRefusedError(f"database refused job {job}")
            if job % MALFORMED_EVERY == 0:
                raise MalformedJob(f"job {job} is malformed")
            done[name] += 1

    # One queue per worker, dealt round robin, so that a seed gives one run (see above).
    streams = [anyio.create_memory_object_stream[int](100) for _ in range(WORKERS)]
    supervisor = Supervisor(
        strategy="one_for_one",
        max_restarts=MAX_RESTARTS,
        within=WITHIN,
        backoff=backoff.exponential(0.1, max=2.0, jitter="none"),
        name="workers",
        logger=_quiet_logger(),
    )
    outcome = "the queue was drained: every worker finished"
    with hooks(watch):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_produce, [send for send, _ in streams], seconds)
            try:
                async with supervisor:
                    for number, (_, receive) in enumerate(streams, start=1):
                        # transient: a worker that returns (its queue is closed) is done.
                        name = f"worker-{number}"
                        supervisor.start_soon(worker, name, receive, name=name, restart="transient")
            except SupervisorGaveUp as exc:
                kinds = sorted({type(e).__name__ for e in exc.exceptions})
                outcome = (
                    f"SupervisorGaveUp with {len(exc.exceptions)} crashes ({', '.join(kinds)})"
                )
            finally:
                for _, receive in streams:
                    receive.close()
            tg.cancel_scope.cancel()
    crashes = sum(1 for line in lines if " crashed: " in line)
    table = [
        "",
        f"{'worker':12}{'jobs done':>10}{'restarts':>10}{'state':>12}",
        *(
            f"{child.name:12}{done[child.name]:>10}{child.restarts:>10}{child.state.value:>12}"
            for child in supervisor.children
        ),
        "",
        f"jobs done: {sum(done.values())}, crashes: {crashes}",
        f"outcome: {outcome}",
    ]
    return "\n".join(table)


async def _produce(queues: list[MemoryObjectSendStream[int]], seconds: float) -> None:
    async with AsyncExitStack() as stack:
        for queue in queues:
            await stack.enter_async_context(queue)
        for job in range(1, math.ceil(seconds * 40) + 1):
            await queues[job % len(queues)].send(job)
            await anyio.sleep(1 / 40)


def _quiet_logger() -> logging.Logger:
    """A logger that keeps the demo's own lines readable: crashes are printed from events."""
    logger = logging.getLogger("resilient_async.demo.supervision")
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    return logger


def run_supervision_demo(
    *,
    backend: str = "asyncio",
    seconds: float = 30.0,
    seed: int = 7,
    progress: IO[str] | None = None,
    virtual_time: bool = False,
) -> str:
    """Run the supervision demo and return the final table as text.

    Args:
        backend: "asyncio" or "trio".
        seconds: How long the producer sends jobs.
        seed: Seed of the job durations.
        progress: Where to print each crash and restart as it happens (None: silent).
        virtual_time: Run on a simulated clock that skips idle time (the same run, faster).
    """
    return run_scenario(
        lambda: supervision_scenario(seconds, seed, progress),
        backend=backend,
        virtual_time=virtual_time,
    )
