"""Deadlines on both flavours where they agree: a block within its deadline is untouched."""

import math

import pytest

from ._backend import flavour as ra
from ._backend import sleep


async def test_block_within_its_deadline_is_untouched() -> None:
    with ra.deadline(1.0) as scope:
        await sleep(0.5)
        assert ra.remaining() == pytest.approx(0.5)
        assert ra.current_deadline() == pytest.approx(scope.deadline)
    assert not scope.expired
    assert ra.remaining() == math.inf
