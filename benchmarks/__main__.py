"""Run the benchmarks and, with `--report`, write the figures into the benchmarks page.

`python -m benchmarks [--backend asyncio|uvloop|trio] [--only WORD] [--quick]
[--no-scaling] [--report PAGE [--images DIR] [--no-plots]]`

`--quick` runs every case briefly (CI uses it): it fails only when a benchmark raises, never
on a timing.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from . import harness, report, scaling


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
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], action="append")
    parser.add_argument("--only", help="run only groups and scenarios whose name has this word")
    parser.add_argument("--quick", action="store_true", help="every case, briefly (for CI)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the load and memory runs")
    parser.add_argument("--report", type=Path, help="write the figures into this Markdown page")
    parser.add_argument(
        "--images", type=Path, help="where the plots go (default: PAGE's img/bench)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write the page without plots")
    args = parser.parse_args(argv)
    available = harness.backends_available()
    backends = [b for b in args.backend or available if b in available]
    rounds, target, min_calls = (2, 0.3e6, 2) if args.quick else (9, 20e6, 10)
    load_before = report.load_average()
    print(
        f"Python {sys.version.split()[0]}; backends {', '.join(backends)}; median of {rounds} "
        "interleaved rounds; ratio = ns/call divided by the group's baseline",
        flush=True,
    )
    failures: list[str] = []
    measured: list[tuple[harness.Group, list[harness.Result]]] = []
    for group in _groups():
        if args.only and args.only.lower() not in group.name.lower():
            continue
        results: list[harness.Result] = []
        for backend in backends:
            try:
                got = harness.run_group(
                    group, backend, rounds=rounds, target_ns=target, min_calls=min_calls
                )
            except Exception:
                failures.append(f"{group.name} [{backend}]")
                traceback.print_exc()
                continue
            if got:
                print(harness.format_results(got, group.note), flush=True)
            results.extend(got)
        measured.append((group, results))
    points: list[scaling.Point] = []
    memory: list[scaling.Memory] = []
    if not args.no_scaling:
        loads = [b for b in backends if b != "uvloop"]
        try:
            points = scaling.run_scaling(loads, quick=args.quick, only=args.only)
            for p in points:
                print(f"  {p.scenario} [{p.backend}] n={p.n}: {p.ns_per_op:,.0f} ns/op")
            if not args.only:
                memory = scaling.run_memory(loads, quick=args.quick)
                for m in memory:
                    print(f"  {m.what} [{m.backend}]: {m.bytes_each:,.0f} bytes")
        except Exception:
            failures.append("scaling")
            traceback.print_exc()
    if args.report:
        started = time.perf_counter()
        images = args.images or args.report.parent / "img" / "bench"
        env = report.environment(load_before, report.load_average())
        body = report.render(
            measured,
            points,
            memory,
            backends,
            env,
            images,
            args.report,
            rounds,
            plots=not args.no_plots,
        )
        report.write_page(args.report, body)
        took = time.perf_counter() - started
        print(f"wrote {args.report} and its plots in {images} ({took:.1f} s)")
    if failures:
        print(f"benchmarks that failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
