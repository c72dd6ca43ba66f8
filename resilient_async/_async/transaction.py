"""Transactions with compensations: undo what a failed block did, exactly once, in reverse.

A `Transaction` block collects compensations (`tx.on_rollback`) and database connections
(`tx.enlist(conn)`). When the block succeeds, the connections commit and the
compensations are dropped. When it fails or is cancelled, the connections roll back, then each
compensation runs once, newest first, to its end: shielded from cancellation, without the
failed block's deadline, in the transaction's error context. A nested `Transaction` takes a
savepoint on every connection of the enclosing ones, and hands its compensations to its parent
when it succeeds.

With a journal, each compensation is written durably when it is registered and crossed out
when it has run, so `recover` can finish the rollback of a process that died.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar, Token
from functools import partial
from types import TracebackType
from typing import Any

from .._core.checks import check_name
from .._core.compensations import JournalArgumentError, encode_arguments
from .._core.deadlines import DEADLINE
from .._core.signals import is_catchable
from .._journal import SQLiteJournal, name_of
from ..context import attach_context, error_context
from ..errors import CompensationError
from ..instrumentation import emit
from . import _backend
from .enlisted import Enlisted, in_transaction
from .retry import Retry

__all__ = ["Transaction", "run_compensation"]

_log = logging.getLogger("resilient_async")

_CURRENT: ContextVar[Transaction | None] = ContextVar("resilient_async.transaction", default=None)


class Transaction:
    """Run a block as one unit: commit everything, or roll back and compensate everything.

    On success, the enlisted connections commit (in the order they were enlisted) and the
    compensations are dropped. On an exception or a cancellation, the connections roll back,
    then the compensations run exactly once each, in reverse registration order, each to its
    end even if the task is cancelled meanwhile (a cancel that arrives during the rollback is
    raised once it is over), with no deadline of the failed block over them, and under
    `compensation_retry` when given. A compensation that fails does not stop the others.
    Then the original error propagates, or `CompensationError` (the original error first, then
    each compensation's error) when any compensation failed. A cancellation always propagates
    as it is; failed compensations are then reported by events and in the log.

    A commit that fails is handled like an error of the block. Enlisted connections are
    committed one after the other, not atomically (there is no two-phase commit).

    Nested transactions (entered inside the block, in the same task) take a savepoint on every
    connection of the enclosing ones: a failing inner block rolls back to its savepoints and
    runs its own compensations; a successful one hands its compensations to the enclosing
    transaction, which runs them if it fails in turn.

    Args:
        name: A name for events, error context and the journal.
        journal: A `SQLiteJournal` that records each compensation durably, for `recover`
            after a crash. Compensations must then be registered by name with
            `@compensation` and take JSON arguments. A nested transaction uses the journal
            of the outermost one.
        compensation_retry: A `Retry` that runs each compensation (a nested transaction
            inherits the enclosing one's when it has none).

    Raises:
        TypeError: An argument is of the wrong type.

    Example (sync code: a plain `with`, and no `await`):
        ```python
        async with ra.Transaction("order") as tx:
            await inventory.reserve(sku, 1)
            tx.on_rollback(inventory.release, sku, 1)
            await payments.charge(card, amount)
            tx.on_rollback(payments.refund, card, amount)
        ```
    """

    __slots__ = (
        "_compensation_retry",
        "_connections",
        "_id",
        "_journal",
        "_name",
        "_next_sequence",
        "_parent",
        "_root",
        "_savepoints",
        "_state",
        "_steps",
        "_token",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        journal: SQLiteJournal | None = None,
        compensation_retry: Retry | None = None,
    ) -> None:
        name = check_name(name)
        if journal is not None and not isinstance(journal, SQLiteJournal):
            raise TypeError(f"journal must be a SQLiteJournal or None, got {journal!r}")
        if compensation_retry is not None and not isinstance(compensation_retry, Retry):
            raise TypeError(
                "compensation_retry must be a Retry of the same mode as the Transaction "
                f"(resilient_async.Retry, or resilient_async.sync.Retry for the sync one), "
                f"got {compensation_retry!r}"
            )
        self._name = name
        self._journal = journal
        self._compensation_retry = compensation_retry
        self._state = "new"
        self._steps: list[_Step] = []
        self._connections: list[Enlisted] = []
        self._parent: Transaction | None = None
        self._root: Transaction = self
        self._id = ""
        self._next_sequence = 0
        self._savepoints = 0
        self._token: Token[Transaction | None] | None = None

    @property
    def name(self) -> str | None:
        """The name used in the journal, the logs and the error context, or None."""
        return self._name

    @property
    def journal(self) -> SQLiteJournal | None:
        """Where compensations are recorded for `recover` (a nested one uses its root's)."""
        return self._journal

    @property
    def compensation_retry(self) -> Retry | None:
        """The `Retry` each compensation runs under (a nested one inherits its parent's)."""
        return self._compensation_retry

    def __repr__(self) -> str:
        return f"Transaction(name={self.name!r}, state={self._state!r})"

    def on_rollback(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Register `fn(*args, **kwargs)` to run if the transaction rolls back.

        Register a step's compensation right after the step has completed: compensations run
        newest first. `fn` is a plain callable, or in async code also an async one. With a
        journal, `fn` must be registered with `@compensation` and its arguments must be JSON
        values; the record is committed (and, with `synchronous="full"`, fsynced) before this
        returns. That write blocks the calling thread for one commit, so that nothing can
        come between the step and its record.

        Raises:
            TypeError: `fn` is not callable.
            ValueError: With a journal, `fn` is not registered by name, or an argument cannot
                be carried by JSON (the error is a `TypeError` too).
            RuntimeError: Called outside the transaction's block.
        """
        if not callable(fn):
            raise TypeError(f"on_rollback needs a callable compensation, got {fn!r}")
        _backend.check_compensation(fn)
        self._check_active("on_rollback")
        name: str | None = None  # the registered name; else the qualified name, when needed
        sequence = -1
        journal = self.journal
        if journal is not None:
            registered = name_of(fn)
            if registered is None:
                raise JournalArgumentError(
                    f"with a journal, a compensation must be registered by name with "
                    f"@compensation('...') so that recovery can find it; {fn!r} is not"
                )
            arguments = encode_arguments(args, kwargs)
            root = self._root
            sequence = root._next_sequence
            journal.record(root._id, root.name, sequence, registered, arguments)
            root._next_sequence = sequence + 1
            name = registered
        self._steps.append(_Step(fn, args, kwargs, name, sequence))

    async def enlist(self, connection: Any) -> None:
        """Join a database connection: it commits with the block, or rolls back with it.

        Takes an aiosqlite or asyncpg connection (a `sqlite3.Connection` in the sync twin).
        A transaction is begun on it, or a savepoint when it is already inside one (which
        stays the caller's to end). A connection of an enclosing transaction is already
        covered by a savepoint: enlisting it again in a nested one does nothing.

        Raises:
            RuntimeError: Called outside the block, or on trio (both drivers are asyncio-only).
            TypeError: `connection` is of another kind.
            ValueError: `connection` is already enlisted in this transaction.
        """
        _backend.require_asyncio(
            "Transaction.enlist", "the drivers it joins (aiosqlite, asyncpg) are asyncio-only"
        )
        self._check_active("enlist")
        driver = _backend.database_of(connection)
        for enlisted in self._connections:
            if enlisted.connection is connection:
                if enlisted.inherited:
                    return
                raise ValueError(f"this connection is already enlisted in {self!r}; enlist it once")
        savepoint = self._root._savepoint_name() if in_transaction(connection, driver) else None
        enlisted = Enlisted(connection, driver, savepoint, inherited=False)
        self._connections.append(enlisted)
        try:
            await _backend.run_to_completion(enlisted.begin)
        except BaseException:
            if not enlisted.started:
                self._connections.remove(enlisted)
            raise

    async def __aenter__(self) -> Transaction:
        if self._state != "new":
            raise RuntimeError(f"{self!r} was already entered: use a new Transaction per block")
        parent = _CURRENT.get()
        if parent is None:
            if self.journal is not None:
                self._id = uuid.uuid4().hex
                if not self.journal.is_open:
                    await _backend.run_in_thread(self.journal.open)
        else:
            self._join(parent)
            if parent._connections:
                try:
                    await _backend.run_to_completion(partial(self._take_savepoints, parent))
                except BaseException:
                    await _backend.run_to_completion(self._roll_back_connections)
                    raise
        self._state = "active"
        self._token = _CURRENT.set(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "done"
        self._leave()
        if exc is None:
            # Without connections there is nothing to await, nor to shield.
            if self._connections:
                failure = await _backend.run_to_completion(self._commit)
            else:
                self._hand_over()
                failure = None
            if failure is None:
                if self._parent is None and self._next_sequence:
                    await _backend.run_in_thread(self._written_journal().finish, self._id)
                return
            error: BaseException = failure
        else:
            error = exc
        failures: list[Exception] = []
        try:
            await _backend.run_to_completion(partial(self._roll_back, failures))
        except BaseException:
            self._log_unraised(failures)  # a cancellation that arrived during the rollback
            raise
        if not is_catchable(error):
            self._log_unraised(failures)
            return  # the cancellation propagates as it is
        if failures:
            raise CompensationError(
                f"{len(failures)} compensation(s) failed while rolling back "
                f"{self.name or 'a transaction'}",
                [error, *failures],
            )
        if error is not exc:
            raise error

    # --- the steps of a transaction ---------------------------------------------------

    def _check_active(self, what: str) -> None:
        if self._state != "active":
            raise RuntimeError(
                f"{what} can only be used inside the transaction's block; {self!r} is not in it"
            )

    def _written_journal(self) -> SQLiteJournal:
        assert self.journal is not None  # only called once a record was written
        return self.journal

    def _savepoint_name(self) -> str:
        self._savepoints += 1
        return f"resilient_async_{self._savepoints}"

    def _join(self, parent: Transaction) -> None:
        root = parent._root
        if self.journal is not None and self.journal is not root.journal:
            raise ValueError(
                "a nested Transaction records into the journal of the outermost one; "
                "give it no journal"
            )
        self._parent = parent
        self._root = root
        self._journal = root.journal
        if self._compensation_retry is None:
            self._compensation_retry = parent.compensation_retry

    def _leave(self) -> None:
        token, self._token = self._token, None
        if token is None:
            return
        try:
            _CURRENT.reset(token)
        except ValueError:  # exited in another copy of the context than it was entered in
            _CURRENT.set(self._parent)

    async def _take_savepoints(self, parent: Transaction) -> None:
        for outer in parent._connections:
            savepoint = self._root._savepoint_name()
            enlisted = Enlisted(outer.connection, outer.driver, savepoint, inherited=True)
            self._connections.append(enlisted)
            await enlisted.begin()

    async def _commit(self) -> Exception | None:
        """Commit (or, nested, release and hand over); return the error of a failed commit."""
        parent = self._parent
        try:
            for enlisted in self._connections:
                if parent is None or enlisted.inherited:
                    await enlisted.commit()
                else:
                    parent._connections.append(enlisted)  # committed when the parent is
        except Exception as failure:
            return failure
        self._hand_over()
        return None

    def _hand_over(self) -> None:
        """Give a nested transaction's compensations to its parent, once it has committed."""
        if self._parent is not None:
            self._parent._steps.extend(self._steps)

    async def _roll_back_connections(self) -> None:
        for enlisted in reversed(self._connections):
            if enlisted.started and not enlisted.finished:
                try:
                    await enlisted.rollback()
                except Exception:
                    # The server drops the transaction when the connection goes; the block's
                    # own error is what the caller must see.
                    _log.warning("rolling back a connection of %r failed", self, exc_info=True)

    async def _roll_back(self, failures: list[Exception]) -> None:
        await self._roll_back_connections()
        journal = self.journal
        root_id = self._root._id
        token = DEADLINE.set(None)  # its own time: not the deadline the block exceeded
        try:
            with error_context(**({} if self.name is None else {"transaction": self.name})):
                for step in reversed(self._steps):
                    failure = await run_compensation(
                        step.fn, step.args, step.kwargs, self.compensation_retry
                    )
                    _report(self.name, step.label, failure, failures)
                    if journal is not None and step.sequence >= 0:
                        await _settle(journal, root_id, step.sequence)
        finally:
            DEADLINE.reset(token)
        if journal is not None and self._parent is None and self._next_sequence:
            try:
                await _backend.run_in_thread(journal.finish, root_id)
            except Exception:
                _log.exception("the journal could not drop transaction %s", root_id)

    def _log_unraised(self, failures: Sequence[Exception]) -> None:
        for failure in failures:
            _log.error(
                "a compensation of transaction %s failed during a rollback that ended in a "
                "cancellation",
                self.name,
                exc_info=failure,
            )


async def run_compensation(
    fn: Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    retry: Retry | None,
) -> Exception | None:
    """Run one compensation (under `retry` when given); return its error instead of raising it.

    Cancellation and other non-`Exception` errors propagate.
    """
    try:
        if retry is None:
            await _backend.invoke(fn, *args, **kwargs)
        else:
            await retry.call(_backend.invoke, fn, *args, **kwargs)
    except Exception as failure:
        return failure
    return None


def _report(
    transaction: str | None, name: str, failure: Exception | None, failures: list[Exception]
) -> None:
    if failure is None:
        emit("compensation.ran", transaction, compensation=name)
        return
    attach_context(failure, {"transaction": transaction, "compensation": name})
    failures.append(failure)
    emit("compensation.failed", transaction, compensation=name, exception=failure)


async def _settle(journal: SQLiteJournal, transaction: str, sequence: int) -> None:
    try:
        await _backend.run_in_thread(journal.settle, transaction, sequence)
    except Exception:
        # The compensation ran; its record stays, so a recovery may run it again (which
        # compensations must tolerate). Stopping here would leave the others undone.
        _log.exception("the journal could not cross out compensation %s", sequence)


class _Step:
    """One registered compensation."""

    __slots__ = ("args", "fn", "kwargs", "name", "sequence")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        name: str | None,
        sequence: int,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.name = name
        self.sequence = sequence  # its number in the journal, -1 when not journaled

    @property
    def label(self) -> str:
        """The name for events and error context."""
        if self.name is not None:
            return self.name
        return getattr(self.fn, "__qualname__", None) or repr(self.fn)
