"""A supervisor's restart bookkeeping, pure: child exits and time in, decisions out.

The rules are Erlang/OTP's. Children are kept in start order. When a child exits, its restart
type says whether it is restarted (`permanent`: always; `transient`: only after an error;
`temporary`: never), and the strategy says which siblings go with it: `one_for_one` restarts
the child alone, `one_for_all` stops every other live child and restarts them all,
`rest_for_one` stops and restarts the children started after it. Siblings stopped this way
are restarted too, except temporary ones, which are dropped. Children stop last-started
first and start again in start order.

Restart intensity: every crash that leads to a restart is recorded with its time, and more
than `max_restarts` recorded crashes within `within` seconds means giving up. One crash
handled is one restart, however many siblings it takes along. Nothing but time removes a
crash from the window: a child that runs well for a while resets nothing. A permanent child
that returns is restarted as well, but a return is not a crash and is not counted.

The driver reports each exit with `exited`, stops the children `next_to_stop` names (their
exits then come back through `exited`), and starts those `take_starts` hands out. No method
awaits or reads a clock.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

__all__ = [
    "ChildInfo",
    "ChildState",
    "GiveUp",
    "Restart",
    "RestartType",
    "Strategy",
    "SupervisorCore",
]


class Strategy(enum.StrEnum):
    """Which siblings restart along with a child that exited (Erlang/OTP's strategies)."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class RestartType(enum.StrEnum):
    """When a child is restarted after it exits."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class ChildState(enum.StrEnum):
    """Where a supervised child is in its life; compares equal to its string value.

    Attributes:
        RUNNING: Its function runs (or is about to be called).
        STOPPING: A sibling's exit stopped it; it is being cancelled before it restarts.
        RESTARTING: It exited and will start again (after the backoff, if any).
        DONE: It returned and is not restarted (transient or temporary).
        FAILED: A temporary child that raised; it is not restarted.
        CANCELLED: Cancelled for good: the supervisor was cancelled or gave up, the child's
            own task was cancelled, or a strategy stopped this temporary child.
    """

    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


_LIVE = frozenset({ChildState.RUNNING, ChildState.STOPPING, ChildState.RESTARTING})


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """A snapshot of one child, from `Supervisor.children`.

    Attributes:
        name: The child's name.
        state: Its `ChildState`.
        restarts: How many times it was started again (after its own exit or a sibling's).
        restart: Its restart type: "permanent", "transient" or "temporary".
    """

    name: str
    state: ChildState
    restarts: int
    restart: RestartType

    @property
    def restart_count(self) -> int:
        """The same as `restarts`."""
        return self.restarts


@dataclass(frozen=True, slots=True)
class Restart:
    """Decision: the exit of `child` restarts `children` (indices, in start order).

    `stop` are the running siblings to stop first (their exits come back through
    `SupervisorCore.exited`); `crashes` is the number of crashes in the window now, this one
    included (0 for a permanent child that returned).
    """

    child: int
    children: tuple[int, ...]
    stop: tuple[int, ...]
    crashes: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Decision: restart intensity exceeded; `crashes` are those within the window."""

    crashes: tuple[Exception, ...]


@dataclass(slots=True)
class _Child:
    name: str
    restart: RestartType
    state: ChildState = ChildState.RUNNING
    restarts: int = 0


class SupervisorCore:
    """The restart state machine of one supervisor.

    Args:
        strategy: Which siblings restart with a child.
        max_restarts: Crashes allowed within `within` seconds (>= 0; one more gives up).
        within: The length of the intensity window in seconds (> 0).
    """

    __slots__ = ("_children", "_crashes", "gave_up", "max_restarts", "strategy", "within")

    def __init__(self, strategy: Strategy, max_restarts: int, within: float) -> None:
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.within = within
        self._children: list[_Child] = []
        self._crashes: deque[tuple[float, Exception]] = deque()
        self.gave_up = False

    def add(self, name: str, restart: RestartType) -> int:
        """Record a child started now, after every existing one; return its index."""
        self._children.append(_Child(name, restart))
        return len(self._children) - 1

    def names(self) -> set[str]:
        """Return the names in use."""
        return {child.name for child in self._children}

    def name(self, index: int) -> str:
        """Return the name of child `index`."""
        return self._children[index].name

    def state(self, index: int) -> ChildState:
        """Return the state of child `index`."""
        return self._children[index].state

    def child(self, index: int) -> ChildInfo:
        """Return a snapshot of child `index`."""
        c = self._children[index]
        return ChildInfo(c.name, c.state, c.restarts, c.restart)

    def info(self) -> tuple[ChildInfo, ...]:
        """Return a snapshot of every child, in start order."""
        return tuple(ChildInfo(c.name, c.state, c.restarts, c.restart) for c in self._children)

    def crashes_within(self, now: float) -> int:
        """Return how many crashes are in the intensity window at `now`."""
        self._expire(now)
        return len(self._crashes)

    def exited(self, index: int, now: float, error: Exception | None) -> Restart | GiveUp | None:
        """Record that child `index` exited at `now` (with `error`, or None for a return).

        A child that was being stopped moves on to RESTARTING (or CANCELLED when temporary)
        and nothing else happens: its error, if any, is not counted. Otherwise the restart
        type and the strategy decide.

        Returns:
            A `Restart`, a `GiveUp` (every child is then CANCELLED), or None when nothing is
            restarted.
        """
        child = self._children[index]
        if child.state is ChildState.STOPPING:
            temporary = child.restart is RestartType.TEMPORARY
            child.state = ChildState.CANCELLED if temporary else ChildState.RESTARTING
            return None
        if child.state is not ChildState.RUNNING:
            return None  # cancelled meanwhile (the supervisor gave up or stops): no decision
        if child.restart is RestartType.TEMPORARY or (
            error is None and child.restart is RestartType.TRANSIENT
        ):
            child.state = ChildState.DONE if error is None else ChildState.FAILED
            return None
        crashes = 0
        if error is not None:
            self._crashes.append((now, error))
            crashes = self.crashes_within(now)
            if crashes > self.max_restarts:
                self.cancel_all()
                self.gave_up = True
                return GiveUp(tuple(exc for _, exc in self._crashes))
        child.state = ChildState.RESTARTING
        stop: list[int] = []
        for sibling in self._affected(index):
            if self._children[sibling].state is ChildState.RUNNING:
                self._children[sibling].state = ChildState.STOPPING
                stop.append(sibling)
        # Siblings already waiting for a restart (from an earlier exit) start in the same round.
        restarting = tuple(
            i
            for i in sorted({index, *self._affected(index)})
            if self._children[i].state in (ChildState.RESTARTING, ChildState.STOPPING)
            and self._children[i].restart is not RestartType.TEMPORARY
        )
        return Restart(index, restarting, tuple(stop), crashes)

    def cancelled(self, index: int) -> None:
        """Record that child `index` was cancelled for good (it is not restarted)."""
        child = self._children[index]
        if child.state in _LIVE:
            child.state = ChildState.CANCELLED

    def cancel_all(self) -> None:
        """Mark every live child CANCELLED (the supervisor stops)."""
        for child in self._children:
            if child.state in _LIVE:
                child.state = ChildState.CANCELLED

    def next_to_stop(self) -> int | None:
        """Return the last-started child still STOPPING, or None when none is."""
        for index in range(len(self._children) - 1, -1, -1):
            if self._children[index].state is ChildState.STOPPING:
                return index
        return None

    def has_pending_starts(self) -> bool:
        """Tell whether any child waits to be started again."""
        return any(c.state is ChildState.RESTARTING for c in self._children)

    def take_starts(self) -> tuple[int, ...]:
        """Move every RESTARTING child to RUNNING and return them in start order.

        Call it only when `next_to_stop()` is None: a restart never overtakes a stop.
        """
        if self.next_to_stop() is not None:
            raise RuntimeError("children are still stopping")
        started = []
        for index, child in enumerate(self._children):
            if child.state is ChildState.RESTARTING:
                child.state = ChildState.RUNNING
                child.restarts += 1
                started.append(index)
        return tuple(started)

    def _affected(self, index: int) -> range | list[int]:
        """Return the siblings that the strategy restarts along with child `index`."""
        if self.strategy is Strategy.ONE_FOR_ONE:
            return []
        if self.strategy is Strategy.ONE_FOR_ALL:
            return [i for i in range(len(self._children)) if i != index]
        return range(index + 1, len(self._children))

    def _expire(self, now: float) -> None:
        crashes = self._crashes
        while crashes and now - crashes[0][0] > self.within:
            crashes.popleft()
