"""Error context: merging, capture at the raise site, the note, and task boundaries."""

from __future__ import annotations

import asyncio
import contextvars
import pickle
import tracemalloc
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_async.context import (
    PreparedFields,
    attach_context,
    context_of,
    current_context,
    error_context,
)
from resilient_async.errors import DeadlineExceeded, ResilienceError

PREFIX = "resilient_async context: "


def our_notes(exc: BaseException) -> list[str]:
    return [note for note in getattr(exc, "__notes__", []) if note.startswith(PREFIX)]


def raise_in(exc: BaseException, *blocks: error_context) -> BaseException:
    """Raise `exc` inside `blocks` (outermost first) and return what came out."""
    try:
        with ExitStack() as stack:
            for block in blocks:
                stack.enter_context(block)
            raise exc
    except BaseException as caught:
        return caught
    raise AssertionError("unreachable")


# --- current_context and nesting -------------------------------------------------------------


def test_current_context_is_empty_outside_every_block() -> None:
    ctx = current_context()
    assert isinstance(ctx, Mapping)
    assert dict(ctx) == {}
    assert len(ctx) == 0


def test_nested_blocks_merge_and_the_inner_block_wins() -> None:
    with error_context(request="r1", user="u1"):
        assert dict(current_context()) == {"request": "r1", "user": "u1"}
        with error_context(user="u2", step="charge"):
            assert dict(current_context()) == {"request": "r1", "user": "u2", "step": "charge"}
            with error_context():
                assert dict(current_context()) == {"request": "r1", "user": "u2", "step": "charge"}
        assert dict(current_context()) == {"request": "r1", "user": "u1"}
    assert dict(current_context()) == {}


def test_current_context_is_a_cached_snapshot() -> None:
    with error_context(a=1):
        first = current_context()
        assert current_context() is first
        with error_context(b=2):
            assert dict(current_context()) == {"a": 1, "b": 2}
        assert dict(first) == {"a": 1}
        assert current_context() is first


def test_the_mappings_are_read_only() -> None:
    with error_context(a=1):
        ctx = current_context()
        with pytest.raises(TypeError):
            ctx["a"] = 2  # type: ignore[index]
    exc = raise_in(ValueError(), error_context(a=1))
    captured = context_of(exc)
    assert captured is not None
    with pytest.raises(TypeError):
        captured["b"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        current_context()["x"] = 1  # type: ignore[index]


def test_fields_passed_as_a_dict_are_copied() -> None:
    fields: dict[str, object] = {"a": 1}
    block = error_context(**fields)
    fields["a"] = 2
    with block:
        assert dict(current_context()) == {"a": 1}


@pytest.mark.parametrize("key", ["a b", "1x", "", "a-b", "é é"])
def test_a_key_that_is_not_an_identifier_is_rejected(key: str) -> None:
    with pytest.raises(ValueError, match="identifiers") as info:
        error_context(ok=1, **{key: 1})
    assert repr(key) in str(info.value)


def test_underscore_and_unicode_keys_are_accepted() -> None:
    with error_context(_private=1, __dunder=2, été=3):
        assert dict(current_context()) == {"_private": 1, "__dunder": 2, "été": 3}


def test_repr_shows_the_fields() -> None:
    assert repr(error_context(a=1, b="x")) == "error_context(a=1, b='x')"


def test_works_in_a_generator_across_yields() -> None:
    def gen() -> object:
        with error_context(step="gen"):
            yield dict(current_context())
            yield dict(current_context())

    assert list(gen()) == [{"step": "gen"}, {"step": "gen"}]  # type: ignore[call-overload]
    assert dict(current_context()) == {}


# --- re-entry -------------------------------------------------------------------------------


def test_an_instance_can_be_reused_and_re_entered() -> None:
    block = error_context(a=1)
    with block:
        with error_context(a=2):
            with block:
                assert dict(current_context()) == {"a": 1}
            assert dict(current_context()) == {"a": 2}
        assert dict(current_context()) == {"a": 1}
    with block:
        assert dict(current_context()) == {"a": 1}
    assert dict(current_context()) == {}


def test_exiting_out_of_order_fails_clearly() -> None:
    outer, inner = error_context(a=1), error_context(b=2)
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError, match="out of order"):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)
    outer.__exit__(None, None, None)
    assert dict(current_context()) == {}
    with pytest.raises(RuntimeError, match="out of order"):
        outer.__exit__(None, None, None)


