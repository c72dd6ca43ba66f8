"""Fallback on both flavours: once, only for configured errors, a value or a handler, the
last good result, stop signals (invariant 10)."""

import pytest

import resilient_async as ra
from resilient_async._async.fallback import Fallback, degraded
from resilient_async.context import context_of, error_context
from resilient_async.instrumentation import hooks

from ..helpers import Recorder
from ._backend import sleep


class Flaky:
    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    async def __call__(self, key: str = "k") -> str:
        self.calls += 1
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if isinstance(outcome, BaseException):
            raise outcome
        return f"{outcome}:{key}"


async def test_value_replaces_a_matched_error_and_the_call_runs_once() -> None:
    dependency = Flaky(ConnectionError("down"))
    recorder = Recorder()
    with hooks(recorder):
        assert await Fallback("cached", name="fb").call(dependency) == "cached"
    assert dependency.calls == 1
    assert recorder.kinds() == ["fallback.used"]
    assert isinstance(recorder.events[0].exception, ConnectionError)


async def test_success_passes_through() -> None:
    assert await Fallback("cached").call(Flaky()) == "ok:k"


async def test_permanent_errors_are_not_replaced_by_default() -> None:
    with pytest.raises(ValueError, match="bad input"):
        await Fallback("x").call(Flaky(ValueError("bad input")))


async def test_on_selects_the_errors() -> None:
    fallback = Fallback("x", on=KeyError)
    assert await fallback.call(Flaky(KeyError("k"))) == "x"
    with pytest.raises(ConnectionError):
        await fallback.call(Flaky(ConnectionError()))


async def test_none_is_a_valid_fallback_value() -> None:
    assert await Fallback(None).call(Flaky(ConnectionError())) is None


async def test_handler_gets_the_error_then_the_arguments_and_runs_degraded() -> None:
    seen: list[object] = []

    async def handler(exc: Exception, key: str) -> str:
        seen.append((type(exc), key, degraded()))
        return f"fallback:{key}"

    assert not degraded()
    assert await Fallback(handler=handler).call(Flaky(TimeoutError()), "user-1") == (
        "fallback:user-1"
    )
    assert seen == [(TimeoutError, "user-1", True)]
    assert not degraded()


async def test_handler_error_is_chained_to_the_original() -> None:
    async def handler(exc: Exception, key: str) -> str:
        raise RuntimeError("fallback down too")

    with pytest.raises(RuntimeError, match="fallback down too") as info:
        await Fallback(handler=handler, name="fb").call(Flaky(ConnectionError("primary")), "k")
    assert isinstance(info.value.__context__, ConnectionError)
    context = context_of(info.value)
    assert context is not None
    assert context["fallback"] == "failed"


async def test_handler_runs_in_the_callers_context() -> None:
    async def handler(exc: Exception, key: str) -> str:
        return str(ra.current_context()["request"])

    with error_context(request="r-9"):
        assert await Fallback(handler=handler).call(Flaky(ConnectionError()), "k") == "r-9"


async def test_keyboard_interrupt_passes_through() -> None:
    async def interrupted() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await Fallback("x", on=BaseException).call(interrupted)


async def test_decorator_keeps_metadata() -> None:
    @Fallback("x")
    async def fetch(key: str) -> str:
        """Fetch."""
        raise ConnectionError

    assert fetch.__name__ == "fetch"
    assert fetch.__doc__ == "Fetch."
    assert await fetch("a") == "x"


async def test_last_good_serves_a_fresh_result_per_key() -> None:
    fallback = Fallback.last_good(ttl=10)
    dependency = Flaky("v1", "v1", ConnectionError(), ConnectionError(), ConnectionError())
    assert await fallback.call(dependency, "a") == "v1:a"
    assert await fallback.call(dependency, "b") == "v1:b"
    assert await fallback.call(dependency, "a") == "v1:a"  # stale-if-error
    with pytest.raises(ConnectionError):
        await fallback.call(dependency, "c")  # never succeeded for this key
    await sleep(11)
    with pytest.raises(ConnectionError):
        await fallback.call(dependency, "b")  # too old now


async def test_last_good_with_a_key_function_and_bounded_size() -> None:
    fallback = Fallback.last_good(ttl=100, key=lambda key: key[0], max_entries=2)
    dependency = Flaky("v", "v", "v", ConnectionError(), ConnectionError())
    for key in ("apple", "banana", "cherry"):
        await fallback.call(dependency, key)
    assert await fallback.call(dependency, "carrot") == "v:cherry"  # same key: "c"
    with pytest.raises(ConnectionError):
        await fallback.call(dependency, "avocado")  # "a" was evicted (LRU, 2 entries)


async def test_last_good_skips_unhashable_arguments() -> None:
    fallback = Fallback.last_good(ttl=10)

    async def echo(items: list[int]) -> int:
        if items[0] < 0:
            raise ConnectionError
        return len(items)

    assert await fallback.call(echo, [1, 2]) == 2
    with pytest.raises(ConnectionError):
        await fallback.call(echo, [-1])


def test_bad_configuration_is_rejected_at_construction() -> None:
    async def handler(exc: Exception) -> None:
        return None

    with pytest.raises(ValueError, match="exactly one of value= and handler="):
        Fallback()
    with pytest.raises(ValueError, match="exactly one of value= and handler="):
        Fallback(1, handler=handler)
    with pytest.raises(TypeError, match="handler must be a callable"):
        Fallback(handler=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl must be"):
        Fallback.last_good(0)
    with pytest.raises(ValueError, match="max_entries must be"):
        Fallback.last_good(1, max_entries=0)
    with pytest.raises(TypeError, match="key must be a callable"):
        Fallback.last_good(1, key=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on"):
        Fallback(1, on="errors")  # type: ignore[arg-type]


async def test_value_handler_and_last_good() -> None:
    calls: list[str] = []

    async def flaky(key: str) -> str:
        calls.append(key)
        if key.startswith("bad"):
            raise ConnectionError(key)
        return key.upper()

    async def handler(exc: Exception, key: str) -> str:
        assert degraded()
        return f"fallback:{key}"

    assert await Fallback("x").call(flaky, "bad1") == "x"
    assert await Fallback(handler=handler).call(flaky, "bad2") == "fallback:bad2"
    assert not degraded()

    last_good = Fallback.last_good(ttl=60, key=lambda key: key[-1])
    assert await last_good.call(flaky, "ok1") == "OK1"
    assert await last_good.call(flaky, "bad1") == "OK1"
    with pytest.raises(ConnectionError):
        await last_good.call(flaky, "bad2")


async def test_fallback_never_catches_keyboard_interrupt() -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await Fallback(None, on=BaseException).call(interrupted)
