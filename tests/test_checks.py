"""The shared constructor-argument checks: each names the parameter and the accepted values."""

from __future__ import annotations

import math

import pytest

from resilient_async._core.checks import check_int, check_positive, check_seconds


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
    with pytest.raises(ValueError, match=r"delay must be >= 0 seconds"):
        check_seconds(-0.1, "delay")
    with pytest.raises(ValueError, match=r"delay must be >= 0 seconds"):
        check_seconds(math.nan, "delay")
    with pytest.raises(TypeError, match=r"delay must be a number of seconds"):
        check_seconds("1", "delay")  # type: ignore[arg-type]
