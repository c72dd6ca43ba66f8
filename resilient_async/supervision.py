"""Supervised task groups: children restarted after they crash, Erlang/OTP style.

Async only. A `Supervisor` is an anyio task group whose children are restarted by a strategy
(`one_for_one`, `one_for_all`, `rest_for_one`) according to their restart type
(`permanent`, `transient`, `temporary`), until too many crash too quickly: then every child is
cancelled and `SupervisorGaveUp` is raised. The bookkeeping (restart intensity, which
siblings restart) is the pure state machine of `_core.supervision`; this module runs the tasks.

Each crash is reported the way the loop exception handler reports an unhandled error
(classified, logged once with its error context, passed to `on_error`), so trio programs,
which have no loop handler, get the same reporting from their supervisors.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import math
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.abc
import anyio.lowlevel

from ._async import _backend
from ._core.checks import check_int, check_name, check_positive
from ._core.supervision import (
    ChildInfo,
    ChildState,
    GiveUp,
    Restart,
    RestartType,
    Strategy,
    SupervisorCore,
)
from ._reporting import OnError, Reporter
from .backoff import Backoff, constant
from .context import attach_context, error_context
from .errors import SupervisorGaveUp
from .instrumentation import emit

__all__ = ["ChildInfo", "ChildState", "Supervisor"]

_STRATEGIES: Final = ", ".join(repr(s.value) for s in Strategy)
_RESTART_TYPES: Final = ", ".join(repr(r.value) for r in RestartType)
_RNG: Final = random.Random()


class Supervisor:
    """Run children in a task group and restart them when they crash (Erlang/OTP semantics).

    Children start in the order `start_soon` is called. When a child exits, its restart type
    decides whether it restarts: `"permanent"` always (even after returning), `"transient"`
    only after raising an error, `"temporary"` never (its error is reported and goes no
    further). The strategy decides which siblings restart with it: `"one_for_one"` none,
    `"one_for_all"` every other child, `"rest_for_one"` those started after it. Those
    siblings are cancelled (the last started first) and awaited, then all restart in start
    order; a temporary sibling stopped this way is not restarted.

    Restart intensity: more than `max_restarts` crashes within `within` seconds cancels and
    awaits every child, then raises `SupervisorGaveUp` (not wrapped in a group) with those
    crashes as `.exceptions`. One restart is one crash handled, however many children it
    restarts; only time makes a crash leave the window, never a child's success. A
    permanent child that returns is restarted without counting as a crash.

    The `async with` block ends when every child has ended for good (a supervisor of
    permanent children runs until cancelled). Cancelling it cancels and awaits every child
    and starts no restart; an error in the block does the same, then propagates. A child's
    cancellation is not a crash: a child whose own task is cancelled ends for good.

    Each child runs in a copy of the context the supervisor was entered in (deadlines, hooks,
    error context), inside `error_context(child=name)`; each restart starts from a fresh
    copy. Every crash is reported like an unhandled error: event `supervisor.child_crashed`,
    one log record with its error context, `on_error(exc, context)`. Other events:
    `supervisor.child_started` (fields `child`, `restarts`), `supervisor.restarted` (`child`,
    `children`, `exception`, `restarts`, `delay`) and `supervisor.gave_up` (`exceptions`).

    Args:
        strategy: `"one_for_one"`, `"one_for_all"` or `"rest_for_one"`.
        max_restarts: Crashes tolerated within `within` seconds, >= 0.
        within: The intensity window in seconds (or a `timedelta`), > 0.
        backoff: Wait before restarting: a schedule from `resilient_async.backoff`, indexed
            by the number of crashes in the window, or a number of seconds; None restarts at
            once.
        name: A name for events, logs and the error.
        on_error: Called as `on_error(exc, context)` for each crash (sync); `context` has
            `message`, `exception`, `child`, `supervisor`, `error_class` and `error_context`.
        logger: Where crashes are logged; the `resilient_async` logger when omitted.

    Raises:
        ValueError: An unknown `strategy`, `max_restarts` < 0, `within` <= 0, a negative
            backoff.
        TypeError: A parameter has the wrong type.

    Example:
        ```python
        async with ra.Supervisor(strategy="one_for_one", max_restarts=5, within=60) as sup:
            for i in range(4):
                sup.start_soon(worker, queue, name=f"worker-{i}")
        ```
    """

    __slots__ = (
        "_backoff",
        "_context",
        "_core",
        "_delay_due",
        "_entered",
        "_gave_up",
        "_last_gate",
        "_manager_running",
        "_name",
        "_previous_delay",
        "_reporter",
        "_runs",
        "_tg",
    )

    def __init__(
        self,
        *,
        strategy: str = "one_for_one",
        max_restarts: int = 3,
        within: float | timedelta = 5.0,
        backoff: Backoff | float | None = None,
        name: str | None = None,
        on_error: OnError | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        try:
            chosen = Strategy(strategy)
        except ValueError:
            raise ValueError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}") from None
        max_restarts = check_int(max_restarts, "max_restarts", 0)
        if isinstance(within, timedelta):
            within = within.total_seconds()
        within = check_positive(within, "within")
        if backoff is not None and not isinstance(backoff, Backoff):
            if isinstance(backoff, bool) or not isinstance(backoff, int | float):
                raise TypeError(
                    "backoff must be a schedule from resilient_async.backoff, a number of "
                    f"seconds, or None, got {backoff!r}"
                )
            backoff = constant(backoff)
        self._core = SupervisorCore(chosen, max_restarts, within)
        self._backoff = backoff
        self._reporter = Reporter(on_error, logger)
        self._name = check_name(name)
        self._tg: anyio.abc.TaskGroup | None = None
        self._entered = False
        self._context: contextvars.Context | None = None
        self._runs: list[_Run] = []
        self._manager_running = False
        self._delay_due = 0.0
        self._previous_delay = 0.0
        self._gave_up: SupervisorGaveUp | None = None
        self._last_gate: anyio.Event | None = None

    @property
    def name(self) -> str | None:
        """The name used in events, logs and the error context, or None."""
        return self._name

    def __repr__(self) -> str:
        core = self._core
        return (
            f"Supervisor(strategy={core.strategy.value!r}, max_restarts={core.max_restarts}, "
            f"within={core.within}, name={self.name!r})"
        )

    @property
    def children(self) -> tuple[ChildInfo, ...]:
        """A snapshot of every child started so far, in start order (name, state, restarts)."""
        return self._core.info()

    def start_soon(
        self,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        name: str | None = None,
        restart: str = "permanent",
    ) -> None:
        """Start `fn(*args)` as a child now, after the children already started.

        Args:
            fn: An async function.
            *args: Its positional arguments (the same ones at every restart).
            name: A unique name for the child; `fn`'s qualified name when omitted (with a
                number appended when taken).
            restart: `"permanent"`, `"transient"` or `"temporary"`.

        Raises:
            ValueError: An unknown `restart`, or a `name` already in use.
            TypeError: `fn` is not an async callable, or `name` is not a string.
            RuntimeError: The supervisor is not running (not entered, ended, or gave up).
        """
        try:
            restart_type = RestartType(restart)
        except ValueError:
            raise ValueError(f"restart must be one of {_RESTART_TYPES}, got {restart!r}") from None
        _check_async_callable(fn)
        tg = self._tg
        if tg is None or self._core.gave_up:
            raise RuntimeError("start_soon needs a running supervisor: use it inside `async with`")
        child_name = self._child_name(fn, name)
        index = self._core.add(child_name, restart_type)
        self._runs.append(_Run(child_name, fn, args))
        self._spawn(index)

    async def __aenter__(self) -> Supervisor:
        if self._entered:
            raise RuntimeError("a Supervisor can be entered only once")
        self._entered = True
        self._context = contextvars.copy_context()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        tg = self._tg
        assert tg is not None
        try:
            suppressed = await tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # Children never raise into the group, so an error of the block comes back
            # wrapped alone: let it propagate as it was raised.
            if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                return False
            raise
        finally:
            self._tg = None
            self._core.cancel_all()
        if self._gave_up is not None:
            raise self._gave_up from None
        return bool(suppressed)

    def _child_name(self, fn: Callable[..., Awaitable[Any]], name: str | None) -> str:
        taken = self._core.names()
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a string or None, got {name!r}")
            if name in taken:
                raise ValueError(f"name must be unique among the children, {name!r} is taken")
            return name
        base = str(getattr(fn, "__qualname__", None) or type(fn).__name__)
        candidate, number = base, 1
        while candidate in taken:
            number += 1
            candidate = f"{base}-{number}"
        return candidate

    def _spawn(self, index: int) -> None:
        """Start a task for child `index`, in a fresh copy of the supervisor's context."""
        run = self._runs[index]
        run.scope = anyio.CancelScope()
        run.exited = anyio.Event()
        # Tasks of one batch may first run in any order (trio shuffles them): each child
        # waits until the one spawned before it has started, so children start in order.
        gate, started = self._last_gate, anyio.Event()
        self._last_gate = started
        tg = self._tg
        assert self._context is not None
        assert tg is not None
        self._context.run(
            lambda: tg.start_soon(self._run_child, index, run, gate, started, name=run.name)
        )

    async def _run_child(
        self, index: int, run: _Run, gate: anyio.Event | None, started: anyio.Event
    ) -> None:
        error: Exception | None = None
        try:
            with run.fields:
                with run.scope:
                    if gate is not None and not gate.is_set():
                        await gate.wait()
                    started.set()
                    # Stopped, or the supervisor cancelled, before it began: never call fn.
                    await anyio.lowlevel.checkpoint_if_cancelled()
                    emit(
                        "supervisor.child_started",
                        self.name,
                        child=run.name,
                        restarts=self._core.child(index).restarts,
                    )
                    try:
                        await run.fn(*run.args)
                    except Exception as exc:
                        attach_context(exc, {})  # caught inside the block: capture it now
                        error = exc
                self._exited(index, error)  # returned, crashed, or stopped by its scope
        except anyio.get_cancelled_exc_class():
            self._core.cancelled(index)
            if anyio.current_effective_deadline() == -math.inf:
                raise  # the supervisor itself is cancelled: the task group awaits this
            # Only this child's task was cancelled (asyncio's Task.cancel): it ends for good,
            # and the task ends with it rather than cancel the whole group on the way out.
        finally:
            started.set()
            run.exited.set()

    def _exited(self, index: int, error: Exception | None) -> None:
        core = self._core
        was_stopping = core.state(index) is ChildState.STOPPING
        decision = core.exited(index, _backend.current_time(), error)
        run = self._runs[index]
        if error is not None:
            restarting = isinstance(decision, Restart) or (
                was_stopping and core.state(index) is ChildState.RESTARTING
            )
            emit(
                "supervisor.child_crashed",
                self.name,
                child=run.name,
                exception=error,
                restart=self._core.child(index).restart.value,
                restarting=restarting,
            )
            self._reporter.report_once(
                error,
                {
                    "message": f"supervised child {run.name!r} crashed",
                    "child": run.name,
                    "supervisor": self.name,
                },
                again=True,
            )
        if isinstance(decision, GiveUp):
            self._give_up(decision)
        elif isinstance(decision, Restart):
            self._schedule(decision, error)

    def _schedule(self, decision: Restart, error: Exception | None) -> None:
        delay = 0.0
        if self._backoff is not None:
            attempt = max(1, decision.crashes)
            delay = self._backoff.delay(attempt, self._previous_delay, _RNG)
            self._previous_delay = delay
        self._delay_due = max(self._delay_due, delay)
        emit(
            "supervisor.restarted",
            self.name,
            child=self._runs[decision.child].name,
            children=tuple(self._runs[i].name for i in decision.children),
            exception=error,
            restarts=decision.crashes,
            delay=delay,
        )
        if self._manager_running:
            return  # it picks this restart up in its next round
        if delay == 0 and self._core.next_to_stop() is None:
            # Nothing to stop and nothing to wait for: restart here, without a manager task.
            # A child started in a cancelled supervisor never calls its function.
            for index in self._core.take_starts():
                self._spawn(index)
            return
        self._manager_running = True
        tg = self._tg
        assert self._context is not None
        assert tg is not None
        self._context.run(lambda: tg.start_soon(self._manage, name="supervisor restarts"))

    async def _manage(self) -> None:
        """Carry out pending restarts: stop the affected siblings, wait, start in order."""
        core = self._core
        try:
            while True:
                while (index := core.next_to_stop()) is not None:
                    run = self._runs[index]
                    run.scope.cancel()
                    await run.exited.wait()
                if not core.has_pending_starts():
                    return
                delay, self._delay_due = self._delay_due, 0.0
                if delay > 0:
                    await _backend.sleep(delay)
                    continue  # more may have crashed meanwhile: stop those first
                # A cancelled supervisor starts nothing (its task group cancels this task).
                await anyio.lowlevel.checkpoint_if_cancelled()
                for index in core.take_starts():
                    self._spawn(index)
        finally:
            self._manager_running = False

    def _give_up(self, decision: GiveUp) -> None:
        core = self._core
        crashes = decision.crashes
        message = (
            f"supervisor {self.name or '<unnamed>'} gave up: {len(crashes)} crashes within "
            f"{core.within:g}s (max_restarts={core.max_restarts})"
        )
        self._gave_up = SupervisorGaveUp(message, crashes)
        emit("supervisor.gave_up", self.name, exceptions=crashes, restarts=len(crashes))
        self._reporter.log.error("%s", message, extra={"supervisor": self.name})
        assert self._tg is not None
        self._tg.cancel_scope.cancel()


class _Run:
    """What it takes to (re)start one child, and the handles of its current task."""

    __slots__ = ("args", "exited", "fields", "fn", "name", "scope")

    def __init__(self, name: str, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]):
        self.name = name
        self.fn = fn
        self.args = args
        self.fields = error_context(child=name)
        self.scope = anyio.CancelScope()
        self.exited = anyio.Event()


def _check_async_callable(fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"fn must be an async function, got {fn!r}")
    if inspect.isfunction(fn) and not inspect.iscoroutinefunction(fn):
        raise TypeError(f"fn must be an async function, got the sync function {fn.__qualname__}")
