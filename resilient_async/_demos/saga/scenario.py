"""The run: orders placed one after another, then a crash and its recovery from the journal."""

from __future__ import annotations

import os
import random
import tempfile
from typing import IO

import anyio

from ..._async.recovery import recover
from ..._journal import SQLiteJournal
from ...instrumentation import hooks
from ..repeatable import run_scenario
from .compensations import NARRATOR
from .crash import run_crashing_process
from .report import final_table, introduction
from .saga import CRASH_FATE, FATES, Saga, watch
from .shop import STOCK, Order, open_shop

__all__ = ["run_saga_demo", "saga_scenario"]


async def saga_scenario(seed: int, progress: IO[str] | None, *, backend: str = "") -> str:
    """Run the orders, then a crash and its recovery, and return the final table."""
    rng = random.Random(seed)
    started = anyio.current_time()
    lines: list[str] = []

    def say(text: str) -> None:
        line = f"[{anyio.current_time() - started:5.2f}s] {text}"
        lines.append(line)
        if progress is not None:
            print(line, file=progress, flush=True)

    fates = [f for f in FATES if f != "ok"] + ["ok"]
    rng.shuffle(fates)
    skus = sorted(STOCK)
    orders = [
        Order(n, rng.choice(skus), rng.randint(1, 3), fate)
        for n, fate in enumerate(["ok", *fates], start=1)
    ]
    crashed = Order(len(orders) + 1, rng.choice(skus), rng.randint(1, 3), "crash")
    token = NARRATOR.set(say)
    try:
        with tempfile.TemporaryDirectory(prefix="resilient_async_saga_") as tmp:
            shop = os.path.join(tmp, "shop.db")
            journal_path = os.path.join(tmp, "journal.db")
            open_shop(shop)
            if progress is not None:
                print(introduction(len(orders), backend, seed), file=progress, flush=True)
            journal = SQLiteJournal(journal_path, synchronous="normal")
            try:
                saga = Saga(shop, journal, rng)
                with hooks(watch):
                    for order in orders:
                        await saga.place(order)
                    say(f"order {crashed.number}: {crashed.what}; {CRASH_FATE}")
                    code = await anyio.to_thread.run_sync(
                        run_crashing_process, journal_path, shop, crashed
                    )
                    say(f"  (another process) reserve and charge done, then it died ({code})")
                    say("  recover(journal): the dead process's open transaction, newest first:")
                    recovered = await recover(journal)
                saga.outcomes[crashed.number] = "recovered: " + ", ".join(
                    f"{r.name.removeprefix('saga_demo.')} {r.outcome}" for r in recovered
                )
                say(f"  => {len(recovered)} compensations ran; the journal holds no open order")
            finally:
                journal.close()
            return final_table([*orders, crashed], saga.outcomes, shop, backend, seed)
    finally:
        NARRATOR.reset(token)


def run_saga_demo(
    *,
    backend: str = "asyncio",
    seed: int = 7,
    progress: IO[str] | None = None,
    virtual_time: bool = False,
) -> str:
    """Run the saga demo and return the final table as text.

    Args:
        backend: "asyncio" or "trio".
        seed: Seed of the orders' fates, sizes, step durations and retry jitter.
        progress: Where to print each step and compensation as it happens (None: silent).
        virtual_time: Run on a simulated clock that skips idle time (the same run, faster).
    """
    return run_scenario(
        lambda: saga_scenario(seed, progress, backend=backend),
        backend=backend,
        virtual_time=virtual_time,
    )
