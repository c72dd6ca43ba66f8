"""The library's errors cross process boundaries whole (issue #13, item 8)."""

from __future__ import annotations

import pickle

import pytest

import resilient_async as ra
from resilient_async.context import attach_context
from resilient_async.errors import (
    BulkheadFullError,
    CircuitOpenError,
    CompensationError,
    DeadlineExceeded,
    RateLimitedError,
    ResilienceError,
    SupervisorGaveUp,
)

ERRORS: list[ResilienceError] = [
    CircuitOpenError("payments: eu", 1.5),
    CircuitOpenError(None, None),
    BulkheadFullError("db: primary", "no slot within max_wait=0.5s"),
    BulkheadFullError(None),
    RateLimitedError("api: v2", 0.25),
    RateLimitedError(None, None),
    DeadlineExceeded(2.0),
    DeadlineExceeded(None, "custom: message"),
    CompensationError("rollback failed", [ValueError("boom"), KeyError("k")]),
    SupervisorGaveUp("gave up", [RuntimeError("crash")]),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_round_trips_through_pickle_with_message_attributes_context_and_note(
    error: ResilienceError,
) -> None:
    with ra.error_context(order="o-1: a", step="charge"):
        attach_context(error, {"policy": "p: q"})
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert repr(copy.args) == repr(error.args)
    public = {k: v for k, v in vars(error).items() if not k.startswith("_")}
    assert {k: v for k, v in vars(copy).items() if not k.startswith("_")} == public
    expected = {"order": "o-1: a", "step": "charge", "policy": "p: q"}
    assert dict(ra.context_of(copy) or {}) == expected
    assert dict(copy.context) == dict(error.context)
    assert copy.__notes__ == error.__notes__
    assert len(copy.__notes__) == 1
    # The copy's note is still recognised as the library's: it is updated in place.
    attach_context(copy, {"attempt": 3})
    assert len(copy.__notes__) == 1
    assert "attempt=3" in copy.__notes__[0]


def test_names_with_a_colon_survive_pickling() -> None:
    error = BulkheadFullError("tenant: acme", "no free slot")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.bulkhead, copy.reason) == ("tenant: acme", "no free slot")


def test_an_error_without_context_round_trips_without_one() -> None:
    copy = pickle.loads(pickle.dumps(CircuitOpenError("b", 2.0)))
    assert ra.context_of(copy) is None
    assert getattr(copy, "__notes__", None) is None
    assert (copy.breaker, copy.retry_after) == ("b", 2.0)
