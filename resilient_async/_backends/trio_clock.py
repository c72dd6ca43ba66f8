"""trio's clock as the library reads it: with its random offset taken out.

trio's real clock is `perf_counter() + offset`, with a random offset, and `perf_counter` is
`time.monotonic` on every platform but Windows; taking the offset out makes the library's clock
`time.monotonic()` in real time on every backend and in sync code. A virtual clock (MockClock)
is taken as it is. Nothing here imports trio.
"""

from __future__ import annotations

__all__ = ["offset_of"]

# (clock, offset) of the last clock seen, replaced as one tuple so threads never mix them.
_last: tuple[object, float] = (None, 0.0)


def offset_of(clock: object) -> float:
    """Return how far `clock` (a trio clock) is ahead of the library's clock."""
    last = _last
    if last[0] is not clock:
        last = _remember(clock)
    return last[1]


def _remember(clock: object) -> tuple[object, float]:
    global _last
    offset = getattr(clock, "offset", 0.0) if type(clock).__name__ == "SystemClock" else 0.0
    _last = last = (clock, float(offset))
    return last
