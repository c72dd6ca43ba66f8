"""The transports' pure part: argument checks and the deadline header's value."""

from __future__ import annotations

import pytest

from resilient_async._core.http import check_header, check_methods, check_statuses, timeout_ms


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [(-1.0, 0), (0.0, 0), (0.0009, 0), (0.0015, 1), (0.9999, 999), (2.5, 2500), (30.0, 30000)],
)
def test_the_header_holds_whole_milliseconds_rounded_down(remaining: float, expected: int) -> None:
    assert timeout_ms(remaining) == expected


def test_the_checks_normalise_what_they_accept() -> None:
    assert check_statuses([503, 503, 100, 599]) == {100, 503, 599}
    assert check_statuses(()) == frozenset()
    assert check_methods(["get", "Post"]) == {"GET", "POST"}
    assert check_header("X-Request-Timeout-Ms") == "x-request-timeout-ms"
    with pytest.raises(TypeError, match="int status codes"):
        check_statuses([True])
    with pytest.raises(TypeError, match="method names"):
        check_methods([b"GET"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="header name"):
        check_header(None)  # type: ignore[arg-type]
