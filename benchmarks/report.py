"""Write the measured figures into docs/benchmarks.md, with PNG plots beside it.

Only the part of the page between the two markers below is replaced, so the prose around it
is edited by hand and kept.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
from collections import defaultdict
from pathlib import Path

from .harness import FLOOR_ASYNC, FLOOR_SYNC, Group, Result
from .scaling import SCENARIOS, Memory, Point

START = "<!-- results: start (written by `make bench`; edit the prose outside these markers) -->"
END = "<!-- results: end -->"

PEERS = (
    "anyio",
    "trio",
    "uvloop",
    "tenacity",
    "stamina",
    "backoff",
    "aiobreaker",
    "purgatory",
    "circuitbreaker",
    "pybreaker",
    "aiolimiter",
    "matplotlib",
)
BACKEND_LABEL = {"asyncio": "asyncio", "uvloop": "asyncio + uvloop", "trio": "trio"}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> list[str]:
    """The lines that say where and when the figures were measured."""
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(f"{name} {_version(name)}" for name in PEERS)
    return [
        f"- Measured: {today}, resilient_async {_version('resilient_async')}.",
        f"- Machine: {_cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"{platform.system()} ({platform.machine()}).",
        f"- Python {platform.python_version()} ({platform.python_implementation()}).",
        f"- Libraries: {versions}.",
        f"- Load average (1, 5, 15 min) before the run: "
        f"{', '.join(f'{x:.2f}' for x in load_before)}; after: "
        f"{', '.join(f'{x:.2f}' for x in load_after)}.",
    ]


def _ns(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _cell(result: Result | None) -> tuple[str, str]:
    if result is None:
        return "", ""
    ns = f"{_ns(result.ns_per_call)} ±{result.spread * 50:.0f}%"
    floor = f"{result.floor_ratio:.1f}x" if result.floor_ratio is not None else ""
    return ns, floor


def group_table(group: Group, results: list[Result], backends: list[str]) -> list[str]:
    """One Markdown table: a row per case, ns/call and multiple of the floor per backend."""
    by_case: dict[str, dict[str, Result]] = defaultdict(dict)
    order: list[str] = []
    for r in results:
        if r.case not in by_case:
            order.append(r.case)
        by_case[r.case][r.backend] = r
    shown = [b for b in backends if any(b in row for row in by_case.values())]
    head = "| case | " + " | ".join(
        f"{BACKEND_LABEL[b]} ns | {BACKEND_LABEL[b]} x floor" for b in shown
    )
    lines = [head + " |", "|---|" + "---:|---:|" * len(shown)]
    for case in order:
        cells = []
        for backend in shown:
            cells.extend(_cell(by_case[case].get(backend)))
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return lines


def plot_group(group: Group, results: list[Result], backends: list[str], path: Path) -> bool:
    """A horizontal bar chart of each case's multiple of the floor, per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullLocator

    cases: list[str] = []
    for r in results:
        if r.case not in cases and r.case not in (FLOOR_ASYNC, FLOOR_SYNC):
            cases.append(r.case)
    shown = [b for b in backends if any(r.backend == b for r in results)]
    if not cases or not shown:
        return False
    value = {(r.case, r.backend): r.floor_ratio for r in results}
    height = 0.8 / len(shown)
    rows = len(cases) * len(shown)
    # Margins by hand: tight_layout costs more than the rest of the figure.
    fig_height = 1.2 + 0.22 * rows
    fig = plt.figure(figsize=(9, fig_height))
    left = min(0.6, 0.03 + 0.0082 * max(len(c) for c in cases))
    ax = fig.add_axes((left, 0.7 / fig_height, 0.96 - left, 1 - 1.1 / fig_height))
    for i, backend in enumerate(shown):
        ys = [c + i * height for c in range(len(cases))]
        xs = [value.get((case, backend)) or 0.0 for case in cases]
        ax.barh(ys, xs, height=height, label=BACKEND_LABEL[backend])
    ax.set_yticks([c + height * (len(shown) - 1) / 2 for c in range(len(cases))], cases)
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    # Minor ticks on a log axis cost more to draw than the bars.
    ax.xaxis.set_minor_locator(NullLocator())
    # Plain labels: the default ones go through mathtext, slower than the whole bar chart.
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("multiple of the floor (bare await or bare call), log scale", fontsize=8)
    ax.set_title(group.name, fontsize=9)
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return True


