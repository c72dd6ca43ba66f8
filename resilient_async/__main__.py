"""Command line of resilient_async.

- `python -m resilient_async demo [--scenario S] [--backend B] [--seconds S] ...`
- `python -m resilient_async recover JOURNAL_PATH [--dry-run] [--import MODULE ...]`
"""

from __future__ import annotations

import argparse
import importlib
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m resilient_async")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="watch the library work: a failing dependency, a supervised pool, or a saga",
        description="By default, send one workload to a simulated dependency that turns "
        "flaky, slow, then down, from two groups of clients: unprotected, and through a "
        "resilient_async pipeline. A live view shows both sides while it runs; a final report "
        "explains what the library did. --scenario picks another story. With --virtual-time, "
        "a seed gives the same figures on every run.",
    )
    demo.add_argument(
        "--scenario",
        choices=["pipeline", "supervision", "saga"],
        default="pipeline",
        help="pipeline: a failing dependency, unprotected and guarded (default); "
        "supervision: a supervised worker pool whose workers crash and come back; "
        "saga: orders rolled back by their compensations, and a crash recovered",
    )
    demo.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    demo.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="length of the run (default 30; not used by saga)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=7,
        help="seed of every random choice: faults, durations, retry jitter (default 7)",
    )
    demo.add_argument(
        "--clients", type=int, default=40, help="concurrent clients per side (pipeline only)"
    )
    demo.add_argument("--quiet", action="store_true", help="print the final report only")
    demo.add_argument(
        "--virtual-time",
        action="store_true",
        help="run on a simulated clock that skips idle time: the same run in a few seconds",
    )
    recover = commands.add_parser(
        "recover",
        help="run the compensations that crashed processes left pending in a journal",
    )
    recover.add_argument("journal", metavar="JOURNAL_PATH", help="the SQLiteJournal file")
    recover.add_argument(
        "--dry-run", action="store_true", help="only list what would run; change nothing"
    )
    recover.add_argument(
        "--import",
        dest="modules",
        metavar="MODULE",
        action="append",
        default=[],
        help="import MODULE first, to register its @compensation functions (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.command == "recover":
        from ._recover_cli import run_recover

        return run_recover(args.journal, dry_run=args.dry_run, modules=args.modules)
    from ._demos.pipeline.scenario import run_demo

    if args.seconds <= 0 or args.clients < 1:
        parser.error("--seconds must be > 0 and --clients >= 1")
    if args.backend == "trio" and not _importable("trio"):
        parser.error("--backend trio needs trio: pip install 'resilient-async[trio]'")
    if args.scenario == "saga":
        from ._demos.saga.scenario import run_saga_demo

        print(
            run_saga_demo(
                backend=args.backend,
                seed=args.seed,
                progress=None if args.quiet else sys.stdout,
                virtual_time=args.virtual_time,
            )
        )
        return 0
    if args.scenario == "supervision":
        from ._demos.supervision import run_supervision_demo

        print(
            run_supervision_demo(
                backend=args.backend,
                seconds=args.seconds,
                seed=args.seed,
                progress=None if args.quiet else sys.stdout,
                virtual_time=args.virtual_time,
            )
        )
        return 0
    report = run_demo(
        backend=args.backend,
        seconds=args.seconds,
        seed=args.seed,
        clients=args.clients,
        progress=None if args.quiet else sys.stdout,
        virtual_time=args.virtual_time,
    )
    print(report)
    return 0


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