def test_exit_in_a_copy_of_the_entering_context_restores_the_outer_value() -> None:
    block = error_context(a=1)
    entered = contextvars.copy_context()
    entered.run(block.__enter__)
    elsewhere = entered.copy()  # same value, but the token belongs to `entered`
    elsewhere.run(block.__exit__, None, None, None)
    assert dict(elsewhere.run(current_context)) == {}
    assert dict(entered.run(current_context)) == {"a": 1}


# --- capture at the raise site --------------------------------------------------------------


def test_context_of_is_none_for_an_untouched_exception() -> None:
    assert context_of(ValueError("x")) is None
    assert our_notes(ValueError("x")) == []


def test_an_exception_leaving_a_block_gets_the_raise_site_context() -> None:
    def fail() -> None:
        with error_context(request="r1"):
            with error_context(step="charge"):
                raise ValueError("boom")

    with pytest.raises(ValueError, match="boom") as info:
        fail()
    assert dict(context_of(info.value) or {}) == {"request": "r1", "step": "charge"}


def test_an_outer_block_never_overwrites_a_key_captured_closer_to_the_raise_site() -> None:
    exc = raise_in(ValueError(), error_context(where="outer", a=0), error_context(where="inner"))
    assert dict(context_of(exc) or {}) == {"where": "inner", "a": 0}


def test_a_re_raised_exception_keeps_its_context() -> None:
    def fail() -> None:
        try:
            with error_context(a=1):
                raise KeyError("k")
        except KeyError:
            raise

    with pytest.raises(KeyError) as info:
        fail()
    assert dict(context_of(info.value) or {}) == {"a": 1}


def test_raised_again_elsewhere_only_new_keys_are_added() -> None:
    first = raise_in(ValueError(), error_context(a=1, b=1))
    again = raise_in(first, error_context(b=2, c=2), error_context(d=3))
    assert again is first
    assert list((context_of(again) or {}).items()) == [("a", 1), ("b", 1), ("c", 2), ("d", 3)]
    assert our_notes(again) == [f"{PREFIX}a=1, b=1, c=2, d=3"]


def test_the_captured_mapping_is_a_snapshot() -> None:
    exc = raise_in(ValueError(), error_context(a=1))
    before = context_of(exc)
    attach_context(exc, {"attempt": 2})
    assert dict(before or {}) == {"a": 1}
    assert dict(context_of(exc) or {}) == {"a": 1, "attempt": 2}


def test_exception_groups_are_annotated() -> None:
    group = ExceptionGroup("many", [ValueError("a"), KeyError("b")])
    exc = raise_in(group, error_context(a=1))
    assert exc is group
    assert dict(context_of(group) or {}) == {"a": 1}
    assert our_notes(group) == [f"{PREFIX}a=1"]
    assert all(context_of(inner) is None for inner in group.exceptions)


