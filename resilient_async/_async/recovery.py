"""Recovery: finish the rollbacks that crashed processes left in a journal.

`recover(journal)` takes over the transactions whose owning process is dead (never those of a
live one), runs their pending compensations newest first, crossing each out once it has run,
and drops each transaction when it is done. If recovery itself dies, the next one takes the
same transactions over and goes on where it stopped.
"""

from __future__ import annotations

# unasync: sync-only: import inspect
import os
from functools import partial

from .._core.compensations import JournalRow, decode_arguments, plan_recovery
from .._journal import RecoveredCompensation, SQLiteJournal, registered_compensation
from ..context import error_context
from ..instrumentation import emit
from . import _backend
from .retry import Retry
from .transaction import run_compensation

__all__ = ["recover"]


async def recover(
    journal: SQLiteJournal | str | os.PathLike[str],
    *,
    dry_run: bool = False,
    compensation_retry: Retry | None = None,
) -> list[RecoveredCompensation]:
    """Run the pending compensations of transactions left open by processes that died.

    A transaction belongs to a dead process when its owner's lock on the journal is gone (see
    `SQLiteJournal`); those of live processes, this one included, are never touched. Each
    pending compensation runs once, newest first, to its end (shielded from cancellation),
    and is crossed out in the journal right after; a failing one is reported and crossed out
    too (every compensation gets one run, as in a live rollback). A transaction with a
    compensation whose name this process has not registered (import the module that
    registers it first) is left pending, whole, for a later recovery. Running `recover`
    again after it crashed, or concurrently in another process, never runs a compensation
    twice, except one that was running when the process died: compensations should be
    idempotent.

    Args:
        journal: The journal to recover, or its path (opened and closed here).
        dry_run: Only list what would run; claim and run nothing.
        compensation_retry: A `Retry` to run each compensation under.

    Returns:
        One line per compensation: run, failed, pending (dry run) or unregistered.

    Raises:
        TypeError: `journal` is not a `SQLiteJournal` or a path, or `compensation_retry` is
            not a `Retry`.
        FileNotFoundError: `journal` is a path in a directory that does not exist.
    """
    if compensation_retry is not None and not isinstance(compensation_retry, Retry):
        raise TypeError(f"compensation_retry must be a Retry, got {compensation_retry!r}")
    if isinstance(journal, str | os.PathLike):
        opened = SQLiteJournal(journal)
        try:
            return await recover(opened, dry_run=dry_run, compensation_retry=compensation_retry)
        finally:
            await _backend.run_in_thread(opened.close)
    if not isinstance(journal, SQLiteJournal):
        raise TypeError(f"journal must be a SQLiteJournal or a path, got {journal!r}")
    if not journal.is_open:
        await _backend.run_in_thread(journal.open)
    claimed, rows = await _backend.run_in_thread(partial(journal.claim_abandoned, dry_run=dry_run))
    plan = plan_recovery(rows, _can_run)
    report: list[RecoveredCompensation] = []
    for pending in plan.blocked:
        report.extend(RecoveredCompensation.of(row, "unregistered") for row in pending)
    if dry_run:
        for pending in plan.runnable:
            report.extend(RecoveredCompensation.of(row, "pending") for row in pending)
        return report
    to_release = [pending[0].transaction for pending in plan.blocked]
    unfinished = [t for t in claimed if t not in set(to_release)]
    try:
        for pending in plan.runnable:
            for row in pending:
                line = await _backend.run_to_completion(
                    partial(_run_one, journal, row, compensation_retry)
                )
                report.append(line)
            await _backend.run_in_thread(journal.finish, pending[0].transaction)
            unfinished.remove(pending[0].transaction)
        for transaction in list(unfinished):  # claimed with nothing left pending
            await _backend.run_in_thread(journal.finish, transaction)
            unfinished.remove(transaction)
    finally:
        # What stays claimed and unfinished (blocked, or a cancellation) goes back to the
        # pool: a later recovery, in this process too, may take it.
        await _backend.run_to_completion(partial(_release, journal, to_release + unfinished))
    return report


def _can_run(name: str) -> bool:
    fn = registered_compensation(name)
    if fn is None:
        return False
    # unasync: sync-only: if inspect.iscoroutinefunction(fn):
    # unasync: sync-only:     return False
    return callable(fn)


async def _run_one(
    journal: SQLiteJournal, row: JournalRow, retry: Retry | None
) -> RecoveredCompensation:
    fn = registered_compensation(row.name)
    assert fn is not None  # checked by the plan
    args, kwargs = decode_arguments(row.arguments)
    with error_context(transaction=row.transaction_name, recovery=True):
        failure = await run_compensation(fn, args, kwargs, retry)
    await _backend.run_in_thread(journal.settle, row.transaction, row.sequence)
    if failure is None:
        emit("compensation.ran", row.transaction_name, compensation=row.name, recovered=True)
        return RecoveredCompensation.of(row, "ran")
    emit(
        "compensation.failed",
        row.transaction_name,
        compensation=row.name,
        exception=failure,
        recovered=True,
    )
    return RecoveredCompensation.of(row, "failed", repr(failure))


async def _release(journal: SQLiteJournal, transactions: list[str]) -> None:
    for transaction in transactions:
        await _backend.run_in_thread(journal.release, transaction)
