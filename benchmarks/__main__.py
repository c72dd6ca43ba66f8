"""Run the benchmarks: `python -m benchmarks [--backend asyncio|trio] [--only WORD] [--quick]`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import harness


def _groups() -> list[harness.Group]:
    groups: list[harness.Group] = []
    import benchmarks

    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda i: i.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"benchmarks.{info.name}")
            groups.extend(module.GROUPS)
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    parser.add_argument("--only", help="run only groups whose name contains this word")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args(argv)
    backends = args.backend or ["asyncio", "trio"]
    rounds, target = (3, 2e6) if args.quick else (7, 20e6)
    print(
        f"Python {sys.version.split()[0]}; median of {rounds} interleaved rounds; "
        "ratio = ns/call divided by the group's baseline"
    )
    for group in _groups():
        if args.only and args.only.lower() not in group.name.lower():
            continue
        for backend in backends:
            results = harness.run_group(group, backend, rounds=rounds, target_ns=target)
            if results:
                print(harness.format_results(results, group.note), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
