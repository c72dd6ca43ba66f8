"""`python -m benchmarks --quick` runs every case and writes the report; only errors fail it.

The quick run is what CI runs: each case briefly, on every backend, the load and memory runs
at small sizes, and the page with its plots written to a copy of docs/benchmarks.md. No
figure is checked against a target here: timings on a shared machine are not a pass/fail
signal, a benchmark that raises is.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import harness, report, scaling

ROOT = Path(__file__).resolve().parents[2]


def _run_quick(page: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        # The plots are drawn by the test below: drawing every one would double the run.
        [sys.executable, "-m", "benchmarks", "--quick", "--no-plots", "--report", str(page)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


def test_quick_run_covers_every_case_and_writes_the_page(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    shutil.copy(ROOT / "docs" / "benchmarks.md", page)
    prose_before = (ROOT / "docs" / "benchmarks.md").read_text().split(report.START)[0]

    done = _run_quick(page)

    assert done.returncode == 0, done.stderr[-4000:]
    text = page.read_text()
    assert text.startswith(prose_before), "the hand-written prose above the results changed"
    assert text.count(report.START) == 1
    assert text.count(report.END) == 1
    # Every group that ran on this machine has its table, and every case its row.
    for group in bench_main._groups():
        assert f"### {group.name}\n" in text, group.name
        for case in group.cases:
            assert f"| {case.name} |" in text, (group.name, case.name)
    for backend in harness.backends_available():
        assert f"{report.BACKEND_LABEL[backend]} ns" in text
    for scenario in ("queued waiters", "per-key entries", "concurrent deadlines"):
        assert scenario in text
    assert "idle key, Bulkhead.per_key" in text
    assert "queued bulkhead waiter" in text


def test_the_page_shows_the_plots_it_draws(tmp_path: Path) -> None:
    group = harness.Group("retry: success path", baseline="ra.Retry.call")
    results = [
        harness.Result(group.name, backend, case, ns, None, ns / 50, ns * 0.9, ns * 1.2, 3)
        for backend in ("asyncio", "uvloop", "trio")
        for case, ns in (("bare await", 50.0), ("ra.Retry.call", 110.0), ("tenacity", 9e3))
    ]
    points = [
        scaling.Point("bulkhead: queued waiters", backend, n, ns, ns * 0.9, ns * 1.1)
        for backend in ("asyncio", "trio")
        for n, ns in ((10, 900.0), (1_000, 901.0), (100_000, 1_000.0))
    ]
    memory = [scaling.Memory("idle key, Bulkhead.per_key", "asyncio", 1_500.0, 100)]
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text("# Benchmarks\n\nProse.\n")

    body = report.render(
        [(group, results)],
        points,
        memory,
        ["asyncio", "uvloop", "trio"],
        ["- here"],
        page.parent / "img" / "bench",
        page,
        3,
    )
    report.write_page(page, body)

    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nProse.\n")
    assert "| ra.Retry.call | 110 ±15% | 2.2x | 110 ±15% | 2.2x |" in text
    assert (
        "| bulkhead: queued waiters | asyncio | 900 ±10% | 901 ±10% | 1,000 ±10% | 1.11x |" in text
    )
    assert "| idle key, Bulkhead.per_key | 1,500 |" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert images == ["img/bench/retry-success-path.png", "img/bench/scaling.png"]
    for name in images:
        assert (page.parent / name).read_bytes().startswith(b"\x89PNG"), name
    # Rewriting replaces the results and keeps everything else.
    report.write_page(page, "new figures\n")
    assert (
        page.read_text()
        == f"# Benchmarks\n\nProse.\n\n{report.START}\n\nnew figures\n\n{report.END}\n"
    )


def test_the_committed_page_has_the_results_markers() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count(report.START) == 1
    assert text.count(report.END) == 1
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text):
        assert (ROOT / "docs" / name).is_file(), name


def test_a_benchmark_that_raises_fails_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def broken() -> None:
        raise RuntimeError("this case is broken")

    group = harness.Group("broken group", baseline="broken")
    group.add("broken", lambda: broken)
    monkeypatch.setattr(bench_main, "_groups", lambda: [group])

    code = bench_main.main(["--quick", "--no-scaling", "--backend", "asyncio"])

    assert code == 1
    assert "broken group [asyncio]" in capsys.readouterr().err


def test_every_case_gets_a_multiple_of_the_floor() -> None:
    async def work() -> int:
        return 1

    group = harness.Group("no floor of its own", baseline="work")
    group.add("work", lambda: work)

    results = harness.run_group(group, "asyncio", rounds=2, target_ns=1e5, min_calls=2)

    assert [r.case for r in results] == [harness.FLOOR_ASYNC, "work"]
    assert all(r.floor_ratio is not None and r.floor_ratio > 0 for r in results)
    assert all(r.low <= r.ns_per_call <= r.high for r in results)
