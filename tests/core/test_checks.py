"""The shared constructor-argument checks: each names the parameter and the accepted values."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from resilient_async._core.checks import (
    check_hooks,
    check_int,
    check_name,
    check_period,
    check_positive,
    check_seconds,
)


def test_check_int() -> None:
    assert check_int(3, "slots", 1) == 3
    with pytest.raises(ValueError, match=r"slots must be >= 1, got 0"):
        check_int(0, "slots", 1)
    for bad in (True, 1.0, "1"):
        with pytest.raises(TypeError, match=r"slots must be an int >= 1"):
            check_int(bad, "slots", 1)  # type: ignore[arg-type]


def test_check_positive() -> None:
    assert check_positive(2, "rate") == 2.0
    assert isinstance(check_positive(2, "rate"), float)
    for bad in (0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match=r"rate must be a finite number > 0"):
            check_positive(bad, "rate")
    with pytest.raises(TypeError, match=r"rate must be a number > 0"):
        check_positive(False, "rate")


def test_check_seconds() -> None:
    assert check_seconds(0, "delay") == 0.0
    # Regression (issue 12, defect 10): the message read "seconds must be >= 0 seconds".
    with pytest.raises(ValueError, match=r"^delay must be >= 0, got -0.1$"):
        check_seconds(-0.1, "delay")
    with pytest.raises(ValueError, match=r"delay must be >= 0, got nan"):
        check_seconds(math.nan, "delay")
    with pytest.raises(TypeError, match=r"delay must be a number of seconds or a datetime"):
        check_seconds("1", "delay")  # type: ignore[arg-type]


def test_durations_accept_timedelta() -> None:
    # Regression (issue 12, defect 10): aiobreaker users pass timedelta.
    assert check_seconds(timedelta(minutes=1, milliseconds=500), "open_for") == 60.5
    assert check_period(timedelta(seconds=2), "per") == 2.0
    with pytest.raises(ValueError, match=r"open_for must be >= 0"):
        check_seconds(timedelta(seconds=-1), "open_for")


def test_huge_numbers_are_a_value_error_not_an_overflow() -> None:
    # Regression (issue 13, item 9): 10**400 raised OverflowError.
    with pytest.raises(ValueError, match=r"timeout is too large"):
        check_seconds(10**400, "timeout")
    with pytest.raises(ValueError, match=r"rate is too large"):
        check_positive(10**400, "rate")
    with pytest.raises(ValueError, match=r"per is too large"):
        check_period(10**400, "per")


def test_absurdly_short_windows_are_refused() -> None:
    # Regression (issue 13, item 9): 1e-320 passed, then every call overflowed.
    for bad in (1e-320, 0, 1e-7, math.inf, math.nan, -1):
        with pytest.raises(ValueError, match=r"per must be a finite number of seconds >= 1e-06"):
            check_period(bad, "per")
    assert check_period(1e-6, "per") == 1e-6


def test_check_name() -> None:
    assert check_name(None) is None
    assert check_name("db") == "db"
    with pytest.raises(TypeError, match=r"name must be a str or None, got 3"):
        check_name(3)  # type: ignore[arg-type]
    for bad in ("", "  "):
        with pytest.raises(ValueError, match=r"name must be a non-empty str or None"):
            check_name(bad)


def test_check_hooks() -> None:
    def hook(event: object) -> None:
        return None

    assert check_hooks(()) == ()
    assert check_hooks([hook]) == (hook,)
    assert check_hooks(hook) == (hook,)  # a single hook is accepted as one
    with pytest.raises(TypeError, match=r"hooks must hold callables"):
        check_hooks([hook, 3])
    with pytest.raises(TypeError, match=r"hooks must be an iterable of callables"):
        check_hooks(3)  # type: ignore[arg-type]