@pytest.mark.parametrize(
    "exc",
    [
        KeyboardInterrupt(),
        SystemExit(1),
        GeneratorExit(),
        asyncio.CancelledError(),
        BaseExceptionGroup("cancelled", [KeyboardInterrupt()]),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_cancellation_and_interrupts_are_left_untouched(exc: BaseException) -> None:
    out = raise_in(exc, error_context(a=1), error_context(b=2))
    assert out is exc
    assert context_of(exc) is None
    assert not hasattr(exc, "__notes__")
    attach_context(exc, {"attempt": 1})
    assert context_of(exc) is None
    assert not hasattr(exc, "__notes__")


def test_an_exception_that_refuses_attributes_is_skipped_silently() -> None:
    class Frozen(Exception):
        def __setattr__(self, name: str, value: object) -> None:
            raise AttributeError(f"{name} is read-only")

    exc = raise_in(Frozen("x"), error_context(a=1))
    assert type(exc) is Frozen
    assert context_of(exc) is None
    assert not hasattr(exc, "__notes__")
    attach_context(exc, {"attempt": 1})
    assert context_of(exc) is None


def test_an_exception_that_refuses_notes_still_gets_its_context() -> None:
    class NoNotes(Exception):
        def __setattr__(self, name: str, value: object) -> None:
            if name == "__notes__":
                raise AttributeError("no notes")
            super().__setattr__(name, value)

    exc = raise_in(NoNotes("x"), error_context(a=1))
    assert dict(context_of(exc) or {}) == {"a": 1}
    assert not hasattr(exc, "__notes__")
    attach_context(exc, {"attempt": 1})
    assert dict(context_of(exc) or {}) == {"a": 1, "attempt": 1}
    assert not hasattr(exc, "__notes__")


def test_resilience_error_context_property() -> None:
    exc = raise_in(DeadlineExceeded(1.0), error_context(request="r1"))
    assert isinstance(exc, ResilienceError)
    assert dict(exc.context) == {"request": "r1"}
    untouched = DeadlineExceeded(1.0)
    assert isinstance(untouched.context, Mapping)
    assert dict(untouched.context) == {}


# --- the note -------------------------------------------------------------------------------


def test_the_note_renders_values_with_repr_in_merged_order() -> None:
    exc = raise_in(
        ValueError(),
        error_context(request="r1", count=3),
        error_context(ratio=0.5, tags=("a", "b"), none=None, count=4),
    )
    assert our_notes(exc) == [
        f"{PREFIX}request='r1', count=4, ratio=0.5, tags=('a', 'b'), none=None"
    ]


def test_the_note_cuts_long_values_and_survives_a_failing_repr() -> None:
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    broken = Broken()
    exc = raise_in(ValueError(), error_context(big="x" * 1000, broken=broken))
    (note,) = our_notes(exc)
    big = note.removeprefix(PREFIX).split(", broken=")[0]
    assert big.startswith("big='xxx")
    assert big.endswith("...")
    assert len(big) == len("big=") + 200
    assert note.endswith("broken=<Broken with a failing repr>")
    assert (context_of(exc) or {})["broken"] is broken


def test_no_note_and_no_capture_when_the_context_is_empty() -> None:
    exc = raise_in(ValueError(), error_context(), error_context())
    assert context_of(exc) is None
    assert not hasattr(exc, "__notes__")
    attach_context(exc, {})
    assert context_of(exc) is None
    assert not hasattr(exc, "__notes__")


def test_exactly_one_note_kept_up_to_date_in_place() -> None:
    exc = ValueError("x")
    exc.add_note("user note before")
    raise_in(exc, error_context(request="r1"), error_context(step="charge"))
    attach_context(exc, {"attempt": 1, "policy": "retry"})
    attach_context(exc, {"attempt": 3, "breaker_state": "closed"})
    exc.add_note("user note after")
    raise_in(exc, error_context(request="r2", host="db1"))
    attach_context(exc, {"deadline_remaining": 0.25})
    expected = (
        f"{PREFIX}request='r1', step='charge', attempt=1, policy='retry', "
        "breaker_state='closed', host='db1', deadline_remaining=0.25"
    )
    assert exc.__notes__ == ["user note before", expected, "user note after"]


def test_a_removed_note_is_added_back_once() -> None:
    exc = raise_in(ValueError(), error_context(a=1))
    exc.__notes__.clear()
    attach_context(exc, {"b": 2})
    assert exc.__notes__ == [f"{PREFIX}a=1, b=2"]


def test_notes_that_are_not_a_list_are_left_alone() -> None:
    exc = ValueError()
    setattr(exc, "__notes__", ("foreign",))
    raise_in(exc, error_context(a=1))
    assert getattr(exc, "__notes__") == ("foreign",)
    assert dict(context_of(exc) or {}) == {"a": 1}


def test_a_pickled_exception_keeps_its_context_and_its_single_note() -> None:
    exc = raise_in(ValueError("x"), error_context(a=1))
    copy = pickle.loads(pickle.dumps(exc))
    assert dict(context_of(copy) or {}) == {"a": 1}
    attach_context(copy, {"b": 2})
    assert copy.__notes__ == [f"{PREFIX}a=1, b=2"]


# --- attach_context -------------------------------------------------------------------------


def test_attach_context_outside_every_block_uses_the_fields() -> None:
    exc = ValueError()
    attach_context(exc, {"attempt": 2, "policy": "retry"})
    assert dict(context_of(exc) or {}) == {"attempt": 2, "policy": "retry"}
    assert our_notes(exc) == [f"{PREFIX}attempt=2, policy='retry'"]


def test_attach_context_captures_the_current_context_once() -> None:
    exc = ValueError()
    with error_context(request="r1", policy="checkout"):
        attach_context(exc, {"policy": "retry", "attempt": 1})
        attach_context(exc, {"policy": "outer", "attempt": 9, "breaker_state": "open"})
    # The policy runs inside the caller's block, so its own fields win over the block's; a
    # second (outer) policy only adds keys that are missing.
    assert list((context_of(exc) or {}).items()) == [
        ("request", "r1"),
        ("policy", "retry"),
        ("attempt", 1),
        ("breaker_state", "open"),
    ]


def test_attach_context_with_no_fields_captures_the_current_context() -> None:
    exc = ValueError()
    with error_context(a=1):
        attach_context(exc, {})
    assert dict(context_of(exc) or {}) == {"a": 1}


def test_attach_context_elsewhere_adds_the_missing_keys_of_its_place() -> None:
    exc = raise_in(ValueError(), error_context(a=1))
    with error_context(a=2, b=2):
        attach_context(exc, {"attempt": 1})
    assert list((context_of(exc) or {}).items()) == [("a", 1), ("attempt", 1), ("b", 2)]
    assert len(our_notes(exc)) == 1


def test_attach_context_inside_the_capturing_block_adds_only_the_fields() -> None:
    with error_context(a=1):
        exc = raise_in(ValueError(), error_context(b=2))
        attach_context(exc, {"b": 3, "attempt": 1})
    assert dict(context_of(exc) or {}) == {"a": 1, "b": 2, "attempt": 1}


# --- property tests -------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "c", "_d"])
FIELDS = st.dictionaries(KEYS, st.integers(0, 9), max_size=3)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("push"), FIELDS),
        st.tuples(st.just("reenter"), st.integers(0, 50)),
        st.tuples(st.just("pop"), st.none()),
        st.tuples(st.just("check"), st.none()),
    ),
    max_size=60,
)