def plot_scaling(points: list[Point], path: Path) -> bool:
    """One panel per scenario: ns/op against the load, a line per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    scenarios = list(dict.fromkeys(p.scenario for p in points))
    if not scenarios:
        return False
    fig, axes = plt.subplots(len(scenarios), 1, figsize=(7, 2.6 * len(scenarios)), squeeze=False)
    for ax, scenario in zip(axes[:, 0], scenarios, strict=True):
        mine = [p for p in points if p.scenario == scenario]
        for backend in dict.fromkeys(p.backend for p in mine):
            line = sorted((p for p in mine if p.backend == backend), key=lambda p: p.n)
            ax.errorbar(
                [p.n for p in line],
                [p.ns_per_op for p in line],
                yerr=[
                    [p.ns_per_op - p.low for p in line],
                    [p.high - p.ns_per_op for p in line],
                ],
                marker="o",
                capsize=3,
                label=BACKEND_LABEL[backend],
            )
        ax.set_xscale("log")
        ax.set_xticks(sorted({p.n for p in mine}), [f"{p:,}" for p in sorted({p.n for p in mine})])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(bottom=0)
        ax.set_ylabel("ns per operation")
        ax.set_title(scenario, fontsize=10)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("load (waiters, keys or concurrent deadlines), log scale")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def scaling_table(points: list[Point]) -> list[str]:
    sizes = sorted({p.n for p in points})
    lines = [
        "| scenario | backend | "
        + " | ".join(f"n = {n:,} ns/op" for n in sizes)
        + " | largest / smallest |",
        "|---|---|" + "---:|" * (len(sizes) + 1),
    ]
    keys = list(dict.fromkeys((p.scenario, p.backend) for p in points))
    for scenario, backend in keys:
        row = {p.n: p for p in points if p.scenario == scenario and p.backend == backend}
        cells = [
            f"{_ns(row[n].ns_per_op)} ±{(row[n].high - row[n].low) / row[n].ns_per_op * 50:.0f}%"
            if n in row
            else ""
            for n in sizes
        ]
        first, last = row[min(row)], row[max(row)]
        growth = f"{last.ns_per_op / first.ns_per_op:.2f}x"
        lines.append(
            f"| {scenario} | {BACKEND_LABEL[backend]} | " + " | ".join(cells) + f" | {growth} |"
        )
    return lines


def memory_table(rows: list[Memory]) -> list[str]:
    backends = list(dict.fromkeys(m.backend for m in rows))
    lines = [
        "| what | " + " | ".join(f"{BACKEND_LABEL[b]} bytes each" for b in backends) + " |",
        "|---|" + "---:|" * len(backends),
    ]
    for what in dict.fromkeys(m.what for m in rows):
        cells = [
            next((f"{m.bytes_each:,.0f}" for m in rows if m.what == what and m.backend == b), "")
            for b in backends
        ]
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    return lines


def render(
    groups: list[tuple[Group, list[Result]]],
    points: list[Point],
    memory: list[Memory],
    backends: list[str],
    env: list[str],
    img_dir: Path,
    page: Path,
    rounds: int,
    *,
    plots: bool = True,
) -> str:
    """The Markdown between the markers; plots are written to `img_dir` as a side effect."""
    rel = os.path.relpath(img_dir, page.parent)
    out = ["### Where and when", "", *env, ""]
    out += [
        f"Each figure is the median of {rounds} interleaved rounds in one process; "
        "`±` is half the range between the fastest and the slowest round, as a percentage of "
        "the median. `x floor` is the multiple of a bare `await f()` (a bare `f()` for sync "
        "cases) measured in the same rounds on the same loop.",
        "",
    ]
    for group, results in groups:
        if not results:
            continue
        out += [f"### {group.name}", ""]
        if group.note:
            out += [f"{group.note[0].upper()}{group.note[1:]}.", ""]
        out += group_table(group, results, backends)
        image = img_dir / f"{slug(group.name)}.png"
        if plots and plot_group(group, results, backends, image):
            out += ["", f"![{group.name}: multiples of the floor]({rel}/{image.name})"]
        out.append("")
    if points:
        out += [
            "### Scaling: cost per operation as load grows",
            "",
            "Target: the largest load within 1.5x of the smallest. Each load is built once "
            "and measured in several rounds (the first one dropped as a warm-up).",
            "",
            *scaling_table(points),
        ]
        for name, scenario in SCENARIOS.items():
            if scenario.limit and any(p.scenario == name for p in points):
                out += ["", f"{name}: measured up to {scenario.largest:,} only: {scenario.limit}."]
        image = img_dir / "scaling.png"
        if plots and plot_scaling(points, image):
            out += ["", f"![Cost per operation against the load]({rel}/{image.name})"]
        out.append("")
    if memory:
        out += [
            "### Memory per idle key and per queued waiter",
            "",
            f"Traced with `tracemalloc` over {memory[0].n:,} keys or waiters: what is still "
            "allocated once they are idle or queued, divided by their number (the key strings "
            "themselves are subtracted; a waiter's figure includes its task, which the parked "
            "task row shows alone).",
            "",
            *memory_table(memory),
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def write_page(page: Path, body: str) -> None:
    """Replace the part of `page` between the markers with `body` (appending them if absent)."""
    text = page.read_text() if page.exists() else "# Benchmarks\n"
    block = f"{START}\n\n{body}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    page.write_text(text)


def load_average() -> tuple[float, ...]:
    try:
        return os.getloadavg()
    except OSError:
        return ()


__all__ = ["environment", "load_average", "render", "write_page"]
