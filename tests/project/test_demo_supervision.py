"""The supervision demo: a worker crashes and comes back, then the pool gives up, both backends."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from resilient_async._demos.supervision import supervision_scenario

from ..helpers import BACKENDS, run_virtual


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_supervised_worker_crashes_and_comes_back(backend: str) -> None:
    progress = io.StringIO()
    table = run_virtual(backend, lambda: supervision_scenario(30.0, 7, progress))
    lines = progress.getvalue().splitlines()
    crashed = [line for line in lines if "crashed: MalformedJob" in line]
    assert crashed, "no worker crashed on a malformed job"
    worker = re.search(r"(worker-\d) crashed", crashed[0])
    assert worker is not None
    later = lines[lines.index(crashed[0]) + 1 :]
    assert any(f"{worker.group(1)} is back (restart 1)" in line for line in later)
    # The outage at the end: more than max_restarts crashes within the window.
    assert "supervisor gave up after 6 crashes" in lines[-1]
    assert "outcome: SupervisorGaveUp with 6 crashes" in table
    rows = [line.split() for line in table.splitlines() if line.startswith("worker-")]
    assert len(rows) == 3
    assert all(int(done) > 100 for _, done, _, _ in rows)  # the pool kept working
    assert all(state == "cancelled" for *_, state in rows)


def test_command_line_supervision_scenario() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "resilient_async", "demo"),
            *("--scenario", "supervision", "--seconds", "3", "--backend", "trio"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "restarts" in result.stdout
    assert "outcome:" in result.stdout


def test_command_line_rejects_an_unknown_scenario() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "resilient_async", "demo", "--scenario", "chaos"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--scenario" in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_seed_gives_one_run(backend: str) -> None:
    # Job durations come from the seed and the job; each worker has its own queue: the order
    # in which the loop wakes the workers (trio shuffles it) changes nothing.
    first, second = io.StringIO(), io.StringIO()
    table = run_virtual(backend, lambda: supervision_scenario(12.0, 5, first))
    assert run_virtual(backend, lambda: supervision_scenario(12.0, 5, second)) == table
    assert first.getvalue() == second.getvalue()
