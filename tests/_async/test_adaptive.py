"""Bulkhead.adaptive on both flavours, one caller at a time: drops shrink the limit and are
reported, bad bounds fail at construction."""

import pytest

from resilient_async._async.adaptive import AdaptiveBulkhead
from resilient_async.instrumentation import hooks

from ..helpers import Recorder
from ._backend import flavour as ra


async def test_adaptive_backs_off_on_drops_and_reports_it() -> None:
    bulkhead = ra.Bulkhead.adaptive(initial=10, name="adaptive")
    assert isinstance(bulkhead, AdaptiveBulkhead)
    recorder = Recorder()

    async def refused() -> None:
        raise ConnectionRefusedError

    async def ok() -> str:
        return "ok"

    with hooks(recorder):
        for _ in range(5):
            with pytest.raises(ConnectionRefusedError):
                await bulkhead.call(refused)
        with pytest.raises(ConnectionRefusedError):
            async with bulkhead:
                await refused()
    assert bulkhead.limit < 10
    changes = recorder.of("bulkhead.limit_changed")
    assert changes[0].old_limit == 10
    assert changes[-1].new_limit == bulkhead.limit
    assert await bulkhead.call(ok) == "ok"
    m = bulkhead.metrics()
    assert (m.running, m.queued, m.completed, m.failed) == (0, 0, 1, 6)
    assert m.submitted == (
        m.running + m.queued + m.rejected + m.completed + m.failed + m.cancelled
    ), m


def test_adaptive_checks_its_bounds() -> None:
    with pytest.raises(ValueError, match="min_limit must be <= max_limit"):
        ra.Bulkhead.adaptive(min_limit=5, max_limit=4)
    with pytest.raises(ValueError, match="queue must be 'fifo' or 'codel'"):
        ra.Bulkhead(1, queue="random")
