"""Several real processes sharing policies through one Redis: the semantics of one policy."""

from __future__ import annotations

import bisect
import time

import pytest

import resilient_async.sync as ra_sync

from ..redis_helpers import URL, go, prefix_on, reports, start_worker, wait_until_ready
from ..redis_workers import PROBE_BREAKER, STORE_TIMEOUT

pytestmark = pytest.mark.redis


def _trip(prefix: str) -> None:
    """Open the shared breaker from this process (the sync twin), and wait out `open_for`."""
    store = ra_sync.RedisStore(URL, prefix=prefix, timeout=STORE_TIMEOUT)
    breaker = ra_sync.CircuitBreaker("svc", store=store, **PROBE_BREAKER)

    def fail() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        breaker.call(fail)
    assert breaker.state is ra_sync.BreakerState.OPEN
    assert not store.degraded
    time.sleep(PROBE_BREAKER["open_for"] + 0.2)
    store.close()


@pytest.mark.parametrize(
    "roles",
    [("probes",) * 4, ("probes", "probes-sync", "probes", "probes-sync")],
    ids=["async-processes", "async-and-sync-processes"],
)
def test_a_half_open_breaker_admits_exactly_half_open_calls_across_processes(
    roles: tuple[str, ...],
) -> None:
    with prefix_on() as prefix:
        # Each process: 20 concurrent callers; a probe holds for 2 s (its permit lasts 3 s).
        workers = [start_worker(role, prefix, index, 20, 2.0) for index, role in enumerate(roles)]
        wait_until_ready(prefix, len(workers))
        _trip(prefix)
        go(prefix)
        found = reports(workers)
    assert not any(report["degraded"] for report in found)
    assert sum(report["admitted"] for report in found) == PROBE_BREAKER["half_open_calls"]
    assert sum(report["rejected"] for report in found) == 20 * len(roles) - 2


def _worst_window(stamps: list[float], width: float) -> int:
    """The most admissions within any window of `width` seconds (starting at an admission)."""
    return max(
        (bisect.bisect_right(stamps, start + width) - index for index, start in enumerate(stamps)),
        default=0,
    )


def test_processes_sharing_a_limiter_never_exceed_rate_times_window_plus_burst() -> None:
    rate, burst, seconds = 40.0, 5.0, 2.0
    with prefix_on() as prefix:
        # Two processes never wait (max_wait=0), two wait up to 0.2 s for a reservation.
        workers = [
            start_worker("limiter", prefix, index, rate, burst, seconds, wait)
            for index, wait in enumerate((0.0, 0.0, 0.2, 0.2))
        ]
        wait_until_ready(prefix, len(workers))
        go(prefix)
        found = reports(workers)
    assert not any(report["degraded"] for report in found)
    stamps = sorted(stamp for report in found for stamp in report["stamps"])
    # The bound of one limiter, over every window. A stamp is taken after the call returns,
    # so a late wake-up can bunch admissions: allow 0.1 s of scheduling jitter.
    for width in (0.1, 0.25, 0.5, 1.0, seconds):
        assert _worst_window(stamps, width) <= rate * (width + 0.1) + burst, width
    # Shared, not four private buckets (which would admit about four times as many).
    assert len(stamps) <= rate * (seconds + 0.5) + burst
    assert len(stamps) >= rate * seconds * 0.5


def test_processes_sharing_a_retry_budget_never_retry_beyond_it() -> None:
    # ratio 0: only the floor (5 retries per 10 s) for the whole fleet, not 5 per process.
    with prefix_on() as prefix:
        workers = [start_worker("budget", prefix, index, 0.0, 5, 10, 1) for index in range(4)]
        wait_until_ready(prefix, len(workers))
        go(prefix)
        found = reports(workers)
    assert not any(report["degraded"] for report in found)
    retries = sum(report["attempts"] - report["calls"] for report in found)
    assert retries == 5


def test_deposits_of_one_process_fund_the_retries_of_another() -> None:
    # No floor, ratio 0.5: two processes make 20 successful calls each (their deposits are
    # batched to the server), two others fail every attempt: 20 retries in all, no more.
    with prefix_on() as prefix:
        workers = [
            start_worker("budget", prefix, index, 0.5, 0, 20, fail)
            for index, fail in enumerate((0, 0, 1, 1))
        ]
        wait_until_ready(prefix, len(workers))
        go(prefix)
        found = reports(workers)
    assert not any(report["degraded"] for report in found)
    failing = found[2:]
    retries = sum(report["attempts"] - report["calls"] for report in failing)
    # All 80 calls deposit: at most 0.5 * 80 = 40 retries, whatever the batching. The
    # failing workers' own calls fund at most 20: more proves the others' deposits count.
    assert 20 < retries <= 40, retries
