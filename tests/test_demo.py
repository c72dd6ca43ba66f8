"""The demo: the guarded side shields its callers, on both backends, in virtual time."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from resilient_async._demo import demo_scenario

from .helpers import BACKENDS, run_virtual


def _row(table: str, label: str) -> tuple[str, str]:
    line = next(line for line in table.splitlines() if line.startswith(label))
    values = re.findall(r"\d+(?:\.\d+)?%?(?: ms)?", line[len(label) :])
    return values[0], values[1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_guarded_side_leaves_fewer_errors_to_the_caller(backend: str) -> None:
    table = run_virtual(backend, lambda: demo_scenario(20.0, 7, 20, None))
    plain_errors, guarded_errors = _row(table, "errors seen by the caller")
    assert float(guarded_errors.rstrip("%")) < float(plain_errors.rstrip("%"))
    assert float(guarded_errors.rstrip("%")) < 1.0  # fallbacks answer what retries cannot
    assert "breaker transitions:" in table
    assert "OPEN" in table


def test_command_line_short_run() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "resilient_async", "demo", "--seconds", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "resilient_async" in result.stdout
    assert "latency p99" in result.stdout


def test_command_line_rejects_bad_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "resilient_async", "demo", "--seconds", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--seconds must be > 0" in result.stderr
