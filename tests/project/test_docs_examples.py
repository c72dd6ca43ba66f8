"""Every Python example in README.md and docs/ runs.

The convention, for writers of pages:

- The ```python blocks of a page run in order, in one namespace, like cells of a notebook:
  a block may use what an earlier block of the same page defined.
- Blocks run inside an asyncio event loop in virtual time (sleeps, backoff waits and breaker
  open periods take no real time), the same loop for the whole page, with top-level `await`
  allowed: a block reads like the body of an async function. A block that starts an event
  loop itself (it calls `asyncio.run`, `anyio.run`, `trio.run` or `asyncio.Runner`) runs as
  a script instead, outside any loop, on the real clock; `__name__` is `"__main__"`.
- A block that cannot run (it needs an outside service, or it is deliberately a fragment)
  is preceded by `<!-- not-run: why -->`, the reason in words. The comment is invisible on
  the site and keeps the reason next to the example for whoever edits it.
- Code a reader does not need to see (a stand-in for a remote service, say) goes in a hidden
  setup block, an HTML comment that runs at that point of the page:

      <!-- setup
      async def fetch_once(url: str) -> bytes: ...
      -->

- Other fences (console, text, mermaid, python blocks marked not-run) are never run.

A failure names the page, the block and its first line; tracebacks point at the line of the
Markdown file.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import linecache
import logging
import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import resilient_async as ra
from resilient_async import instrumentation
from resilient_async.testing import virtual_time_loop

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
RUNNABLE = {"python", "py"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
_SETUP_START = re.compile(r"^\s*<!--\s*setup\s*$")


@dataclass(frozen=True)
class Block:
    """One piece of a page: a fenced code block or a hidden setup block."""

    line: int  # 1-based line of the first line of code
    lang: str
    code: str
    not_run: str | None = None  # the reason, when marked not-run
    hidden: bool = False


def parse(text: str, page: str) -> list[Block]:
    """Split a Markdown page into its code blocks, with their markers.

    Raises:
        ValueError: a marker that is malformed, without a reason, or not followed by a
            Python block; an unclosed fence or setup comment.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: tuple[int, str] | None = None  # a not-run marker waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _NOT_RUN.match(line):
            reason = m["reason"].strip()
            if len(reason.split()) < 2:
                raise ValueError(f"{page}:{i + 1}: a not-run marker needs a reason in words")
            pending = (i + 1, reason)
            i += 1
            continue
        if _SETUP_START.match(line):
            end = _find(lines, i + 1, lambda s: s.strip() == "-->", page, "setup comment")
            blocks.append(Block(i + 2, "python", "\n".join(lines[i + 1 : end]), hidden=True))
            i = end + 1
            continue
        if m := _FENCE.match(line):
            indent, fence, lang = len(m["indent"]), m["fence"], m["lang"].lower()
            end = _find(lines, i + 1, lambda s: s.strip().startswith(fence), page, f"{fence} fence")
            body = "\n".join(raw[indent:] for raw in lines[i + 1 : end])
            if pending is not None:
                if lang not in RUNNABLE:
                    raise ValueError(
                        f"{page}:{pending[0]}: not-run marker before a {lang or 'plain'} block"
                    )
                blocks.append(Block(i + 2, lang, body, not_run=pending[1]))
                pending = None
            else:
                blocks.append(Block(i + 2, lang, body))
            i = end + 1
            continue
        if pending is not None and line.strip():
            raise ValueError(
                f"{page}:{pending[0]}: a not-run marker must come right before a block"
            )
        i += 1
    if pending is not None:
        raise ValueError(f"{page}:{pending[0]}: a not-run marker with no block after it")
    return blocks


def _find(lines: list[str], start: int, done: Any, page: str, what: str) -> int:
    for j in range(start, len(lines)):
        if done(lines[j]):
            return j
    raise ValueError(f"{page}:{start}: unclosed {what}")


