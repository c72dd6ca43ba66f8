"""`DeadlineScope`: what every async deadline does, and the choice of its implementation.

Making a scope picks the class of the async library that runs (as anyio picks its backend):
`AsyncioDeadline` (a timer wheel per loop, `Task.cancel`/`uncancel`) or `TrioDeadline`
(trio's own cancel scopes). Each one is lean because it never asks again which library runs.
A scope is made where it is entered: in the task, under the library that runs it.
"""

from __future__ import annotations

import sys
from asyncio import events as _events
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from .._core.deadlines import Deadline
    from .._core.timer_wheel import Bucket

__all__ = ["DeadlineScope"]

_get_running_loop = _events._get_running_loop
_new = object.__new__


class DeadlineScope:
    """Cancel the enclosed block at `when` and raise `DeadlineExceeded`, as a plain `with`.

    The effective deadline (a context variable) becomes min(outer, `when`): an inner scope can
    never extend an outer one, and a scope whose deadline is not earlier than an enclosing one
    enforced in the same task arms nothing at all (the fast path). A deadline inherited from
    a scope that does not cancel this task (a task spawned into a wider task group, a
    fire-and-forget task, a sync `deadline` around `asyncio.run`) is not relied on: the scope
    arms its own timer, at its own deadline, or at the inherited one when that comes from sync
    code, which cannot enforce it. Only the scope that expired raises; an outer cancellation
    passes through untouched, and on asyncio `Task.cancelling()` is back at its entry value
    on exit. Code shielded from cancellation (`anyio.CancelScope(shield=True)`) is never
    interrupted: on asyncio the expiry waits for the shield to exit, as trio's does.

    `DeadlineScope(when, timeout)` makes an `AsyncioDeadline` or a `TrioDeadline`, by the
    library that runs.

    Args:
        when: The absolute deadline on the library's clock (`current_time()`), or None for
            `timeout` seconds after entering.
        timeout: The relative length the user asked for (reported on the error), or None.
    """

    # The fields of both implementations, declared once.
    __slots__ = (
        "_cancelling",
        "_expired",
        "_handle",
        "_host",
        "_loop",
        "_node",
        "_scope",
        "_task",
        "_timeout",
        "_token",
        "_when",
        "wheel_bucket",
        "wheel_when",
    )

    _when: float | None
    _timeout: float | None
    _token: Any  # the DEADLINE token while armed, else None
    _expired: bool
    _loop: asyncio.AbstractEventLoop  # the asyncio loop it was made in (None on trio)
    # Set only when the scope arms (kept off the unarmed path):
    _node: Deadline
    _scope: Any  # trio's cancel scope
    _task: asyncio.Task[Any]
    _cancelling: int
    _host: Any  # the anyio cancel scope the asyncio task was in on entry
    _handle: asyncio.Handle | None  # a deadline already past, a shield poll
    wheel_bucket: Bucket | None  # armed in the loop's timer wheel
    wheel_when: float

    def __new__(cls, when: float | None, timeout: float | None = None) -> DeadlineScope:
        # The running loop is read once, here (each read is a system call, getpid).
        loop = _get_running_loop()
        self: DeadlineScope = _new(
            AsyncioDeadline if loop is not None else _trio_deadline or _trio()
        )
        self._loop = loop  # type: ignore[assignment]  # None on trio, which never reads it
        self._when = when
        self._timeout = timeout
        self._token = None
        self._expired = False
        return self

    @property
    def deadline(self) -> float | None:
        """The absolute deadline of this scope (None before entering a relative one)."""
        return self._when

    @property
    def expired(self) -> bool:
        """True once this scope's own deadline cancelled the block."""
        return self._expired

    def __enter__(self) -> DeadlineScope:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        raise NotImplementedError


_trio_deadline: type[DeadlineScope] | None = None


def _trio() -> type[DeadlineScope]:
    """Return `TrioDeadline`, imported on first use (without an asyncio loop, trio runs)."""
    global _trio_deadline
    if "trio" not in sys.modules:
        raise RuntimeError("this needs a running asyncio or trio event loop")
    from .trio_deadline import TrioDeadline

    _trio_deadline = TrioDeadline
    return TrioDeadline


# The asyncio implementation subclasses `DeadlineScope`, hence the import at the end.
from .asyncio_deadline import AsyncioDeadline  # noqa: E402
