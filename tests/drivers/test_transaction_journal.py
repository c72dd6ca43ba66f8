"""The durable journal and recovery: real SQLite files, real processes killed with SIGKILL."""

from __future__ import annotations

import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync
from resilient_async.instrumentation import hooks

from .. import _tx_worker as worker
from ..helpers import Recorder

pytestmark = [pytest.mark.anyio, pytest.mark.real_time]

ROOT = Path(__file__).resolve().parents[2]
CLEAN = {
    "stock": [(5,)],
    "charges": [],
    "shipments": [],
    "compensated": ["cancel_shipment", "refund", "release"],
}


@pytest.fixture
def world(tmp_path: Path) -> str:
    path = str(tmp_path / "world.db")
    worker.create_world(path)
    return path


@pytest.fixture
def journal_path(tmp_path: Path) -> str:
    return str(tmp_path / "journal.db")


def _spawn(*args: str, hang_in: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if hang_in is not None:
        env[worker.HANG] = hang_in
    return subprocess.Popen(
        [sys.executable, "-m", "tests._tx_worker", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_for(process: subprocess.Popen[str], text: str) -> None:
    assert process.stdout is not None
    # Generous: only a hang guard. The line normally comes within a second.
    ready, _, _ = select.select([process.stdout], [], [], 120)
    assert ready, f"the worker never printed {text!r}"
    line = process.stdout.readline()
    while line and text not in line:
        line = process.stdout.readline()
    assert text in line, f"the worker ended (status {process.poll()}) before {text!r}"


def _kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert process.stdout is not None
    process.stdout.close()


def _journal_rows(path: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT tx, seq, name, arguments FROM compensations").fetchall()


def _crash_a_saga(journal_path: str, world: str) -> None:
    process = _spawn("saga", journal_path, world)
    try:
        _wait_for(process, "registered 3")
    finally:
        _kill(process)


async def _clean_rollback_state(tmp_path: Path) -> dict[str, object]:
    world = str(tmp_path / "clean-world.db")
    worker.create_world(world)
    with ra.SQLiteJournal(tmp_path / "clean-journal.db") as journal:
        with pytest.raises(RuntimeError, match="the order failed"):
            await worker.saga(journal, world, fail=True)
        assert _journal_rows(str(journal.path)) == []
    return worker.world_state(world)


async def test_a_clean_rollback_compensates_and_empties_the_journal(tmp_path: Path) -> None:
    assert await _clean_rollback_state(tmp_path) == CLEAN


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_a_record_is_durable_when_on_rollback_returns(
    journal_path: str, world: str, synchronous: str
) -> None:
    with ra.SQLiteJournal(journal_path, synchronous=synchronous) as journal:
        with pytest.raises(ValueError):
            async with ra.Transaction("order", journal=journal) as tx:
                tx.on_rollback(worker.release_stock, world, "book")
                # Another connection (as another process would) sees it already.
                rows = _journal_rows(journal_path)
                assert [(seq, name) for _, seq, name, _ in rows] == [(0, "worker.release_stock")]
                assert json.loads(rows[0][3]) == [[world, "book"], {}]
                raise ValueError("x")
        assert _journal_rows(journal_path) == []
        async with ra.Transaction(journal=journal) as tx:
            tx.on_rollback(worker.release_stock, world, "book")
        assert _journal_rows(journal_path) == []
    assert worker.world_state(world)["compensated"] == ["release"]


async def test_recover_after_sigkill_mid_transaction(
    tmp_path: Path, journal_path: str, world: str
) -> None:
    process = _spawn("saga", journal_path, world)
    try:
        _wait_for(process, "registered 3")
        with ra.SQLiteJournal(journal_path) as journal:
            assert await ra.recover(journal) == []  # its owner is alive: never touched
        assert len(_journal_rows(journal_path)) == 3
    finally:
        _kill(process)
    recorder = Recorder()
    with ra.SQLiteJournal(journal_path) as journal, hooks(recorder):
        dry = await ra.recover(journal, dry_run=True)
        assert [(line.name, line.outcome) for line in dry] == [
            ("worker.cancel_shipment", "pending"),
            ("worker.refund", "pending"),
            ("worker.release_stock", "pending"),
        ]
        assert worker.world_state(world)["compensated"] == []  # a dry run changes nothing
        lines = await ra.recover(journal)
        assert [(line.sequence, line.outcome) for line in lines] == [
            (2, "ran"),
            (1, "ran"),
            (0, "ran"),
        ]
        assert {line.owner_pid for line in lines} == {process.pid}
        assert await ra.recover(journal) == []  # idempotent
        assert await ra.recover(journal_path) == []  # a path works too
    assert recorder.kinds() == ["compensation.ran"] * 3
    assert next(e.compensation for e in recorder.events) == "worker.cancel_shipment"
    assert _journal_rows(journal_path) == []
    assert worker.world_state(world) == await _clean_rollback_state(tmp_path) == CLEAN


async def test_recover_after_sigkill_mid_recovery(
    tmp_path: Path, journal_path: str, world: str
) -> None:
    _crash_a_saga(journal_path, world)
    recovery = _spawn("recover", journal_path, world, hang_in="worker.refund")
    try:
        _wait_for(recovery, "hanging in worker.refund")
        with ra.SQLiteJournal(journal_path) as journal:
            assert await ra.recover(journal) == []  # the recovering process is alive: its claim
    finally:
        _kill(recovery)
    assert worker.world_state(world)["compensated"] == ["cancel_shipment"]
    with ra.SQLiteJournal(journal_path) as journal:
        lines = await ra.recover(journal)
    assert [(line.name, line.outcome) for line in lines] == [
        ("worker.refund", "ran"),
        ("worker.release_stock", "ran"),
    ]
    assert worker.world_state(world) == await _clean_rollback_state(tmp_path) == CLEAN


async def test_recover_never_touches_a_live_transaction_of_this_process(journal_path: str) -> None:
    undone: list[str] = []
    registered = anyio.Event()
    release = anyio.Event()

    @ra.compensation("test.live_undo")
    def live_undo(what: str) -> None:
        undone.append(what)

    async def live() -> None:
        with ra.SQLiteJournal(journal_path) as journal:
            with pytest.raises(ValueError):
                async with ra.Transaction(journal=journal) as tx:
                    tx.on_rollback(live_undo, "a")
                    registered.set()
                    await release.wait()
                    raise ValueError("x")

    async with anyio.create_task_group() as tg:
        tg.start_soon(live)
        await registered.wait()
        with ra.SQLiteJournal(journal_path) as other:
            assert await ra.recover(other, dry_run=True) == []
            assert await ra.recover(other) == []
        release.set()
    assert undone == ["a"]


async def test_a_failing_compensation_in_recovery_is_reported_once(
    journal_path: str, world: str
) -> None:
    _crash_a_saga(journal_path, world)
    os.remove(world)  # every compensation now fails: the world's tables are gone
    recorder = Recorder()
    with ra.SQLiteJournal(journal_path) as journal, hooks(recorder):
        lines = await ra.recover(journal)
        assert [line.outcome for line in lines] == ["failed"] * 3
        assert all("OperationalError" in (line.error or "") for line in lines)
        assert await ra.recover(journal) == []
    assert recorder.kinds() == ["compensation.failed"] * 3


async def test_unregistered_compensations_stay_pending_whole(journal_path: str, world: str) -> None:
    _crash_a_saga(journal_path, world)
    with ra_sync.SQLiteJournal(journal_path) as journal:
        # The sync recovery cannot run the async refund: the transaction waits, whole.
        lines = ra_sync.recover(journal)
        assert [line.outcome for line in lines] == ["unregistered"] * 3
        assert worker.world_state(world)["compensated"] == []
        assert len(ra_sync.recover(journal, dry_run=True)) == 3  # released for later
        lines = await ra.recover(journal)
        assert [line.outcome for line in lines] == ["ran"] * 3
    assert worker.world_state(world) == CLEAN


async def test_bad_input_is_refused_at_the_call_and_nothing_is_lost(
    tmp_path: Path, journal_path: str
) -> None:
    with pytest.raises(FileNotFoundError, match="path"):
        ra.SQLiteJournal(tmp_path / "missing" / "journal.db")
    with pytest.raises(ValueError, match="path"):
        ra.SQLiteJournal(":memory:")
    with pytest.raises(TypeError, match="path"):
        ra.SQLiteJournal(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="synchronous must be 'full' or 'normal'"):
        ra.SQLiteJournal(journal_path, synchronous="off")
    with pytest.raises(TypeError, match="journal"):
        await ra.recover(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist"):  # also a FileNotFoundError
        await ra.recover(tmp_path / "missing" / "journal.db")

    def not_registered(x: int) -> None:
        raise AssertionError("never runs")

    ran: list[str] = []

    @ra.compensation("test.bad_input_undo")
    def undo(what: object) -> None:
        ran.append(str(what))

    with ra.SQLiteJournal(journal_path) as journal:
        with pytest.raises(KeyError):
            async with ra.Transaction(journal=journal) as tx:
                tx.on_rollback(undo, "first")
                with pytest.raises(ValueError, match="registered by name"):
                    tx.on_rollback(not_registered, 1)
                with pytest.raises(TypeError, match="JSON"):
                    tx.on_rollback(undo, object())
                with pytest.raises(TypeError, match="JSON"):
                    tx.on_rollback(undo, (1, 2))  # would come back as a list
                with pytest.raises(TypeError, match="JSON"):
                    tx.on_rollback(undo, {1: "int key"})
                with pytest.raises(TypeError, match="JSON"):
                    tx.on_rollback(undo, float("nan"))
                assert [r[2] for r in _journal_rows(journal_path)] == ["test.bad_input_undo"]
                with pytest.raises(ValueError, match="journal"):
                    async with ra.Transaction(journal=ra.SQLiteJournal(journal_path)):
                        pass
                raise KeyError("x")
    assert ran == ["first"]
    with pytest.raises(ValueError, match="already registered"):
        ra.compensation("test.bad_input_undo")(not_registered)
    with pytest.raises(ValueError, match="non-empty"):
        ra.compensation(" ")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resilient_async", "recover", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_cli_recover_prints_a_table_and_dry_run_changes_nothing(
    journal_path: str, world: str
) -> None:
    _crash_a_saga(journal_path, world)
    missing = _cli(journal_path, "--dry-run")
    assert missing.returncode == 1
    assert missing.stdout.count("unregistered") == 3
    assert "--import" in missing.stdout

    dry = _cli(journal_path, "--dry-run", "--import", "tests._tx_worker")
    assert dry.returncode == 0, dry.stderr
    header, rule, *rows, summary = dry.stdout.strip().splitlines()
    assert header.split() == [
        "transaction",
        "name",
        "pid",
        "step",
        "compensation",
        "arguments",
        "outcome",
    ]
    assert set(rule) <= {"-", " "}
    assert [row.split()[4] for row in rows] == [
        "worker.cancel_shipment",
        "worker.refund",
        "worker.release_stock",
    ]
    assert all(row.split()[-1] == "pending" and "order" in row for row in rows)
    assert "would run 3" in summary
    assert worker.world_state(world)["compensated"] == []

    done = _cli(journal_path, "--import", "tests._tx_worker")
    assert done.returncode == 0, done.stderr
    assert sum(line.endswith(" ran") for line in done.stdout.splitlines()) == 3
    assert worker.world_state(world) == CLEAN
    again = _cli(journal_path, "--import", "tests._tx_worker")
    assert again.returncode == 0
    assert "0 pending" in again.stdout

    bad = _cli(str(Path(journal_path).parent / "nowhere" / "j.db"))
    assert bad.returncode == 2
    assert "does not exist" in bad.stderr


async def test_a_cancel_during_a_journaled_rollback_cuts_nothing_short(journal_path: str) -> None:
    ran: list[int] = []
    scope = anyio.CancelScope()

    @ra.compensation("test.cancelling_undo")
    async def undo(step: int) -> None:
        if step == 2:
            scope.cancel()  # the enclosing scope is cancelled during the rollback
        await anyio.sleep(0.01)  # a checkpoint: it would be interrupted if not shielded
        ran.append(step)

    with ra.SQLiteJournal(journal_path) as journal:
        with scope:
            with pytest.raises(ValueError):
                async with ra.Transaction(journal=journal) as tx:
                    for step in range(3):
                        tx.on_rollback(undo, step)
                    raise ValueError("x")
            pytest.fail("the cancellation was lost")  # pragma: no cover
        assert scope.cancelled_caught
        assert ran == [2, 1, 0]
        assert _journal_rows(journal_path) == []  # every record crossed out, shielded too


async def test_two_recoveries_at_once_run_each_compensation_once(
    journal_path: str, world: str
) -> None:
    _crash_a_saga(journal_path, world)
    results: list[list[str]] = []

    async def recover_with_a_journal_of_its_own() -> None:
        with ra.SQLiteJournal(journal_path) as journal:
            results.append([line.outcome for line in await ra.recover(journal)])

    async with anyio.create_task_group() as tg:
        tg.start_soon(recover_with_a_journal_of_its_own)
        tg.start_soon(recover_with_a_journal_of_its_own)
    assert sorted(results) == [[], ["ran", "ran", "ran"]]
    assert worker.world_state(world) == CLEAN
    # The dead owners' lock files were swept; the recoveries' own went with close().
    assert list(Path(journal_path + ".owners").iterdir()) == []
