"""The pure bookkeeping of compensations: argument encoding and the recovery plan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_async._core.compensations import (
    JournalRow,
    decode_arguments,
    encode_arguments,
    plan_recovery,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=60)
@given(st.lists(json_values, max_size=3), st.dictionaries(st.text(), json_values, max_size=3))
def test_json_arguments_round_trip(args: list[object], kwargs: dict[str, object]) -> None:
    assert decode_arguments(encode_arguments(args, kwargs)) == (args, kwargs)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (object(), "JSON values"),
        ((1, 2), "unchanged"),
        ({1: 2}, "unchanged"),
        (float("inf"), "JSON"),
    ],
)
def test_arguments_json_cannot_carry_are_refused(value: object, reason: str) -> None:
    with pytest.raises(TypeError, match=reason):
        encode_arguments([value], {})
    with pytest.raises(TypeError, match="key"):
        encode_arguments([], {"key": value})


def _row(transaction: str, sequence: int, name: str = "undo") -> JournalRow:
    return JournalRow(transaction, None, 1, sequence, name, "[[],{}]")


def test_plan_runs_each_transaction_newest_first_in_journal_order() -> None:
    rows = [_row("b", 0), _row("a", 1), _row("b", 2), _row("a", 0), _row("b", 1)]
    plan = plan_recovery(rows, lambda name: True)
    assert [[(r.transaction, r.sequence) for r in p] for p in plan.runnable] == [
        [("b", 2), ("b", 1), ("b", 0)],
        [("a", 1), ("a", 0)],
    ]
    assert plan.blocked == []


def test_plan_blocks_a_whole_transaction_with_an_unknown_compensation() -> None:
    rows = [_row("a", 0), _row("a", 1, "unknown"), _row("b", 0)]
    plan = plan_recovery(rows, lambda name: name != "unknown")
    assert [[r.sequence for r in p] for p in plan.blocked] == [[1, 0]]
    assert [[r.transaction for r in p] for p in plan.runnable] == [["b"]]
