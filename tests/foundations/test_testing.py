"""The testing tools: set_testing, virtual time on asyncio, fault injection, the plugin."""

from __future__ import annotations

import asyncio
import time

import anyio
import pytest

from resilient_async import testing
from resilient_async.testing import VirtualClock, faults, set_testing, virtual_time_loop

from ..helpers import BACKENDS, run_virtual


def test_set_testing_globally_and_as_a_context_manager() -> None:
    assert not testing.testing_settings().active
    with set_testing(True, attempts=2) as settings:
        assert settings.active
        assert testing.testing_settings().attempts == 2
        with set_testing(False):
            assert not testing.testing_settings().active
        assert testing.testing_settings().active
    assert not testing.testing_settings().active
    set_testing(True)
    try:
        assert testing.testing_settings().active
    finally:
        set_testing(False)


def test_set_testing_rejects_bad_attempts() -> None:
    with pytest.raises(ValueError, match="attempts must be >= 1"):
        set_testing(True, attempts=0)


def test_virtual_loop_jumps_over_sleeps_and_timers() -> None:
    clock = VirtualClock(100.0)
    fired: list[float] = []

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        loop.call_later(50, lambda: fired.append(loop.time()))
        await asyncio.sleep(3600)
        return loop.time()

    started = time.monotonic()
    with asyncio.Runner(loop_factory=lambda: virtual_time_loop(clock)) as runner:
        assert runner.run(scenario()) == pytest.approx(3700.0)
    assert fired == [pytest.approx(150.0)]
    assert time.monotonic() - started < 30


def test_virtual_loop_still_runs_real_io() -> None:
    async def scenario() -> bytes:
        reader, writer = await asyncio.open_connection(*server_address)
        writer.write(b"ping")
        data = await reader.readexactly(4)
        writer.close()
        await writer.wait_closed()
        return data

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        global server_address
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        server_address = server.sockets[0].getsockname()[:2]
        async with server:
            return await scenario()

    with asyncio.Runner(loop_factory=virtual_time_loop) as runner:
        assert runner.run(main()) == b"ping"


server_address: tuple[str, int] = ("127.0.0.1", 0)


def test_virtual_clock_never_goes_back() -> None:
    with pytest.raises(ValueError, match="seconds must be >= 0"):
        VirtualClock().advance(-1)


async def _ok() -> str:
    return "ok"


@pytest.mark.parametrize("backend", BACKENDS)
def test_faults_are_reproducible_for_a_seed(backend: str) -> None:
    async def outcomes(seed: int) -> list[str]:
        flaky = faults(_ok, error_rate=0.3, latency=0.5, latency_rate=0.3, seed=seed)
        seen = []
        for _ in range(200):
            start = anyio.current_time()
            try:
                await flaky()
                seen.append("slow" if anyio.current_time() - start > 0 else "ok")
            except ConnectionError:
                seen.append("error")
        return seen

    first = run_virtual(backend, lambda: outcomes(3))
    assert first == run_virtual(backend, lambda: outcomes(3))
    assert first != run_virtual(backend, lambda: outcomes(4))
    assert 30 < first.count("error") < 90
    assert 20 < first.count("slow") < 90


@pytest.mark.parametrize("backend", BACKENDS)
def test_faults_hang_until_cancelled(backend: str) -> None:
    async def scenario() -> bool:
        hanging = faults(_ok, hang_rate=1.0, seed=1)
        with anyio.move_on_after(1000) as scope:
            await hanging()
        return scope.cancelled_caught

    assert run_virtual(backend, scenario)


@pytest.mark.parametrize("backend", BACKENDS)
def test_faults_follow_a_script(backend: str) -> None:
    instance = TimeoutError("slow")

    async def scenario() -> list[object]:
        scripted = faults(_ok, script=[KeyError, 2.0, instance, None, instance])
        seen: list[object] = []
        for _ in range(7):
            start = anyio.current_time()
            try:
                seen.append((await scripted(), anyio.current_time() - start))
            except Exception as exc:
                seen.append(exc)
        return seen

    seen = run_virtual(backend, scenario)
    assert isinstance(seen[0], KeyError)
    assert seen[1] == ("ok", 2.0)
    assert isinstance(seen[2], TimeoutError)
    assert seen[2] is instance  # the script's own instance, as API.md says
    assert isinstance(seen[4], TimeoutError)
    assert seen[4] is not seen[2]  # named again: a copy, so no instance is raised twice
    assert seen[3] == seen[5] == seen[6] == ("ok", 0.0)


def test_faults_reject_bad_settings() -> None:
    with pytest.raises(ValueError, match="error_rate must be within"):
        faults(_ok, error_rate=1.5)
    with pytest.raises(ValueError, match="latency must be given"):
        faults(_ok, latency_rate=0.5)
    with pytest.raises(ValueError, match="latency must be >= 0"):
        faults(_ok, latency=-1.0, latency_rate=0.5)
    with pytest.raises(ValueError, match="errors must hold"):
        faults(_ok, error_rate=0.5, errors=())
    with pytest.raises(TypeError, match="each outcome"):
        faults(_ok, script=["boom"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="script cannot be combined"):
        faults(_ok, script=[None], error_rate=0.1)


def test_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from resilient_async import testing

        def test_no_wait(ra_no_wait):
            assert testing.testing_settings().active

        def test_faults(ra_faults):
            assert ra_faults is testing.faults
        """
    )
    # The fixtures come from the installed `pytest11` entry point, as in a user's project.
    result = pytester.runpytest_subprocess("-p", "no:asyncio")
    result.assert_outcomes(passed=2)


def test_virtual_time_with_anyio_and_with_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import time

        import pytest

        from resilient_async.testing import VirtualTimePolicy

        @pytest.fixture(scope="session")
        def event_loop_policy():  # pytest-asyncio's hook for the loops it creates
            return VirtualTimePolicy()

        @pytest.mark.asyncio
        async def test_pytest_asyncio():
            started = time.monotonic()
            await asyncio.sleep(3600)
            assert asyncio.get_running_loop().time() >= 3600
            assert time.monotonic() - started < 60

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_anyio(ra_virtual_time):
            started = time.monotonic()
            await asyncio.sleep(7200)
            assert ra_virtual_time.now >= 7200
            assert time.monotonic() - started < 60
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "asyncio", "-o", "asyncio_mode=strict", "--timeout", "60"
    )
    result.assert_outcomes(passed=2)
