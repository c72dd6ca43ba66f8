"""Default rules for PostgreSQL drivers (asyncpg, psycopg, psycopg2): by SQLSTATE first."""

from __future__ import annotations

from typing import Final

from ..kinds import Check, ErrorClass

__all__ = ["CLASSES", "sqlstate_rule"]

# The answers for errors without a known SQLSTATE; see `rules.library_rule`.
CLASSES: Final[dict[tuple[str, str], ErrorClass]] = {
    ("psycopg", "OperationalError"): ErrorClass.TRANSIENT,
    ("psycopg2", "OperationalError"): ErrorClass.TRANSIENT,
}

# SQLSTATE codes (asyncpg's and psycopg's `.sqlstate`, psycopg2's `.pgcode`): exact codes
# first, then the two-character class.
_SQLSTATE_CODES: Final[dict[str, ErrorClass]] = {
    "40001": ErrorClass.TRANSIENT,  # serialization_failure: run the transaction again
    "40P01": ErrorClass.TRANSIENT,  # deadlock_detected
    "57P01": ErrorClass.TRANSIENT,  # admin_shutdown (pg_terminate_backend)
    "57P02": ErrorClass.TRANSIENT,  # crash_shutdown
    "57P03": ErrorClass.TRANSIENT,  # cannot_connect_now (starting up)
    "57014": ErrorClass.TIMEOUT,  # query_canceled (statement_timeout)
}
_SQLSTATE_CLASSES: Final[dict[str, ErrorClass]] = {
    "08": ErrorClass.TRANSIENT,  # connection exception
    "53": ErrorClass.THROTTLED,  # insufficient resources (too many connections, disk full)
    "22": ErrorClass.PERMANENT,  # data exception
    "23": ErrorClass.PERMANENT,  # integrity constraint violation
    "42": ErrorClass.PERMANENT,  # syntax error or access rule violation
}
_PACKAGES: Final = frozenset({"asyncpg", "psycopg", "psycopg2"})


def sqlstate_rule(cls: type[BaseException]) -> Check | None:
    """A driver's error is classified by the SQLSTATE it carries (never importing a driver)."""
    for klass in cls.__mro__:
        if str(getattr(klass, "__module__", "")).partition(".")[0] in _PACKAGES:
            return _sqlstate_check
    return None


def _sqlstate_check(exc: BaseException) -> ErrorClass | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    if not isinstance(code, str) or len(code) != 5:
        return None
    found = _SQLSTATE_CODES.get(code)
    return found if found is not None else _SQLSTATE_CLASSES.get(code[:2])
