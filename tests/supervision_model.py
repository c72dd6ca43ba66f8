"""A reference model of OTP supervision, written plainly, for the model-based tests.

It knows nothing of the core's implementation: a list of children with a state each, a list of
crash times, and the textbook rules. States: "running", "stopping" (a sibling's exit stops
it), "pending" (will start again), "dead" (ended for good).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelChild:
    restart: str
    state: str = "running"
    restarts: int = 0


@dataclass
class Model:
    strategy: str
    max_restarts: int
    within: float
    children: list[ModelChild] = field(default_factory=list)
    crash_times: list[float] = field(default_factory=list)
    gave_up: bool = False

    def add(self, restart: str) -> None:
        self.children.append(ModelChild(restart))

    def siblings(self, index: int) -> list[int]:
        if self.strategy == "one_for_one":
            return []
        if self.strategy == "one_for_all":
            return [j for j in range(len(self.children)) if j != index]
        return list(range(index + 1, len(self.children)))

    def exit(self, index: int, crashed: bool, now: float) -> None:
        """A running child returns (crashed=False) or raises (crashed=True) at `now`."""
        child = self.children[index]
        assert child.state == "running"
        if child.restart == "temporary" or (not crashed and child.restart == "transient"):
            child.state = "dead"
            return
        if crashed:
            self.crash_times = [t for t in self.crash_times if now - t <= self.within]
            self.crash_times.append(now)
            if len(self.crash_times) > self.max_restarts:
                self.gave_up = True
                for c in self.children:
                    c.state = "dead"
                return
        child.state = "pending"
        for j in self.siblings(index):
            if self.children[j].state == "running":
                self.children[j].state = "stopping"

    def stopped(self, index: int) -> None:
        """A stopping child has exited (however it ended)."""
        child = self.children[index]
        assert child.state == "stopping"
        child.state = "dead" if child.restart == "temporary" else "pending"

    def settle(self) -> list[int]:
        """Finish every stop, then start every pending child; return those started, in order."""
        for j in reversed(range(len(self.children))):
            if self.children[j].state == "stopping":
                self.stopped(j)
        started = []
        for j, child in enumerate(self.children):
            if child.state == "pending":
                child.state = "running"
                child.restarts += 1
                started.append(j)
        return started

    def crashes_within(self, now: float) -> int:
        return len([t for t in self.crash_times if now - t <= self.within])
