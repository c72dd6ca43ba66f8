"""Default rule for SQLite (sqlite3, and aiosqlite, which raises sqlite3's own errors)."""

from __future__ import annotations

from typing import Final

from ..kinds import Check, ErrorClass

__all__ = ["busy_rule"]

_BUSY_MESSAGES: Final = ("database is locked", "database table is locked")


def busy_rule(cls: type[BaseException]) -> Check | None:
    """sqlite3's `OperationalError` is transient when the database is busy or locked."""
    module = str(getattr(cls, "__module__", ""))
    if module == "sqlite3" and cls.__name__ == "OperationalError":
        return _busy_check
    return None


def _busy_check(exc: BaseException) -> ErrorClass | None:
    # SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock; it is released soon.
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str) and name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return ErrorClass.TRANSIENT
    message = str(exc)
    return ErrorClass.TRANSIENT if message.startswith(_BUSY_MESSAGES) else None