def merged_model(stack: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for fields in stack:
        merged.update(fields)
    return merged


@settings(max_examples=300, deadline=None)
@given(OPERATIONS)
def test_current_context_matches_a_dict_merge_model(
    operations: list[tuple[str, dict[str, int] | int | None]],
) -> None:
    made: list[tuple[error_context, dict[str, int]]] = []
    stack: list[tuple[error_context, dict[str, int]]] = []
    for kind, argument in operations:
        if kind == "push":
            assert isinstance(argument, dict)
            entry = (error_context(**argument), argument)
            made.append(entry)
        elif kind == "reenter" and made:
            assert isinstance(argument, int)
            entry = made[argument % len(made)]
        elif kind == "pop" and stack:
            block, _ = stack.pop()
            block.__exit__(None, None, None)
            continue
        else:
            model = merged_model([fields for _, fields in stack])
            assert list(current_context().items()) == list(model.items())
            continue
        entry[0].__enter__()
        stack.append(entry)
    model = merged_model([fields for _, fields in stack])
    assert list(current_context().items()) == list(model.items())
    while stack:
        stack.pop()[0].__exit__(None, None, None)
    assert dict(current_context()) == {}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(FIELDS, min_size=1, max_size=5),
    st.lists(FIELDS, max_size=5),
    st.dictionaries(KEYS, st.integers(10, 19), max_size=3),
)
def test_capture_matches_a_closest_wins_model(
    first: list[dict[str, int]], second: list[dict[str, int]], policy: dict[str, int]
) -> None:
    exc = raise_in(ValueError(), *(error_context(**fields) for fields in first))
    model = merged_model(first)
    raise_in(exc, *(error_context(**fields) for fields in second))
    for key, value in merged_model(second).items():
        model.setdefault(key, value)
    attach_context(exc, policy)
    for key, value in policy.items():
        model.setdefault(key, value)
    captured = context_of(exc)
    if not model:
        assert captured is None
        assert our_notes(exc) == []
        return
    assert list((captured or {}).items()) == list(model.items())
    assert our_notes(exc) == [PREFIX + ", ".join(f"{k}={v!r}" for k, v in model.items())]


# --- tasks and await points -----------------------------------------------------------------


@pytest.mark.anyio
async def test_the_context_survives_await_points() -> None:
    async def fetch() -> None:
        with error_context(step="fetch"):
            await anyio.sleep(1)
            assert dict(current_context()) == {"request": "r1", "step": "fetch"}
            raise ConnectionError("down")

    with error_context(request="r1"):
        await anyio.sleep(1)
        assert dict(current_context()) == {"request": "r1"}
        with pytest.raises(ConnectionError) as info:
            await fetch()
        assert dict(current_context()) == {"request": "r1"}
    assert dict(context_of(info.value) or {}) == {"request": "r1", "step": "fetch"}


