"""Tools for testing code that uses resilient_async.

- `set_testing()` switches real waits off in retries (and caps attempts), globally or for a
  block.
- Virtual time on both backends: `virtual_time_loop()` builds an asyncio event loop whose clock
  jumps ahead whenever every task is blocked; on trio use `trio.testing.MockClock` with
  `autojump_threshold=0`. Every primitive reads time only through the running loop's clock, so
  timeouts, backoff waits, breaker open periods and token refills all run in virtual time.
- `faults()` wraps an async callable so that it fails, slows down or hangs at given rates,
  reproducibly for a seed, or follows a script of outcomes.
- The pytest plugin (fixtures `ra_no_wait`, `ra_faults`) lives in
  `resilient_async._pytest_plugin` and is registered through the `pytest11` entry point.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import math
import random
import selectors
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, ParamSpec, TypeVar

import anyio

__all__ = [
    "VirtualClock",
    "VirtualTimePolicy",
    "faults",
    "set_testing",
    "testing_settings",
    "virtual_time_loop",
]


@dataclass(frozen=True, slots=True)
class TestingSettings:
    """What `set_testing` switched on: read by the drivers, never written by them."""

    __test__: ClassVar[bool] = False  # not a pytest test class, despite its name

    active: bool = False
    attempts: int | None = None


_settings = TestingSettings()


def testing_settings() -> TestingSettings:
    """Return the settings that `set_testing` made current."""
    return _settings


class set_testing:  # a function in use, a context manager by implementation
    """Switch testing mode on or off: retries stop waiting between attempts.

    Call it plainly to switch for the whole process, or use it as a context manager to switch
    for a block and restore the previous settings afterwards.

    Args:
        testing: True to skip every backoff wait (the retry loop still runs its attempts).
        attempts: If given, caps every retry loop at this many attempts while testing.

    Raises:
        ValueError: `attempts` is less than 1.

    Example:
        >>> from resilient_async.testing import set_testing
        >>> with set_testing(True, attempts=2):
        ...     pass  # retries here make at most 2 attempts and never sleep
    """

    __slots__ = ("_previous",)

    def __init__(self, testing: bool, *, attempts: int | None = None) -> None:
        global _settings
        if attempts is not None and (isinstance(attempts, bool) or attempts < 1):
            raise ValueError(f"attempts must be >= 1 or None, got {attempts!r}")
        self._previous = _settings
        _settings = TestingSettings(active=bool(testing), attempts=attempts)

    def __enter__(self) -> TestingSettings:
        return _settings

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _settings
        _settings = self._previous


class VirtualClock:
    """A clock that only moves when told to, or when the loop has nothing to do.

    Attributes:
        now: The current virtual time in seconds.
    """

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (never backwards).

        Raises:
            ValueError: `seconds` is negative.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        self.now += seconds


class _AutojumpSelector(selectors.BaseSelector):
    """Wraps a real selector; when nothing is ready and a timer is pending, jumps the clock.

    The loop asks the selector to wait `timeout` seconds for I/O until its next timer. If no
    I/O is ready right now, the wait is skipped and the virtual clock moves to that timer. With
    no timer pending (timeout None) the selector blocks for real, so threads and sockets still
    wake the loop.
    """

    def __init__(self, real: selectors.BaseSelector, clock: VirtualClock) -> None:
        self._real = real
        self._clock = clock

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return self._real.select(None)
        self._clock.advance(max(timeout, 0.0))
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()


class _VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        super().__init__(_AutojumpSelector(selectors.DefaultSelector(), clock))

    def time(self) -> float:
        return self.clock.now


def virtual_time_loop(clock: VirtualClock | None = None) -> asyncio.AbstractEventLoop:
    """Create an asyncio event loop that runs in virtual time.

    Whenever every task is blocked and a timer is pending, the clock jumps to that timer at
    once, like trio's `MockClock(autojump_threshold=0)`. A one-hour backoff takes no real
    time. Do not use it for tests that wait on real I/O with a timeout: the timeout would fire
    before the I/O has a chance to complete.

    Args:
        clock: The clock to drive; a new one starting at 0 when omitted. `loop.clock` holds it.

    Example:
        >>> import asyncio
        >>> with asyncio.Runner(loop_factory=virtual_time_loop) as runner:
        ...     runner.run(asyncio.sleep(3600))  # returns at once
    """
    return _VirtualTimeEventLoop(clock if clock is not None else VirtualClock())


class VirtualTimePolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose new loops run in virtual time, all on one `clock`.

    For test runners that create their loop through the policy (pytest-asyncio, anyio's
    asyncio backend without a `loop_factory`, `asyncio.run`): install it for a test and every
    loop created meanwhile jumps over idle time. The `ra_virtual_time` fixture does this.

    Args:
        clock: The clock the loops share; a new one starting at 0 when omitted.
    """

    def __init__(self, clock: VirtualClock | None = None) -> None:
        super().__init__()
        self.clock = clock if clock is not None else VirtualClock()

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """Create a loop that runs in this policy's virtual time."""
        return virtual_time_loop(self.clock)


P = ParamSpec("P")
T = TypeVar("T")

