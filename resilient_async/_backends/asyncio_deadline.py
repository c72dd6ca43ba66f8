"""`DeadlineScope` on asyncio: one timer wheel per loop, `Task.cancel` and `uncancel`.

A loop timer per guarded call costs more than most guarded calls; the wheel arms one per tick
of deadlines instead (see `_core/timer_wheel.py`). Expiry is exact: each bucket's timer is at
the earliest deadline armed in it. This costs a fraction of anyio's cancel scopes, and keeps
their promise that shielded code is never interrupted.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

from .._core.deadlines import DEADLINE, Deadline, visible
from .._core.timer_wheel import Bucket, TimerWheel
from ..errors import DeadlineExceeded
from .deadline_scope import DeadlineScope

__all__ = ["AsyncioDeadline"]

_INF: Final = float("inf")

_current_task = asyncio.current_task
_CancelledError = asyncio.CancelledError


class AsyncioDeadline(DeadlineScope):
    """`DeadlineScope` on asyncio (see there); made by `DeadlineScope(...)` on asyncio."""

    __slots__ = ()

    def __enter__(self) -> DeadlineScope:
        when = self._when
        loop = self._loop
        task = _current_task(loop)
        if task is None:
            raise RuntimeError("a deadline can only be entered inside a task")
        if when is None:
            now = loop.time()
            when = self._when = now + self._timeout  # type: ignore[operator]
        else:
            now = None
        outer = DEADLINE.get()
        if outer is not None:  # (a call less for the common case: no enclosing deadline)
            ahead = visible(outer)
            if ahead is not None and when >= ahead.when:
                if ahead.owner is task:
                    return self  # the enclosing deadline comes first, and it cancels this task
                if ahead.owner is None:
                    when = ahead.when  # a sync scope's deadline: only this task can enforce it
        self._task = task
        self._cancelling = task.cancelling()
        # No task has used anyio (an empty map) is the common case on plain asyncio.
        states = _anyio_task_states
        self._host = None if states is None or not states.data else _anyio_scope_of(task)
        self._handle = None
        self.wheel_bucket = None
        if now is None:
            now = loop.time()
        # A deadline already past must fire before the task's next step, as
        # asyncio.timeout does: a timer would queue it behind that step.
        if when <= now:
            self._handle = loop.call_soon(self._expire)
        elif when != _INF:  # `deadline_at(math.inf)`: a scope that never expires
            loop_ref, wheel_ref = _last_wheel  # the last loop's wheel, looked up first
            wheel = wheel_ref() if loop_ref() is loop else None
            if wheel is None:
                wheel = _wheel_of(loop)
            bucket = wheel.arm(self, when)
            if bucket is not None:
                _arm_bucket(loop, wheel, bucket)
        self._node = node = Deadline(when, task, outer)
        self._token = DEADLINE.set(node)
        return self

    def _expire(self) -> None:
        task = self._task
        if _anyio_task_states is not None and _shielded(task, self._host):
            # Shielded code is never interrupted; look again shortly, and deliver the
            # expiry once the shield has exited (trio does the same natively).
            self._handle = task.get_loop().call_later(_SHIELD_POLL, self._expire)
            return
        self._handle = None
        self._expired = True
        task.cancel()

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
        DEADLINE.reset(token)
        self._token = None
        if self.wheel_bucket is not None:
            TimerWheel.disarm(self)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # uncancel() must run whenever this scope cancelled the task, hence the order.
        if (
            self._expired
            and self._task.uncancel() <= self._cancelling
            and exc_type is _CancelledError
        ):
            raise DeadlineExceeded(self._timeout) from exc


# --- one timer wheel per loop ---------------------------------------------------------------
# Only the loop's pending timers hold a wheel (an empty wheel is cheap to rebuild), so a
# closed loop is never kept alive through it. Keyed by id(loop): a wheel outlives its loop
# only while that loop's timers exist, and the loop with them, so an id is never reused
# while its wheel is alive.
_wheels: weakref.WeakValueDictionary[int, TimerWheel] = weakref.WeakValueDictionary()


def _no_ref() -> None:
    return None


# The last loop's wheel, looked up first (one loop per thread is the common case).
_last_wheel: tuple[Callable[[], object], Callable[[], TimerWheel | None]] = (_no_ref, _no_ref)


def _wheel_of(loop: asyncio.AbstractEventLoop) -> TimerWheel:
    global _last_wheel
    loop_ref, wheel_ref = _last_wheel
    if loop_ref() is loop:
        wheel = wheel_ref()
        if wheel is not None:
            return wheel
    wheel = _wheels.get(id(loop))
    if wheel is None:
        wheel = _wheels[id(loop)] = TimerWheel()
    _last_wheel = (weakref.ref(loop), weakref.ref(wheel))
    return wheel


def _arm_bucket(loop: asyncio.AbstractEventLoop, wheel: TimerWheel, bucket: Bucket) -> None:
    if bucket.handle is not None:
        bucket.handle.cancel()
    bucket.handle = loop.call_at(bucket.fire_at, _fire_bucket, loop, wheel, bucket)


def _fire_bucket(loop: asyncio.AbstractEventLoop, wheel: TimerWheel, bucket: Bucket) -> None:
    bucket.handle = None
    due, again = wheel.fire(bucket, loop.time())
    if again is not None:
        _arm_bucket(loop, wheel, again)
    for scope in due:
        scope._expire()


# --- anyio's shields --------------------------------------------------------------------------
# How often an expired deadline looks again whether the shield that holds it off has exited.
_SHIELD_POLL: Final = 0.001

_anyio_task_states: Any
try:  # anyio's record of each asyncio task's innermost cancel scope (to respect shields)
    from anyio._backends._asyncio import _task_states as _anyio_task_states
except ImportError:  # pragma: no cover - another anyio layout: shields are not seen
    _anyio_task_states = None


def _anyio_scope_of(task: asyncio.Task[Any]) -> Any:
    """Return the innermost anyio cancel scope `task` is in now, or None."""
    # An empty map (no task has used anyio) is the common case on plain asyncio, and a
    # weak-keyed lookup costs more than the rest of a deadline's entry.
    if _anyio_task_states is None or not _anyio_task_states.data:
        return None
    state = _anyio_task_states.get(task)
    return None if state is None else state.cancel_scope


def _shielded(task: asyncio.Task[Any], host: Any) -> bool:
    """Tell whether `task` is inside a shielded anyio scope entered within `host`."""
    scope = _anyio_scope_of(task)
    while scope is not None and scope is not host:
        if getattr(scope, "_shield", False):
            return True
        scope = getattr(scope, "_parent_scope", None)
    return False