@pytest.mark.anyio
async def test_children_inherit_and_nothing_leaks_to_the_parent() -> None:
    seen: dict[str, dict[str, object]] = {}
    child_inside = anyio.Event()
    parent_checked = anyio.Event()

    async def child() -> None:
        seen["inherited"] = dict(current_context())
        with error_context(request="child", child=1):
            child_inside.set()
            await parent_checked.wait()
            seen["inside"] = dict(current_context())
        error_context(leaked=True).__enter__()  # never exited: must stay in the child's context

    with error_context(request="parent"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
            await child_inside.wait()
            assert dict(current_context()) == {"request": "parent"}
            parent_checked.set()
        assert dict(current_context()) == {"request": "parent"}
    assert dict(current_context()) == {}
    assert seen == {
        "inherited": {"request": "parent"},
        "inside": {"request": "child", "child": 1},
    }


@pytest.mark.anyio
async def test_concurrent_tasks_are_isolated() -> None:
    results: dict[int, list[dict[str, object]]] = {}
    shared = error_context(service="api")

    async def worker(n: int) -> None:
        observed = results.setdefault(n, [])
        with shared, error_context(worker=n):
            for step in range(3):
                with error_context(step=step):
                    await anyio.sleep((n * 7 + step) % 3)
                    observed.append(dict(current_context()))
                await anyio.sleep(0)
                observed.append(dict(current_context()))

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(worker, n)
    assert dict(current_context()) == {}
    for n, observed in results.items():
        expected: list[dict[str, object]] = []
        for step in range(3):
            expected.append({"service": "api", "worker": n, "step": step})
            expected.append({"service": "api", "worker": n})
        assert observed == expected


@pytest.mark.anyio
async def test_an_error_from_a_child_task_keeps_the_child_context() -> None:
    async def child() -> None:
        with error_context(where="child", attempt=1):
            await anyio.sleep(1)
            raise ConnectionError("down")

    async def parent() -> None:
        with error_context(request="r1", where="parent"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(child)

    with pytest.raises(ExceptionGroup) as info:
        await parent()
    group = info.value
    assert dict(context_of(group) or {}) == {"request": "r1", "where": "parent"}
    (inner,) = group.exceptions
    assert isinstance(inner, ConnectionError)
    assert dict(context_of(inner) or {}) == {"request": "r1", "where": "child", "attempt": 1}
    assert len(our_notes(inner)) == 1


@pytest.mark.anyio
async def test_backend_cancellation_is_not_annotated() -> None:
    seen: list[BaseException] = []
    with anyio.CancelScope() as scope:
        try:
            with error_context(a=1):
                scope.cancel()
                await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            seen.append(exc)
            raise
    assert scope.cancelled_caught
    (cancelled,) = seen
    assert context_of(cancelled) is None
    assert our_notes(cancelled) == []
    assert dict(current_context()) == {}


def test_prepared_fields_attach_like_plain_ones() -> None:
    prepared = PreparedFields({"policy": "db", "breaker_state": "open"})
    plain_error, prepared_error = ConnectionError("a"), ConnectionError("b")
    attach_context(plain_error, {"policy": "db", "breaker_state": "open"})
    attach_context(prepared_error, prepared)
    assert context_of(prepared_error) == context_of(plain_error)
    assert prepared_error.__notes__ == plain_error.__notes__

    # Inside an error_context block, or on an exception that already has notes, the
    # prepared fields merge like any others.
    noted = ConnectionError("c")
    noted.add_note("user note")
    attach_context(noted, prepared)
    assert noted.__notes__[0] == "user note"
    assert len(noted.__notes__) == 2
    inside = ConnectionError("d")
    with error_context(request="r-1"):
        attach_context(inside, prepared)
    assert context_of(inside) == {"request": "r-1", "policy": "db", "breaker_state": "open"}
    again = ConnectionError("e")
    attach_context(again, prepared)
    attach_context(again, {"attempt": 2})
    assert context_of(again) == {"policy": "db", "breaker_state": "open", "attempt": 2}
    assert len([n for n in again.__notes__ if n.startswith("resilient_async context:")]) == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: "x" * 10_000_000,
        lambda: b"y" * 10_000_000,
        lambda: ["z" * 10_000_000],
        lambda: {"blob": "w" * 10_000_000},
        lambda: list(range(1_000_000)),
    ],
    ids=["str", "bytes", "list-of-str", "dict-of-str", "long-list"],
)
def test_a_huge_value_is_never_rendered_in_full(make: Any) -> None:
    # Issue #13 item 12: the note is cut to 200 characters, so building the full repr of a
    # 10 MB value for every note is wasted work; measured here as memory, not time.
    value = make()
    exc = ValueError("boom")
    tracemalloc.start()
    try:
        with error_context(blob=value, request="r1"):
            for attempt in range(5):
                attach_context(exc, {"attempt": attempt, "policy": f"p{attempt}"})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200_000, f"rendering the note allocated {peak} bytes"
    (note,) = our_notes(exc)
    assert "blob=" in note
    assert len(note) < 400
    assert (context_of(exc) or {})["blob"] is value
