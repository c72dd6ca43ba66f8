"""A scripted dependency for the tests written once, a coroutine function or a plain one."""

from ._backend import now, sleep


class Flaky:
    """A callable that follows a script: an exception class to raise, or a value.

    Past the end of the script it repeats the last step. Each raise of a class is a fresh
    instance. `duration` seconds pass inside every call; `started` keeps when each call began.
    """

    def __init__(self, *script: object, duration: float = 0.0) -> None:
        self.script = list(script)
        self.duration = duration
        self.calls = 0
        self.raised: list[BaseException] = []
        self.started: list[float] = []

    async def __call__(self, *args: object, **kwargs: object) -> object:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        self.started.append(now())
        if self.duration:
            await sleep(self.duration)
        if isinstance(step, type) and issubclass(step, BaseException):
            step = step("scripted")
        if isinstance(step, BaseException):
            self.raised.append(step)
            raise step
        return step

    def gaps(self) -> list[float]:
        """Return the time between the starts of consecutive calls."""
        return [later - earlier for earlier, later in zip(self.started, self.started[1:])]
