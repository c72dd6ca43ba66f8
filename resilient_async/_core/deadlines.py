"""Where the effective deadline lives: one context variable, shared by every driver.

Each armed deadline scope pushes a `Deadline` node: its absolute time, on the library's
clock (the event loop's clock with trio's random offset taken out, so that it matches
`time.monotonic` in real time on every backend and in sync code), the task whose scope
enforces it, and whether that scope is still open. Because the node lives in a context
variable it reaches child tasks, retry attempts, hedges, fallbacks and compensations, and
nothing set inside a task leaks to its parent.

A task can outlive the block whose deadline it inherited (a task spawned from inside a
`deadline` block into a wider task group, or a fire-and-forget task). Such a deadline no
longer applies once its block has exited, so a closed node is skipped: the effective deadline
is the earliest one among the nodes still open.
"""

from __future__ import annotations

import math
from contextvars import ContextVar

__all__ = ["DEADLINE", "Deadline", "effective_deadline", "visible"]


class Deadline:
    """One armed deadline scope, as seen by every task that inherits the context.

    Attributes:
        when: The absolute deadline on the library's clock.
        owner: The task whose scope enforces it (cancels it on expiry), or None for a sync
            scope, which cannot interrupt anything.
        open: False once the scope has exited: the deadline no longer applies anywhere.
        parent: The node that was current when this one was pushed.
    """

    __slots__ = ("open", "owner", "parent", "when")

    def __init__(self, when: float, owner: object, parent: Deadline | None) -> None:
        self.when = when
        self.owner = owner
        self.parent = parent
        self.open = True


DEADLINE: ContextVar[Deadline | None] = ContextVar("resilient_async.deadline", default=None)


def visible(node: Deadline | None) -> Deadline | None:
    """Return the earliest open node of the chain from `node`, or None when none is open."""
    if node is None or (node.open and node.parent is None):
        return node  # the common cases: no deadline, or one scope
    best: Deadline | None = None
    while node is not None:
        if node.open and (best is None or node.when < best.when):
            best = node
        node = node.parent
    return best


def effective_deadline() -> float:
    """Return the effective deadline on the library's clock (`math.inf` when there is none)."""
    node = visible(DEADLINE.get())
    return math.inf if node is None else node.when
