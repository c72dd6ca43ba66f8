"""The harness of the tests written once: time is virtual on every flavour, and the drivers
read and wait on the same clock as the tests."""

import pytest

from resilient_async import backoff

from ._backend import flavour, now, sleep
from .scripted import Flaky


async def test_an_hour_passes_at_once() -> None:
    start = now()
    await sleep(3600)
    assert now() - start == pytest.approx(3600)


async def test_the_drivers_wait_on_the_tests_clock() -> None:
    dependency = Flaky(ConnectionError, "ok")
    start = now()
    retry = flavour.Retry(attempts=2, backoff=backoff.constant(60))
    assert await retry.call(dependency) == "ok"
    assert dependency.started == [pytest.approx(start), pytest.approx(start + 60)]
    assert now() - start == pytest.approx(60)
    with flavour.deadline(10):
        assert flavour.remaining() == pytest.approx(10)