def _compile(block: Block, page: str) -> Any:
    # Padding puts each statement on its own line of the Markdown file, so a traceback
    # says `docs/retrying.md, line 123`.
    source = "\n" * (block.line - 1) + block.code
    return compile(source, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def run_page(path: Path, root: Path = ROOT) -> int:
    """Run every runnable block of the page at `path`; return how many ran."""
    page = path.relative_to(root).as_posix()
    text = path.read_text(encoding="utf-8")
    linecache.cache[page] = (len(text), None, text.splitlines(True), page)
    blocks = [b for b in parse(text, page) if b.lang in RUNNABLE and b.not_run is None]
    namespace: dict[str, Any] = {"__name__": "__main__"}
    saved_hooks, saved_classifier = instrumentation.get_hooks(), ra.get_classifier()
    try:
        with asyncio.Runner(loop_factory=virtual_time_loop) as runner:
            for number, block in enumerate(blocks, 1):
                _run_block(runner, block, page, number, namespace)
    finally:
        instrumentation.set_hooks(saved_hooks)
        ra.set_classifier(saved_classifier)
        logging.getLogger("resilient_async").handlers.clear()
    return len(blocks)


def _run_block(
    runner: asyncio.Runner, block: Block, page: str, number: int, namespace: dict[str, Any]
) -> None:
    kind = "hidden setup block" if block.hidden else "python block"
    where = f"{page}, {kind} #{number} starting at line {block.line}"
    try:
        code = _compile(block, page)
        if _starts_a_loop(block.code):
            exec(code, namespace)
        else:
            runner.run(_in_loop(code, namespace))
    except BaseException as exc:  # report every failure, with its place on the page
        detail = "".join(traceback.format_exception(exc))
        pytest.fail(
            f"{where} failed: {exc!r}\n\n{_numbered(block)}\n\n{detail}\n"
            "If the block cannot run, put `<!-- not-run: why -->` right before it; stand-ins "
            "for outside services go in a hidden `<!-- setup ... -->` block "
            "(see tests/project/test_docs_examples.py).",
            pytrace=False,
        )


async def _in_loop(code: Any, namespace: dict[str, Any]) -> None:
    if code.co_flags & inspect.CO_COROUTINE:
        await eval(code, namespace)
    else:
        exec(code, namespace)


_LOOP_STARTERS = {("asyncio", "run"), ("anyio", "run"), ("trio", "run"), ("asyncio", "Runner")}


def _starts_a_loop(code: str) -> bool:
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and (node.func.value.id, node.func.attr) in _LOOP_STARTERS
        for node in ast.walk(ast.parse(code))
    )


def _numbered(block: Block) -> str:
    return "\n".join(
        f"{block.line + k:5d} | {line}" for k, line in enumerate(block.code.splitlines())
    )


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_examples_run(path: Path) -> None:
    run_page(path)


def test_every_page_is_checked() -> None:
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) >= 10
    assert sum(_runnable_count(p) for p in PAGES) >= 40


def _runnable_count(path: Path) -> int:
    page = path.relative_to(ROOT).as_posix()
    blocks = parse(path.read_text(encoding="utf-8"), page)
    return sum(1 for b in blocks if b.lang in RUNNABLE and b.not_run is None and not b.hidden)


# The parser itself: the convention is only as good as its checks.


def test_parser_reads_markers_and_setup() -> None:
    text = (
        "text\n"
        "<!-- setup\n"
        "x = 1\n"
        "-->\n"
        "```python\n"
        "y = x + 1\n"
        "```\n"
        "<!-- not-run: needs a live payment gateway -->\n"
        "```python\n"
        "await gateway.charge()\n"
        "```\n"
        "```console\n"
        "make demo\n"
        "```\n"
    )
    blocks = parse(text, "page.md")
    assert [(b.line, b.lang, b.code, b.hidden, b.not_run) for b in blocks] == [
        (3, "python", "x = 1", True, None),
        (6, "python", "y = x + 1", False, None),
        (10, "python", "await gateway.charge()", False, "needs a live payment gateway"),
        (13, "console", "make demo", False, None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- not-run: -->\n```python\nx\n```\n", "needs a reason"),
        ("<!-- not-run: no good -->\ntext\n```python\nx\n```\n", "right before a block"),
        ("<!-- not-run: no good -->\n```console\nx\n```\n", "before a console block"),
        ("<!-- not-run: no good -->\n", "no block after it"),
        ("```python\nx = 1\n", "unclosed"),
        ("<!-- setup\nx = 1\n", "unclosed setup"),
    ],
)
def test_parser_rejects_bad_markers(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text, "page.md")


def test_failure_names_page_block_and_line(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "probe.md"
    page.parent.mkdir()
    page.write_text("# t\n\n```python\nx = 1\n```\n\n```python\nx = 1\nraise KeyError(x)\n```\n")
    with pytest.raises(pytest.fail.Exception) as info:
        run_page(page, tmp_path)
    message = str(info.value)
    assert "docs/probe.md, python block #2 starting at line 8" in message
    assert "line 9" in message  # the traceback points at the Markdown line
    assert "not-run" in message


def test_top_level_await_runs_in_virtual_time(tmp_path: Path) -> None:
    page = tmp_path / "probe.md"
    page.write_text(
        "```python\nimport anyio\nstart = anyio.current_time()\n"
        "await anyio.sleep(3600)\n"
        "assert anyio.current_time() - start >= 3600\n```\n"
        "```python\nimport asyncio\nassert asyncio.run(asyncio.sleep(0, 'plain')) == 'plain'\n```\n"
    )
    assert run_page(page, tmp_path) == 2


def test_every_page_is_in_the_site_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    listed = set(re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)\s*$", nav, re.MULTILINE))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages - listed == set(), "pages missing from mkdocs.yml nav"
    assert listed - pages == set(), "nav entries without a page"
