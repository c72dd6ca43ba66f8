"""The durable journal of compensations, and the registry of compensations by name.

`SQLiteJournal` keeps, in a SQLite file (stdlib `sqlite3`, WAL mode, `synchronous=FULL`), one
row per open transaction and one per compensation it registered, so that `recover` can run
the compensations of a transaction whose process died. Its methods are blocking: the async
drivers call them in a worker thread, the sync ones directly. A lock prevents two threads
from using the one connection at once.

Which process owns a transaction: each journal object (one per process, as a rule) holds an
exclusive `flock` on a lock file of its own, `<journal>.owners/<owner>.lock`, for as long as
it is open; the kernel drops the lock when the process dies, even by SIGKILL. A transaction
whose owner's lock can be taken belongs to a dead process. Unlike a pid, such a lock can
never be mistaken for a new process that reused the pid.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ._core.compensations import JournalRow

__all__ = ["RecoveredCompensation", "SQLiteJournal", "compensation", "registered_compensation"]

F = TypeVar("F", bound=Callable[..., Any])

_REGISTRY: dict[str, Callable[..., Any]] = {}
_NAMES: dict[int, str] = {}  # id(fn) -> name; the registry keeps fn alive, so ids stay valid
_REGISTRY_LOCK = threading.Lock()


def compensation(name: str) -> Callable[[F], F]:
    """Register a compensation under `name`, so that a journal can record it and recovery run it.

    A journal stores the name and the JSON-encoded arguments, never the function: after a
    crash, `recover` looks the name up in the process that recovers, which must have imported
    the module that registers it. The function (sync or async) is returned unchanged.
    Compensations should be idempotent: one interrupted by a crash runs again on recovery.

    Args:
        name: A stable, unique name (it outlives the process, in the journal).

    Raises:
        TypeError: `name` is not a string, or what is decorated is not callable.
        ValueError: `name` is empty, or already registered for another function.

    Example:
        ```python
        @ra.compensation("inventory.release")
        async def release(sku: str, quantity: int) -> None: ...
        ```
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    if not name.strip():
        raise ValueError("name must be a non-empty string")

    def register(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@compensation({name!r}) needs a callable, got {fn!r}")
        with _REGISTRY_LOCK:
            existing = _REGISTRY.get(name)
            if existing is not None and existing is not fn and _where(existing) != _where(fn):
                raise ValueError(
                    f"compensation name {name!r} is already registered for {_where(existing)}"
                )
            if existing is not None:
                _NAMES.pop(id(existing), None)  # the same function defined again (a reload)
            _REGISTRY[name] = fn
            _NAMES[id(fn)] = name
        return fn

    return register


def _where(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def registered_compensation(name: str) -> Callable[..., Any] | None:
    """Return the function registered under `name`, or None."""
    return _REGISTRY.get(name)


def name_of(fn: Callable[..., Any]) -> str | None:
    """Return the name `fn` was registered under with `@compensation`, or None."""
    name = _NAMES.get(id(fn))
    return name if name is not None and _REGISTRY.get(name) is fn else None


@dataclass(frozen=True)
class RecoveredCompensation:
    """One line of what `recover` did (or, in a dry run, would do).

    Attributes:
        transaction: The transaction's id in the journal.
        transaction_name: The transaction's name, or None.
        owner_pid: The pid of the process that ran it (dead by now).
        sequence: Registration number of the compensation within its transaction (from 0).
        name: The compensation's registered name.
        arguments: Its JSON-encoded `[args, kwargs]`.
        outcome: `"ran"`, `"failed"`, `"pending"` (a dry run), or `"unregistered"` (its name,
            or that of another compensation of the transaction, is not registered in this
            process, or is async and the recovery sync: the transaction is left for later).
        error: The error's `repr` when it failed, else None.
    """

    transaction: str
    transaction_name: str | None
    owner_pid: int | None
    sequence: int
    name: str
    arguments: str
    outcome: str
    error: str | None = None

    @classmethod
    def of(cls, row: JournalRow, outcome: str, error: str | None = None) -> RecoveredCompensation:
        """Build the line for `row`."""
        return cls(
            row.transaction,
            row.transaction_name,
            row.owner_pid,
            row.sequence,
            row.name,
            row.arguments,
            outcome,
            error,
        )


class JournalPathError(FileNotFoundError, ValueError):
    """The directory of a journal's path does not exist: a missing file and a bad value."""


_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    id TEXT PRIMARY KEY,
    name TEXT,
    owner TEXT,
    pid INTEGER,
    host TEXT,
    started REAL
);
CREATE TABLE IF NOT EXISTS compensations (
    tx TEXT NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    arguments TEXT NOT NULL,
    PRIMARY KEY (tx, seq)
);
"""


class SQLiteJournal:
    """A durable journal of compensations in a SQLite file, for recovery after a crash.

    Give it to `Transaction(journal=...)`: each compensation registered with `on_rollback`
    (it must be registered by name with `@compensation`, its arguments JSON values) is
    written, and synced to disk, before `on_rollback` returns; it is crossed out once it has
    run, and the transaction's rows go when the transaction ends. What a crashed process left
    behind, `recover(journal)` runs.

    Fsync policy: WAL mode, and by default `synchronous="full"`: every write is one commit
    that fsyncs the write-ahead log before it returns, so a registration survives a power loss
    or an OS crash, not only the death of the process. `synchronous="normal"` skips that fsync
    (the log is synced at checkpoints): a record still survives the death of the process
    (SIGKILL, a crash), since it is in the operating system's cache, but not a power loss; it
    makes a registration many times cheaper. The file is opened on first use (by a
    `Transaction` or `recover`), in a worker thread from async code. It needs POSIX file
    locks (`fcntl.flock`) to tell live owners from dead ones, and a local file system.

    Args:
        path: The journal file; its directory must exist. Created when missing.
        synchronous: `"full"` (fsync every write) or `"normal"` (survive process crashes only).

    Raises:
        TypeError: `path` is not a str or path-like.
        ValueError: `path` is empty or `":memory:"` (a journal must outlive the process), or
            `synchronous` is not `"full"` or `"normal"`.
        FileNotFoundError: The directory of `path` does not exist (the error is also a
            `ValueError`: a bad value of `path`).
        IsADirectoryError: `path` is a directory.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "full") -> None:
        if not isinstance(synchronous, str) or synchronous.lower() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
        text = os.fspath(path)
        if not text or text == ":memory:":
            raise ValueError(f"path must name a file (a journal outlives its process): {text!r}")
        resolved = Path(text).absolute()
        if not resolved.parent.is_dir():
            raise JournalPathError(
                errno.ENOENT,
                f"path {text!r}: its directory {str(resolved.parent)!r} does not exist",
            )
        if resolved.is_dir():
            raise IsADirectoryError(f"path {text!r} is a directory; give a file path")
        self.path = resolved
        self.synchronous = synchronous.lower()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._owner: str | None = None
        self._owner_fd: int | None = None

    def __repr__(self) -> str:
        return f"SQLiteJournal({str(self.path)!r})"

    @property
    def _owners_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".owners")

    @property
    def is_open(self) -> bool:
        """True once the file is open (first use) and until `close()`."""
        return self._db is not None

    def open(self) -> None:
        """Open the file and take this journal's owner lock; nothing happens when already open.

        Blocking: async code gets this done in a worker thread by `Transaction` and `recover`.

        Raises:
            RuntimeError: The platform has no `fcntl.flock`.
            sqlite3.Error, OSError: The file cannot be opened or created.
        """
        with self._lock:
            if self._db is not None:
                return
            owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
            fd = _lock_owner_file(self._owners_dir, owner)
            try:
                db = sqlite3.connect(
                    self.path, timeout=30.0, isolation_level=None, check_same_thread=False
                )
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.synchronous]}")
                    db.executescript(_SCHEMA)
                except BaseException:
                    db.close()
                    raise
            except BaseException:
                _unlock_owner_file(self._owners_dir, owner, fd)
                raise
            self._db, self._owner, self._owner_fd = db, owner, fd

    def close(self) -> None:
        """Close the file and release the owner lock.

        Transactions of this journal that are still open then count as abandoned: `recover`
        may run their compensations. Using the journal again opens it anew.
        """
        with self._lock:
            db, owner, fd = self._db, self._owner, self._owner_fd
            self._db = self._owner = self._owner_fd = None
            if db is not None:
                db.close()
            if owner is not None and fd is not None:
                _unlock_owner_file(self._owners_dir, owner, fd)

    def __enter__(self) -> SQLiteJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- used by Transaction and recover --------------------------------------------

    def record(
        self, transaction: str, transaction_name: str | None, sequence: int, name: str, args: str
    ) -> None:
        """Write one compensation (and its transaction, on the first one), durably."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                if sequence == 0:
                    db.execute(
                        "INSERT OR IGNORE INTO transactions VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            transaction,
                            transaction_name,
                            self._owner,
                            os.getpid(),
                            socket.gethostname(),
                            time.time(),
                        ),
                    )
                db.execute(
                    "INSERT INTO compensations VALUES (?, ?, ?, ?)",
                    (transaction, sequence, name, args),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def settle(self, transaction: str, sequence: int) -> None:
        """Cross out one compensation: it has run (or failed, which also counts as its run)."""
        with self._lock:
            self._connection().execute(
                "DELETE FROM compensations WHERE tx = ? AND seq = ?", (transaction, sequence)
            )

    def finish(self, transaction: str) -> None:
        """Drop a transaction and whatever it still holds (it committed or rolled back)."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM compensations WHERE tx = ?", (transaction,))
            db.execute("DELETE FROM transactions WHERE id = ?", (transaction,))
            db.execute("COMMIT")

    def claim_abandoned(self, *, dry_run: bool = False) -> tuple[list[str], list[JournalRow]]:
        """Take over the transactions of dead owners; return their ids and pending compensations.

        Claiming makes this journal their owner, in one write transaction, so that two
        recoveries running at once never both run them; should this process die too, a
        later recovery takes them over again. A dry run claims nothing.
        """
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                owners = [r[0] for r in db.execute("SELECT DISTINCT owner FROM transactions")]
                dead = [o for o in owners if not self._owner_alive(o)]
                ids = [
                    r[0]
                    for owner in dead
                    for r in db.execute(
                        "SELECT id FROM transactions WHERE owner IS ? ORDER BY started", (owner,)
                    )
                ]
                if not dry_run:
                    db.executemany(
                        "UPDATE transactions SET owner = ? WHERE id = ?",
                        [(self._owner, i) for i in ids],
                    )
                rows = [
                    JournalRow(*row)
                    for i in ids
                    for row in db.execute(
                        "SELECT t.id, t.name, t.pid, c.seq, c.name, c.arguments "
                        "FROM transactions t JOIN compensations c ON c.tx = t.id "
                        "WHERE t.id = ?",
                        (i,),
                    )
                ]
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if not dry_run:
            self._sweep_dead_owner_files()
        return ids, rows

    def _sweep_dead_owner_files(self) -> None:
        """Remove the lock files of owners that died (with or without open transactions)."""
        for path in self._owners_dir.glob("*.lock"):
            owner = path.name.removesuffix(".lock")
            if not self._owner_alive(owner):
                _remove_owner_file(self._owners_dir, owner)

    def release(self, transaction: str) -> None:
        """Give up a claimed transaction: a later recovery (in any process) may take it."""
        with self._lock:
            self._connection().execute(
                "UPDATE transactions SET owner = NULL WHERE id = ?", (transaction,)
            )

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"{self!r} is not open")
        return self._db

    def _owner_alive(self, owner: str | None) -> bool:
        if owner is None:
            return False
        if owner == self._owner:
            return True
        path = self._owners_dir / f"{owner}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            import fcntl

            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)


def _lock_owner_file(directory: Path, owner: str) -> int:
    """Create and lock this owner's lock file; the lock lives as long as the process."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        raise RuntimeError("SQLiteJournal needs POSIX file locks (fcntl.flock)") from None
    directory.mkdir(exist_ok=True)
    path = directory / f"{owner}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # Blocking: a recovery checking liveness holds the lock for an instant only.
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        # A recovery swept the file away before it was locked (it looked dead): make it anew.
        os.close(fd)


def _unlock_owner_file(directory: Path, owner: str, fd: int) -> None:
    _remove_owner_file(directory, owner)  # removed first: a recovery then sees no owner
    os.close(fd)  # closing drops the lock


def _remove_owner_file(directory: Path, owner: str) -> None:
    (directory / f"{owner}.lock").unlink(missing_ok=True)