Outcome = BaseException | type[BaseException] | float | None


def faults(
    fn: Callable[P, Awaitable[T]],
    *,
    error_rate: float = 0.0,
    errors: Sequence[BaseException | type[BaseException]] = (ConnectionError,),
    latency: float | tuple[float, float] | None = None,
    latency_rate: float = 0.0,
    hang_rate: float = 0.0,
    seed: int | None = None,
    script: Sequence[Outcome] | None = None,
) -> Callable[P, Awaitable[T]]:
    """Wrap the async callable `fn` so that it misbehaves on purpose.

    Random mode: on each call, with probability `hang_rate` the call hangs until cancelled;
    otherwise, with probability `latency_rate` it first sleeps `latency` seconds (a float, or
    a `(low, high)` range drawn uniformly); then, with probability `error_rate`, it raises one
    of `errors` (classes are instantiated, instances copied, so no instance is raised twice);
    otherwise it calls `fn`. The same `seed` gives the same sequence of outcomes.

    Script mode (`script=[...]`): call number i follows `script[i]`: an exception class or
    instance is raised, a float is slept before calling `fn`, `None` calls `fn` at once.
    Calls past the end of the script call `fn`.

    Sleeps use the running loop's clock, so faults run in virtual time too.

    Raises:
        ValueError: A rate is outside [0, 1], `latency` is negative, `errors` is empty, or
            `script` is combined with random-mode settings.
        TypeError: `fn` is not an async callable, or `errors` or `script` holds something
            else than the kinds above.

    Example:
        >>> flaky = faults(fetch, error_rate=0.2, latency=0.5, latency_rate=0.1, seed=7)
        >>> scripted = faults(fetch, script=[ConnectionError, 2.0, None])
    """
    if not callable(fn) or (inspect.isfunction(fn) and not inspect.iscoroutinefunction(fn)):
        # Caught here rather than at the first call, where it would read as an injected fault.
        raise TypeError(f"fn must be an async callable, got {fn!r}")
    for name, rate in (
        ("error_rate", error_rate),
        ("latency_rate", latency_rate),
        ("hang_rate", hang_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], got {rate!r}")
    low, high = _latency_range(latency)
    if latency_rate > 0 and latency is None:
        raise ValueError("latency must be given when latency_rate > 0")
    if script is not None:
        if error_rate or latency_rate or hang_rate:
            raise ValueError("script cannot be combined with error_rate, latency_rate, hang_rate")
        steps = [_check_outcome(step) for step in script]
        return _scripted(fn, steps)
    if not errors:
        raise ValueError("errors must hold at least one exception class or instance")
    choices = [_check_error(e) for e in errors]
    rng = random.Random(seed)

    @functools.wraps(fn)
    async def faulty(*args: P.args, **kwargs: P.kwargs) -> T:
        if hang_rate and rng.random() < hang_rate:
            await anyio.sleep(math.inf)
        if latency_rate and rng.random() < latency_rate:
            await anyio.sleep(low if low == high else rng.uniform(low, high))
        if error_rate and rng.random() < error_rate:
            raise _fresh(rng.choice(choices))
        return await fn(*args, **kwargs)

    return faulty


def _latency_range(latency: float | tuple[float, float] | None) -> tuple[float, float]:
    if latency is None:
        return 0.0, 0.0
    low, high = (latency, latency) if isinstance(latency, int | float) else latency
    if not 0.0 <= low <= high:
        raise ValueError(f"latency must be >= 0 (or a range low <= high), got {latency!r}")
    return float(low), float(high)


def _check_error(error: object) -> BaseException | type[BaseException]:
    if isinstance(error, BaseException) or (
        isinstance(error, type) and issubclass(error, BaseException)
    ):
        return error
    raise TypeError(f"errors must hold exception classes or instances, got {error!r}")


def _check_outcome(step: object) -> Outcome:
    if step is None or isinstance(step, BaseException):
        return step
    if isinstance(step, type) and issubclass(step, BaseException):
        return step
    if isinstance(step, int | float) and not isinstance(step, bool) and step >= 0:
        return float(step)
    raise TypeError(
        "each outcome must be an exception class or instance, a delay in seconds (>= 0), "
        f"or None; got {step!r}"
    )


def _fresh(error: BaseException | type[BaseException]) -> BaseException:
    return error() if isinstance(error, type) else copy.copy(error)


def _scripted(fn: Callable[P, Awaitable[T]], steps: list[Outcome]) -> Callable[P, Awaitable[T]]:
    calls = 0
    # An instance the script names is raised as itself (a test may check `exc is scripted`);
    # only when the script names it again is a copy raised, so no instance is raised twice.
    raised: set[int] = set()

    @functools.wraps(fn)
    async def scripted(*args: P.args, **kwargs: P.kwargs) -> T:
        nonlocal calls
        step = steps[calls] if calls < len(steps) else None
        calls += 1
        if isinstance(step, float):
            await anyio.sleep(step)
        elif isinstance(step, BaseException) and id(step) not in raised:
            raised.add(id(step))
            raise step
        elif step is not None:
            raise _fresh(step)
        return await fn(*args, **kwargs)

    return scripted
