"""`DeadlineScope` on trio: trio's own cancel scope, and nothing else on the way.

Imported only once trio runs. The scope reads trio's clock once, passes trio an absolute
deadline, and arms nothing when an enclosing deadline of the same task comes first.
"""

from __future__ import annotations

from types import TracebackType

import trio
from trio.lowlevel import current_clock, current_task

from .._core.deadlines import DEADLINE, Deadline, visible
from ..errors import DeadlineExceeded
from .deadline_scope import DeadlineScope
from .trio_clock import offset_of

__all__ = ["TrioDeadline"]

_CancelScope = trio.CancelScope
_get_deadline = DEADLINE.get
_set_deadline = DEADLINE.set
_reset_deadline = DEADLINE.reset


class TrioDeadline(DeadlineScope):
    """`DeadlineScope` on trio (see there); made by `DeadlineScope(...)` under trio."""

    __slots__ = ()

    def __enter__(self) -> DeadlineScope:
        task = current_task()  # a RuntimeError outside a trio task
        clock = current_clock()
        offset = offset_of(clock)
        when = self._when
        if when is None:
            at = clock.current_time() + self._timeout  # type: ignore[operator]  # trio's clock
            when = self._when = at - offset
        else:
            at = when + offset
        outer = _get_deadline()
        if outer is not None:  # (a call less for the common case: no enclosing deadline)
            ahead = visible(outer)
            if ahead is not None and when >= ahead.when:
                if ahead.owner is task:
                    return self  # the enclosing deadline comes first, and it cancels this task
                if ahead.owner is None:
                    when = ahead.when  # a sync scope's deadline: only this task can enforce it
                    at = when + offset
        self._scope = scope = _CancelScope(deadline=at)
        scope.__enter__()
        self._node = node = Deadline(when, task, outer)
        self._token = _set_deadline(node)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token = self._token
        if token is None:
            return  # nothing was armed
        self._node.open = False  # for tasks that inherited it and outlive this block
        _reset_deadline(token)
        self._token = None
        scope = self._scope
        try:
            swallowed = scope.__exit__(exc_type, exc, tb)
        finally:
            self._expired = expired = scope.cancelled_caught
        if swallowed and expired:
            raise DeadlineExceeded(self._timeout) from exc
