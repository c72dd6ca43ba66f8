"""A database connection enlisted in a `Transaction`: its own transaction, or a savepoint.

The same SQL on every driver (aiosqlite, asyncpg; sqlite3 in the sync twin); which driver a
connection belongs to is the backend's `database_of`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Enlisted", "in_transaction"]


class Enlisted:
    """One connection in one transaction: its own database transaction, or a savepoint."""

    __slots__ = ("connection", "driver", "finished", "inherited", "savepoint", "started")

    def __init__(self, connection: Any, driver: str, savepoint: str | None, *, inherited: bool):
        self.connection = connection
        self.driver = driver
        self.savepoint = savepoint
        self.inherited = inherited  # a savepoint on a connection of an enclosing transaction
        self.started = False
        self.finished = False

    async def begin(self) -> None:
        sql = "BEGIN" if self.savepoint is None else f"SAVEPOINT {self.savepoint}"
        await self.connection.execute(sql)
        self.started = True

    async def commit(self) -> None:
        sql = "COMMIT" if self.savepoint is None else f"RELEASE SAVEPOINT {self.savepoint}"
        await self.connection.execute(sql)
        self.finished = True

    async def rollback(self) -> None:
        self.finished = True
        if self.savepoint is None:
            if in_transaction(self.connection, self.driver):
                await self.connection.execute("ROLLBACK")
            return
        await self.connection.execute(f"ROLLBACK TO SAVEPOINT {self.savepoint}")
        await self.connection.execute(f"RELEASE SAVEPOINT {self.savepoint}")


def in_transaction(connection: Any, driver: str) -> bool:
    """Tell whether `connection` (of `driver`: "sqlite" or "postgres") is in a transaction."""
    if driver == "postgres":
        return bool(connection.is_in_transaction())
    return bool(connection.in_transaction)
