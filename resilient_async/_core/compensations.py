"""Pure bookkeeping of compensations: argument encoding and what recovery must run.

No I/O and no clock: the journal (`resilient_async/_journal.py`) stores what this module
encodes, and hands back rows for `plan_recovery` to order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "JournalArgumentError",
    "JournalRow",
    "RecoveryPlan",
    "decode_arguments",
    "encode_arguments",
    "plan_recovery",
]


class JournalArgumentError(TypeError, ValueError):
    """Refuse a compensation that cannot be journaled: unregistered, or bad JSON arguments.

    Both a `TypeError` (what `json` raises for an object it cannot encode) and a `ValueError`
    (a bad argument value), so that either `except` catches it.
    """


def encode_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """Encode a compensation's arguments as JSON, refusing what would not come back unchanged.

    Recovery calls the compensation with the decoded arguments, so they must survive the
    round trip exactly: a tuple would come back as a list, an int dict key as a string, a
    NaN not at all.

    Raises:
        JournalArgumentError: An argument cannot be carried by JSON unchanged; the message
            names it.
    """
    named = [(f"argument {i}", v) for i, v in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for where, value in named:
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JournalArgumentError(
                f"a journaled compensation's arguments must be JSON values (str, int, float, "
                f"bool, None, lists and str-keyed dicts of them); {where} = {value!r} is not: "
                f"{exc}"
            ) from None
        if json.loads(text) != value:
            raise JournalArgumentError(
                f"a journaled compensation's arguments must come back unchanged from JSON "
                f"(use lists, not tuples; str dict keys); {where} = {value!r} would not"
            )
    return json.dumps([list(args), dict(kwargs)], allow_nan=False, separators=(",", ":"))


def decode_arguments(text: str) -> tuple[list[Any], dict[str, Any]]:
    """Decode what `encode_arguments` produced into (args, kwargs)."""
    args, kwargs = json.loads(text)
    return list(args), dict(kwargs)


@dataclass(frozen=True)
class JournalRow:
    """One compensation the journal still holds as pending.

    Attributes:
        transaction: The transaction's id.
        transaction_name: The transaction's name, or None.
        owner_pid: The pid of the process that ran the transaction.
        sequence: The compensation's registration number within its transaction (from 0).
        name: The name it was registered under with `@compensation`.
        arguments: Its arguments, as `encode_arguments` stored them.
    """

    transaction: str
    transaction_name: str | None
    owner_pid: int | None
    sequence: int
    name: str
    arguments: str


@dataclass(frozen=True)
class RecoveryPlan:
    """What recovery runs, and what it must leave for later.

    Attributes:
        runnable: Per transaction, its pending compensations in the order to run them
            (reverse registration order).
        blocked: Per transaction, its pending compensations when at least one of them cannot
            run here (its name is not registered in this process): running the others would
            break the reverse order, so none of that transaction runs.
    """

    runnable: list[list[JournalRow]]
    blocked: list[list[JournalRow]]


def plan_recovery(rows: Iterable[JournalRow], can_run: Callable[[str], bool]) -> RecoveryPlan:
    """Group pending rows by transaction, newest registration first, and split off blocked ones.

    Args:
        rows: Pending compensations of the transactions to recover; transactions keep the
            order of their first row.
        can_run: Tells whether a compensation name can be run in this process.
    """
    by_transaction: dict[str, list[JournalRow]] = {}
    for row in rows:
        by_transaction.setdefault(row.transaction, []).append(row)
    plan = RecoveryPlan([], [])
    for rows_of_one in by_transaction.values():
        pending = sorted(rows_of_one, key=lambda r: r.sequence, reverse=True)
        if all(can_run(row.name) for row in pending):
            plan.runnable.append(pending)
        else:
            plan.blocked.append(pending)
    return plan
