"""`python -m resilient_async recover`: recovery of a journal for operators, as a table."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import anyio

from ._async.recovery import recover
from ._journal import RecoveredCompensation, SQLiteJournal

__all__ = ["format_table", "run_recover"]

_HEADERS = ("transaction", "name", "pid", "step", "compensation", "arguments", "outcome")


def run_recover(
    path: str, *, dry_run: bool, modules: Sequence[str], out: TextIO = sys.stdout
) -> int:
    """Recover the journal at `path` and print what was compensated; return the exit status.

    The status is 0 when every pending compensation ran (or, in a dry run, could run), 1 when
    one failed or is not registered, 2 on a bad journal path or module.
    """
    sys.path.insert(0, os.getcwd())  # like `python -m`: modules of the current directory
    try:
        for module in modules:
            importlib.import_module(module)
        journal = SQLiteJournal(path)
    except (ImportError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not journal.path.exists():
        print(f"error: no journal at {path!r}", file=sys.stderr)
        return 2
    try:
        lines = anyio.run(_recover, journal, dry_run)
    finally:
        journal.close()
    print(format_table(lines), file=out)
    verb = "would run" if dry_run else "ran"
    done = sum(line.outcome in ("ran", "pending") for line in lines)
    print(f"{len(lines)} pending compensation(s); {verb} {done}.", file=out)
    if any(line.outcome == "unregistered" for line in lines):
        print(
            "Some compensations are not registered here: pass the modules that define them "
            "with --import MODULE.",
            file=out,
        )
    return 0 if all(line.outcome in ("ran", "pending") for line in lines) else 1


async def _recover(journal: SQLiteJournal, dry_run: bool) -> list[RecoveredCompensation]:
    return await recover(journal, dry_run=dry_run)


def format_table(lines: Sequence[RecoveredCompensation]) -> str:
    """Render recovery lines as a plain text table (a failed line shows its error below)."""
    rows = [
        (
            line.transaction[:12],
            line.transaction_name or "-",
            str(line.owner_pid or "-"),
            str(line.sequence),
            line.name,
            _shorten(line.arguments, 40),
            line.outcome,
        )
        for line in lines
    ]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(_HEADERS)]
    out = ["  ".join(h.ljust(w) for h, w in zip(_HEADERS, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for row, line in zip(rows, lines, strict=True):
        out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if line.error is not None:
            out.append(f"    error: {line.error}")
    return "\n".join(out)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
