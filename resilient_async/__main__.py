"""Command line: `python -m resilient_async demo [--scenario S] [--backend B] [--seconds S] ...`."""

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
        help="send one workload to a failing dependency, unprotected and through a pipeline",
        description="Send one workload to a simulated dependency that turns flaky, slow, then "
        "down, from two groups of clients: unprotected, and through a resilient_async "
        "pipeline. A live view shows both sides while it runs; a final report explains what "
        "the library did.",
    )
    demo.add_argument(
        "--scenario",
        choices=["pipeline", "supervision"],
        default="pipeline",
        help="pipeline: a failing dependency, unprotected and guarded (default); "
        "supervision: a supervised worker pool whose workers crash and come back",
    )
    demo.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    demo.add_argument("--seconds", type=float, default=30.0, help="length of the run (default 30)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the simulated faults")
    demo.add_argument("--clients", type=int, default=40, help="concurrent clients per side")
    demo.add_argument("--quiet", action="store_true", help="print the final report only")
    demo.add_argument(
        "--virtual-time",
        action="store_true",
        help="run on a simulated clock that skips idle time: the same run in a few seconds",
    )
    args = parser.parse_args(argv)
    from ._demo import run_demo

    if args.seconds <= 0 or args.clients < 1:
        parser.error("--seconds must be > 0 and --clients >= 1")
    if args.backend == "trio" and not _importable("trio"):
        parser.error("--backend trio needs trio: pip install 'resilient-async[trio]'")
    if args.scenario == "supervision":
        from ._demo_supervision import run_supervision_demo

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
