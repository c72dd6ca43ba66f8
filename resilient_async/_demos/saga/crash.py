"""The order whose process is killed midway: its rollback is left to `recover`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import anyio

from ..._async.transaction import Transaction
from ..._journal import SQLiteJournal
from .compensations import refund, release
from .shop import Order, charge, reserve

__all__ = ["crash_midway", "run_crashing_process"]


def run_crashing_process(journal_path: str, shop: str, order: Order) -> str:
    """Run `crash_midway` in a child process that dies the hard way; say how it died."""
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from resilient_async._demos.saga.crash import crash_midway; "
            "crash_midway(*sys.argv[1:])",
            journal_path,
            shop,
            json.dumps([order.number, order.sku, order.quantity]),
        ],
        check=False,  # it is meant to die
        timeout=120,
    )
    if child.returncode == -signal.SIGKILL:
        return "SIGKILL"
    raise RuntimeError(f"the crashing order's process ended with {child.returncode}, not SIGKILL")


def crash_midway(journal_path: str, shop: str, order_json: str) -> None:
    """Reserve and charge under a journaled Transaction, then die before shipping."""
    number, sku, quantity = json.loads(order_json)
    order = Order(number, sku, quantity, "crash")

    async def main() -> None:
        with SQLiteJournal(journal_path, synchronous="normal") as journal:
            async with Transaction(f"order-{number}", journal=journal) as tx:
                reserve(shop, order)
                tx.on_rollback(release, shop, number, sku, quantity)
                tx.on_rollback(refund, shop, number, charge(shop, order))
                # Killed: no rollback, no cleanup; the kernel drops the journal lock.
                os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main)
