"""Supervisor: OTP strategies and restart types, intensity, cancellation, context (invariant 14).

Every async test runs on asyncio and trio, in virtual time.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resilient_async as ra
from resilient_async import backoff
from resilient_async.instrumentation import hooks

from ..helpers import BACKENDS, Recorder, asyncio_only, run_virtual
from ..supervision_model import Model

pytestmark = pytest.mark.anyio

_marker: ContextVar[str] = ContextVar("marker", default="unset")


class Children:
    """Scripted children: each run of a child takes the next outcome of its script.

    An outcome is an exception class or instance (raised), a float (sleep, then return), a
    tuple (seconds, exception) (sleep, then raise), "forever" (sleep until cancelled) or None
    (return at once); `then` once a script runs out. Records every start, end and
    cancellation, so tests can check that each child was awaited.
    """

    def __init__(self, then: Any = "forever", **scripts: list[Any]) -> None:
        self.then = then
        self.scripts = {name: list(script) for name, script in scripts.items()}
        self.starts: list[str] = []
        self.start_times: list[tuple[str, float]] = []
        self.ended: list[str] = []
        self.cancelled: list[str] = []
        self.running = 0

    async def __call__(self, name: str) -> None:
        self.starts.append(name)
        self.start_times.append((name, anyio.current_time()))
        self.running += 1
        script = self.scripts[name]
        outcome = script.pop(0) if script else self.then
        try:
            await anyio.lowlevel.checkpoint()
            if isinstance(outcome, tuple):
                await anyio.sleep(outcome[0])
                outcome = outcome[1]
            if outcome == "forever":
                await anyio.sleep_forever()
            if isinstance(outcome, float | int):
                await anyio.sleep(outcome)
            elif isinstance(outcome, BaseException) or (
                isinstance(outcome, type) and issubclass(outcome, BaseException)
            ):
                raise outcome
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(name)
            raise
        finally:
            self.running -= 1
            self.ended.append(name)

    def count(self, name: str) -> int:
        return self.starts.count(name)


async def _run_until_idle(
    sup_kwargs: dict[str, Any], children: Children, *specs: Any
) -> ra.Supervisor:
    """Start the children in order and cancel the supervisor once everything has settled."""
    with anyio.move_on_after(1000):
        async with ra.Supervisor(**sup_kwargs) as sup:
            for name, restart in specs:
                sup.start_soon(children, name, name=name, restart=restart)
    return sup


# --- strategies ------------------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_child_that_crashed() -> None:
    children = Children(a=["forever"], b=[(1.0, ConnectionError), "forever"], c=["forever"])
    sup = await _run_until_idle(
        {}, children, ("a", "permanent"), ("b", "permanent"), ("c", "permanent")
    )
    assert children.starts == ["a", "b", "c", "b"]
    assert [(c.name, c.restarts) for c in sup.children] == [("a", 0), ("b", 1), ("c", 0)]
    assert sup.children[1].restart_count == 1
    assert sup.children[1].restart == "permanent"


async def test_one_for_all_restarts_every_child_in_start_order() -> None:
    children = Children(
        a=["forever"] * 2, b=[(1.0, ConnectionError("b down")), "forever"], c=["forever"] * 2
    )
    await _run_until_idle(
        {"strategy": "one_for_all"},
        children,
        ("a", "permanent"),
        ("b", "permanent"),
        ("c", "permanent"),
    )
    assert children.starts == ["a", "b", "c", "a", "b", "c"]
    # Stopped last-started first.
    assert children.cancelled[:2] == ["c", "a"]


async def test_rest_for_one_restarts_the_children_started_after_it() -> None:
    children = Children(
        a=["forever"], b=[(1.0, ConnectionError), "forever"], c=["forever"] * 2, d=["forever"] * 2
    )
    sup = await _run_until_idle(
        {"strategy": "rest_for_one"},
        children,
        ("a", "permanent"),
        ("b", "permanent"),
        ("c", "transient"),
        ("d", "permanent"),
    )
    assert children.starts == ["a", "b", "c", "d", "b", "c", "d"]
    assert children.cancelled[:2] == ["d", "c"]
    assert [c.restarts for c in sup.children] == [0, 1, 1, 1]


async def test_children_start_in_the_order_they_were_started() -> None:
    # trio runs a batch of new tasks in a random order: the supervisor must not.
    names = [f"w{i}" for i in range(12)]
    for _ in range(5):
        children = Children(**{name: [None] for name in names})
        await _run_until_idle({}, children, *[(name, "transient") for name in names])
        assert children.starts == names


async def test_temporary_siblings_are_stopped_and_not_restarted() -> None:
    children = Children(a=[(1.0, ConnectionError), "forever"], t=["forever"], b=["forever"] * 2)
    sup = await _run_until_idle(
        {"strategy": "one_for_all"},
        children,
        ("a", "permanent"),
        ("t", "temporary"),
        ("b", "permanent"),
    )
    assert children.starts == ["a", "t", "b", "a", "b"]
    assert [str(c.state) for c in sup.children][1] == "cancelled"


# --- restart types ---------------------------------------------------------------------------


async def test_restart_types(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    children = Children(
        perm=[None, None, "forever"],
        trans_ok=[None],
        trans_bad=[ConnectionError, None],
        temp=[(1.0, ValueError("temporary trouble"))],
    )
    with hooks(recorder), caplog.at_level(logging.ERROR, logger="resilient_async"):
        with anyio.move_on_after(5):  # the permanent child would keep the block open
            async with ra.Supervisor() as sup:
                sup.start_soon(children, "trans_ok", name="trans_ok", restart="transient")
                sup.start_soon(children, "trans_bad", name="trans_bad", restart="transient")
                sup.start_soon(children, "temp", name="temp", restart="temporary")
                sup.start_soon(children, "perm", name="perm")
    assert children.count("perm") == 3  # a permanent child that returns comes back
    assert children.count("trans_ok") == 1
    assert children.count("trans_bad") == 2
    assert children.count("temp") == 1
    states = {c.name: str(c.state) for c in sup.children}
    assert states == {
        "trans_ok": "done",
        "trans_bad": "done",
        "temp": "failed",
        "perm": "cancelled",
    }
    assert sup.children[3].restarts == 2
    crashed = recorder.of("supervisor.child_crashed")
    assert [(e.child, e.restarting) for e in crashed] == [("trans_bad", True), ("temp", False)]
    # Returns are not crashes: the permanent child's two comebacks counted nothing.
    restarted = recorder.of("supervisor.restarted")
    assert sorted((e.child, e.restarts) for e in restarted) == [
        ("perm", 0),
        ("perm", 0),
        ("trans_bad", 1),
    ]
    messages = [r.getMessage() for r in caplog.records if r.name == "resilient_async"]
    assert len(messages) == 2  # each crash logged once, the temporary one included
    assert "'temp'" in messages[1]
    assert "temporary trouble" in caplog.text


# --- restart intensity -----------------------------------------------------------------------


async def test_more_than_max_restarts_within_the_period_gives_up() -> None:
    recorder = Recorder()
    errors = [ConnectionError(f"crash {i}") for i in range(4)]
    children = Children(w=[*errors], other=["forever"])
    with hooks(recorder), pytest.raises(ra.SupervisorGaveUp) as caught:
        async with ra.Supervisor(max_restarts=3, within=10.0, name="pool") as sup:
            sup.start_soon(children, "w", name="w")
            sup.start_soon(children, "other", name="other")
    gave_up = caught.value
    assert type(gave_up) is ra.SupervisorGaveUp  # unwrapped
    assert isinstance(gave_up, ra.ResilienceError)
    assert isinstance(gave_up, ExceptionGroup)
    assert list(gave_up.exceptions) == errors
    # Every child was cancelled and awaited before the error left the block.
    assert children.running == 0
    assert children.cancelled == ["other"]
    assert all(str(c.state) == "cancelled" for c in sup.children)
    assert recorder.kinds()[-1] == "supervisor.gave_up"
    assert recorder.of("supervisor.gave_up")[0].policy == "pool"
    assert len(recorder.of("supervisor.restarted")) == 3


async def test_a_success_in_between_does_not_reset_the_count() -> None:
    # crash, crash, a run that succeeds (returns, and is restarted), crash, crash: the fourth
    # crash within the period is one more than max_restarts=3.
    errors = [ConnectionError(i) for i in range(4)]
    children = Children(w=[errors[0], errors[1], 0.5, errors[2], errors[3], "forever"])
    with pytest.raises(ra.SupervisorGaveUp) as caught:
        async with ra.Supervisor(max_restarts=3, within=60.0) as sup:
            sup.start_soon(children, "w", name="w")
    assert list(caught.value.exceptions) == errors
    assert children.count("w") == 5


async def test_a_long_run_between_transient_crashes_does_not_reset_either() -> None:
    # A transient child that ran well for 30 s still carries its earlier crashes.
    errors = [ConnectionError(i) for i in range(3)]
    children = Children(w=[errors[0], 30.0, errors[1]], v=[errors[2]])
    with pytest.raises(ra.SupervisorGaveUp):
        async with ra.Supervisor(max_restarts=2, within=60.0) as sup:
            sup.start_soon(children, "w", name="w")
            await anyio.sleep(40)
            sup.start_soon(children, "v", name="v", restart="transient")


async def test_crashes_spread_wider_than_the_period_never_give_up() -> None:
    children = Children(w=[(6.0, ConnectionError)] * 10 + [None])
    async with ra.Supervisor(max_restarts=1, within=5.0) as sup:
        sup.start_soon(children, "w", name="w", restart="transient")
    assert children.count("w") == 11
    assert sup.children[0].restarts == 10


async def test_max_restarts_zero_gives_up_on_the_first_crash() -> None:
    error = ConnectionError("once")
    with pytest.raises(ra.SupervisorGaveUp) as caught:
        async with ra.Supervisor(max_restarts=0, within=timedelta(seconds=1)) as sup:
            sup.start_soon(Children(w=[error]), "w", name="w")
    assert caught.value.exceptions == (error,)


async def test_backoff_waits_before_each_restart() -> None:
    children = Children(w=[ConnectionError, ConnectionError, ConnectionError, None])
    recorder = Recorder()
    started = anyio.current_time()
    with hooks(recorder):
        async with ra.Supervisor(
            max_restarts=5, within=100.0, backoff=backoff.exponential(1.0, jitter="none")
        ) as sup:
            sup.start_soon(children, "w", name="w", restart="transient")
    times = [round(t - started, 6) for _, t in children.start_times]
    assert times == [0.0, 1.0, 3.0, 7.0]
    assert [e.delay for e in recorder.of("supervisor.restarted")] == [1.0, 2.0, 4.0]


# --- cancellation ----------------------------------------------------------------------------


async def test_cancel_sweep_awaits_every_child_and_starts_no_restart() -> None:
    """Cancel the supervisor after k checkpoints, for every k until it completes first."""
    for strategy in ("one_for_one", "one_for_all", "rest_for_one"):
        k = 0
        while True:
            children = Children(
                then=None,
                a=[ConnectionError, ConnectionError, None],
                b=[None, ConnectionError, None],
                c=[ConnectionError, None],
            )
            recorder = Recorder()
            scope = anyio.CancelScope()
            completed = False
            at_cancel: tuple[int, int] | None = None
            holder: list[ra.Supervisor] = []

            async def supervised() -> None:
                nonlocal completed
                with scope, hooks(recorder):
                    async with ra.Supervisor(strategy=strategy, max_restarts=20) as sup:
                        holder.append(sup)
                        for name in "abc":
                            sup.start_soon(children, name, name=name, restart="transient")
                    completed = True

            async with anyio.create_task_group() as tg:
                tg.start_soon(supervised)
                for _ in range(k):
                    await anyio.lowlevel.checkpoint()
                at_cancel = (len(children.starts), len(recorder.of("supervisor.child_started")))
                scope.cancel()
            assert children.running == 0, f"{strategy} k={k}: a child was left running"
            assert len(children.ended) == len(children.starts)
            if completed:
                break
            assert scope.cancelled_caught, f"{strategy} k={k}: the cancellation was swallowed"
            assert at_cancel is not None
            assert len(children.starts) == at_cancel[0], f"{strategy} k={k}: restarted after cancel"
            started_events = len(recorder.of("supervisor.child_started"))
            assert started_events == at_cancel[1]
            assert all(str(c.state) in {"done", "cancelled"} for c in holder[0].children)
            k += 1
            assert k < 200
        assert k > 5


async def test_cancel_at_any_time_with_backoff() -> None:
    """The same, in virtual time: cancel at each tenth of a second through a run with waits."""
    for tenths in range(80):
        children = Children(
            a=[0.25, ConnectionError, 0.5, ConnectionError, 0.3], b=[2.0, ConnectionError, None]
        )
        with anyio.move_on_after(tenths / 10) as scope:
            async with ra.Supervisor(
                strategy="one_for_all", max_restarts=10, backoff=backoff.constant(0.5)
            ) as sup:
                sup.start_soon(children, "a", name="a", restart="transient")
                sup.start_soon(children, "b", name="b", restart="transient")
        assert children.running == 0, f"t={tenths / 10}"
        assert len(children.ended) == len(children.starts)
        assert all(str(c.state) in {"done", "cancelled"} for c in sup.children)
        if not scope.cancelled_caught:
            return
    raise AssertionError("the run never completed within the sweep")


async def test_an_error_in_the_block_cancels_the_children_and_propagates_as_itself() -> None:
    children = Children(a=["forever"], b=["forever"])
    with pytest.raises(KeyError) as caught:
        async with ra.Supervisor() as sup:
            sup.start_soon(children, "a", name="a")
            sup.start_soon(children, "b", name="b")
            await anyio.sleep(1)
            raise KeyError("in the block")
    assert type(caught.value) is KeyError
    assert sorted(children.cancelled) == ["a", "b"]
    assert children.running == 0


@asyncio_only
async def test_a_childs_own_cancellation_is_not_a_crash() -> None:
    recorder = Recorder()
    ran = []

    async def cancels_itself() -> None:
        ran.append(1)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    with hooks(recorder):
        async with ra.Supervisor(max_restarts=0) as sup:
            sup.start_soon(cancels_itself, name="quitter")
            sup.start_soon(anyio.sleep, 2.0, name="sibling", restart="transient")
    assert ran == [1]  # not restarted
    assert [str(c.state) for c in sup.children] == ["cancelled", "done"]
    assert recorder.of("supervisor.child_crashed") == []


async def test_start_soon_needs_a_running_supervisor() -> None:
    sup = ra.Supervisor()
    with pytest.raises(RuntimeError, match="async with"):
        sup.start_soon(anyio.sleep, 1)
    async with sup:
        pass
    with pytest.raises(RuntimeError, match="async with"):
        sup.start_soon(anyio.sleep, 1)
    with pytest.raises(RuntimeError, match="once"):
        async with sup:
            pass


# --- context, events, reporting --------------------------------------------------------------


async def test_each_child_runs_in_a_fresh_copy_of_the_supervisors_context() -> None:
    seen: list[tuple[str, dict[str, object]]] = []
    crashes: list[BaseException] = []

    async def child() -> None:
        seen.append((_marker.get(), dict(ra.current_context())))
        _marker.set("changed by the child")
        if len(seen) < 3:
            raise ConnectionError("again")

    token = _marker.set("supervisor")
    try:
        with ra.error_context(request="r-1"):
            async with ra.Supervisor(on_error=lambda exc, ctx: crashes.append(exc)) as sup:
                _marker.set("set in the block, after entering")
                sup.start_soon(child, name="worker", restart="transient")
        assert _marker.get() == "set in the block, after entering"
    finally:
        _marker.reset(token)
    assert seen == [("supervisor", {"request": "r-1", "child": "worker"})] * 3
    assert [ra.context_of(exc) for exc in crashes] == [{"request": "r-1", "child": "worker"}] * 2


async def test_on_error_receives_the_crash_and_a_failing_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[dict[str, Any]] = []

    def on_error(exc: BaseException, context: dict[str, Any]) -> None:
        received.append(context)
        raise RuntimeError("the reporter is down")

    error = ConnectionResetError("peer reset")
    with caplog.at_level(logging.ERROR, logger="resilient_async"):
        async with ra.Supervisor(name="pool", on_error=on_error) as sup:
            sup.start_soon(Children(w=[error, None]), "w", name="w", restart="transient")
    assert len(received) == 1
    context = received[0]
    assert context["exception"] is error
    assert context["child"] == "w"
    assert context["supervisor"] == "pool"
    assert context["error_class"] is ra.ErrorClass.TRANSIENT
    assert context["error_context"] == {"child": "w"}
    crash_records = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crash_records) == 1  # logged once
    assert crash_records[0].exc_info is not None
    assert crash_records[0].exc_info[1] is error
    assert "child='w'" in crash_records[0].getMessage()
    failures = [r for r in caplog.records if "on_error" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert str(failures[0].exc_info[1]) == "the reporter is down"


async def test_a_child_raising_the_same_instance_twice_is_reported_twice() -> None:
    shared = ConnectionError("module-level instance")
    reported: list[BaseException] = []
    async with ra.Supervisor(on_error=lambda exc, ctx: reported.append(exc)) as sup:
        sup.start_soon(Children(w=[shared, shared, None]), "w", name="w", restart="transient")
    assert reported == [shared, shared]


async def test_events_name_the_child_and_carry_its_context() -> None:
    recorder = Recorder()
    with hooks(recorder):
        async with ra.Supervisor(name="sup") as sup:
            sup.start_soon(Children(w=[ConnectionError, None]), "w", name="w", restart="transient")
    kinds = recorder.kinds()
    assert kinds == [
        "supervisor.child_started",
        "supervisor.child_crashed",
        "supervisor.restarted",
        "supervisor.child_started",
    ]
    started, crashed, restarted, again = recorder.events
    assert (started.child, started.restarts, again.restarts) == ("w", 0, 1)
    assert crashed.context == {"child": "w"}
    assert isinstance(crashed.exception, ConnectionError)
    assert restarted.children == ("w",)
    assert restarted.exception is crashed.exception
    assert all(e.policy == "sup" for e in recorder.events)


async def test_default_names_are_unique_and_explicit_duplicates_are_refused() -> None:
    async with ra.Supervisor() as sup:
        sup.start_soon(anyio.sleep, 0, restart="temporary")
        sup.start_soon(anyio.sleep, 0, restart="temporary")
        sup.start_soon(anyio.sleep, 0, name="x", restart="temporary")
        with pytest.raises(ValueError, match="name must be unique"):
            sup.start_soon(anyio.sleep, 0, name="x")
    assert [c.name for c in sup.children] == ["sleep", "sleep-2", "x"]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strategy": "one_for_some"}, ValueError, "strategy must be one of 'one_for_one'"),
        ({"max_restarts": -1}, ValueError, "max_restarts must be >= 0"),
        ({"max_restarts": 1.5}, TypeError, "max_restarts"),
        ({"within": 0}, ValueError, "within must be a finite number > 0"),
        ({"within": -2.0}, ValueError, "within"),
        ({"backoff": "fast"}, TypeError, "backoff must be"),
        ({"backoff": -1.0}, ValueError, "delay"),
        ({"on_error": 3}, TypeError, "on_error must be"),
        ({"logger": "log"}, TypeError, "logger must be"),
    ],
)
def test_bad_configuration_names_the_argument(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ra.Supervisor(**kwargs)


async def test_bad_children_name_the_argument() -> None:
    def sync_worker() -> None:
        pass

    async with ra.Supervisor() as sup:
        with pytest.raises(ValueError, match="restart must be one of 'permanent'"):
            sup.start_soon(anyio.sleep, 1, restart="sometimes")
        with pytest.raises(TypeError, match="fn must be an async function"):
            sup.start_soon(sync_worker)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="name must be a string"):
            sup.start_soon(anyio.sleep, 1, name=3)  # type: ignore[arg-type]
    assert sup.children == ()


# --- the model, through the real driver ------------------------------------------------------

_OPS = st.lists(
    st.tuples(st.integers(0, 4), st.booleans(), st.sampled_from([0.5, 1.0, 4.0])),
    max_size=14,
)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
    restarts=st.lists(
        st.sampled_from(["permanent", "transient", "temporary"]), min_size=1, max_size=5
    ),
    max_restarts=st.integers(0, 4),
    ops=_OPS,
)
def test_the_driver_follows_the_model(
    backend: str,
    strategy: str,
    restarts: list[str],
    max_restarts: int,
    ops: list[tuple[int, bool, float]],
) -> None:
    """Exit children one at a time and check who restarted, in which order, against the model."""
    run_virtual(backend, lambda: _drive(strategy, restarts, max_restarts, ops))


async def _drive(
    strategy: str, restarts: list[str], max_restarts: int, ops: list[tuple[int, bool, float]]
) -> None:
    model = Model(strategy, max_restarts, 5.0)
    pokes: dict[int, anyio.Event] = {}
    crash: dict[int, bool] = {}
    starts: list[int] = []
    errors: list[Exception] = []

    async def child(index: int) -> None:
        starts.append(index)
        pokes[index] = event = anyio.Event()
        await event.wait()
        if crash[index]:
            error = ConnectionError(index)
            errors.append(error)
            raise error

    gave_up: ra.SupervisorGaveUp | None = None
    try:
        with anyio.CancelScope() as scope:
            async with ra.Supervisor(
                strategy=strategy, max_restarts=max_restarts, within=5.0
            ) as sup:
                for index, restart in enumerate(restarts):
                    model.add(restart)
                    sup.start_soon(child, index, name=f"c{index}", restart=restart)
                await anyio.sleep(0.01)
                assert starts == list(range(len(restarts)))
                for target, crashed, gap in ops:
                    running = [i for i, c in enumerate(model.children) if c.state == "running"]
                    if not running:
                        break
                    index = running[target % len(running)]
                    before = len(starts)
                    crash[index] = crashed
                    now = anyio.current_time()
                    pokes[index].set()
                    model.exit(index, crashed, now)
                    expected = model.settle() if not model.gave_up else []
                    await anyio.sleep(gap)  # everything settles before the clock moves
                    if model.gave_up:
                        raise AssertionError("the supervisor should have given up")
                    assert starts[before:] == expected
                    info = sup.children
                    assert [c.restarts for c in info] == [c.restarts for c in model.children]
                    assert [str(c.state) == "running" for c in info] == [
                        c.state == "running" for c in model.children
                    ]
                scope.cancel()
    except ra.SupervisorGaveUp as exc:
        gave_up = exc
    assert (gave_up is not None) == model.gave_up
    if gave_up is not None:
        assert len(gave_up.exceptions) == max_restarts + 1
        assert all(e in errors for e in gave_up.exceptions)


@asyncio_only
async def test_a_native_cancel_of_the_host_task_awaits_every_child() -> None:
    children = Children(a=[ConnectionError, "forever"], b=["forever"])
    entered = anyio.Event()

    async def host() -> None:
        async with ra.Supervisor() as sup:
            sup.start_soon(children, "a", name="a")
            sup.start_soon(children, "b", name="b")
            entered.set()

    task = asyncio.get_running_loop().create_task(host())
    await entered.wait()
    await anyio.sleep(1)
    starts = len(children.starts)
    task.cancel()
    task.cancel()  # a double cancel changes nothing
    with pytest.raises(asyncio.CancelledError):
        await task
    assert children.running == 0
    assert len(children.starts) == starts == 3
    assert sorted(children.cancelled) == ["a", "b"]


async def test_a_supervisor_that_gives_up_crashes_its_parent_which_restarts_it() -> None:
    """Supervision trees: the inner supervisor escalates, the outer one restarts the subtree."""
    recorder = Recorder()
    subtree_runs = 0

    async def subtree() -> None:
        nonlocal subtree_runs
        subtree_runs += 1
        failing = Children(then=None, w=[ConnectionError] * (2 if subtree_runs == 1 else 1))
        async with ra.Supervisor(max_restarts=1, within=10.0, name="inner") as inner:
            inner.start_soon(failing, "w", name="w", restart="transient")

    with hooks(recorder):
        async with ra.Supervisor(max_restarts=3, name="outer") as outer:
            outer.start_soon(subtree, name="subtree", restart="transient")
    assert subtree_runs == 2
    [crash] = [e for e in recorder.of("supervisor.child_crashed") if e.policy == "outer"]
    assert isinstance(crash.exception, ra.SupervisorGaveUp)
    assert ra.context_of(crash.exception) == {"child": "subtree"}
    assert [(c.name, str(c.state), c.restarts) for c in outer.children] == [("subtree", "done", 1)]
