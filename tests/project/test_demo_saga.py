"""The saga demo: orders rolled back by their compensations, a crash recovered, both backends."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from resilient_async._demos.saga.saga import FATES, SHORT_FATES
from resilient_async._demos.saga.scenario import saga_scenario

from ..helpers import BACKENDS, run_virtual


def _rows(table: str) -> dict[str, str]:
    """Map each order's short fate to its outcome column."""
    rows = {}
    for line in table.splitlines():
        if re.match(r"^\d+ ", line):
            fate = next(f for f in SHORT_FATES.values() if line[6:].startswith(f + " "))
            rows[fate] = line
    return rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_fate_ends_as_a_saga_should(backend: str) -> None:
    progress = io.StringIO()
    table = run_virtual(backend, lambda: saga_scenario(7, progress, backend=backend))
    rows = _rows(table)
    assert len(rows) == len(SHORT_FATES)  # one order per fate, the crash included
    assert re.search(r"reserve,charge,ship +- +committed$", rows["all steps work"])
    assert re.search(r"reserve +release +rolled back: CardDeclined$", rows["card declined"])
    assert rows["carrier down"].endswith("refund,release  rolled back: CarrierDown")
    assert rows["customer cancels"].endswith("refund,release  rolled back: cancelled")
    assert rows["shipping hangs"].endswith("refund,release  rolled back: DeadlineExceeded")
    # The glitching refund was retried by compensation_retry and went through.
    assert rows["carrier down, refund glitch"].endswith("refund,release  rolled back: CarrierDown")
    # The refused refund: the other undo still ran, and the order is flagged.
    assert rows["carrier down, refund refused"].endswith(
        "release         NEEDS A HUMAN: RefundRejected"
    )
    assert rows["process killed"].endswith("recovered: refund ran, release ran")
    assert "minus the shipped units: matches" in table
    assert re.search(r"money kept: \d+\.00 = \d+\.00 for \d shipped orders \+ \d+\.00 of", table)
    lines = progress.getvalue().splitlines()
    assert any("compensation retry: attempt 1 failed" in line for line in lines)
    assert any("then it died (SIGKILL)" in line for line in lines)
    # Compensations run newest first: the refund before the release, in every rollback.
    undos = [line.split("undo: ")[1].split()[0] for line in lines if "undo: " in line]
    assert undos[:2] == ["refund", "release"] or undos[:1] == ["release"]
    assert len(FATES) + 1 == len(SHORT_FATES)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_seed_gives_one_story(backend: str) -> None:
    first, second = (io.StringIO() for _ in "ab")
    table = run_virtual(backend, lambda: saga_scenario(3, first))
    assert run_virtual(backend, lambda: saga_scenario(3, second)) == table
    assert first.getvalue() == second.getvalue()  # the timings and retry delays too


def test_command_line_saga_scenario() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "resilient_async", "demo"),
            *("--scenario", "saga", "--backend", "trio", "--virtual-time"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "rollback, newest first" in result.stdout
    assert "Final table (seed 7, trio)" in result.stdout
    assert "matches" in result.stdout
