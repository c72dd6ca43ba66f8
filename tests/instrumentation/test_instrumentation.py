"""Events and hooks: scoping, failing hooks, LoggingHook records."""

from __future__ import annotations

import logging

import anyio
import pytest

from resilient_async.context import error_context
from resilient_async.instrumentation import (
    Event,
    LoggingHook,
    emit,
    enabled,
    get_hooks,
    hooks,
    set_hooks,
)

from ..helpers import Recorder


@pytest.fixture(autouse=True)
def _no_global_hooks() -> None:
    set_hooks([])


def test_emit_without_hooks_is_a_no_op() -> None:
    assert not enabled()
    emit("retry.scheduled", "x", attempt=1)


def test_events_are_frozen_and_carry_fields_and_context() -> None:
    recorder = Recorder()
    with hooks(recorder), error_context(request="r1"):
        assert enabled()
        emit("retry.scheduled", "db", attempt=2, delay=0.5)
    (event,) = recorder.events
    assert event.kind == "retry.scheduled"
    assert event.policy == "db"
    assert event.attempt == 2
    assert event.delay == 0.5
    assert event.context == {"request": "r1"}
    with pytest.raises(AttributeError, match="immutable"):
        event.kind = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="no field 'missing'"):
        _ = event.missing
    assert event == Event("retry.scheduled", "db", {"request": "r1"}, {"attempt": 2, "delay": 0.5})
    assert "attempt=2" in repr(event)


def test_scoped_hooks_add_to_global_ones_and_are_removed() -> None:
    first, second = Recorder(), Recorder()
    set_hooks([first])
    with hooks(second):
        assert get_hooks() == (first, second)
        emit("a.b", None)
    emit("c.d", None)
    assert first.kinds() == ["a.b", "c.d"]
    assert second.kinds() == ["a.b"]


def test_a_failing_hook_is_logged_and_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("hook bug")

    recorder = Recorder()
    with caplog.at_level(logging.ERROR, "resilient_async"), hooks(broken, recorder):
        emit("breaker.rejected", "b")
    assert recorder.kinds() == ["breaker.rejected"]
    assert "hook bug" in caplog.text


def test_hooks_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callables"):
        set_hooks([42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="callables"), hooks(42):  # type: ignore[arg-type]
        pass


def test_logging_hook_records_kind_and_policy(caplog: pytest.LogCaptureFixture) -> None:
    hook = LoggingHook(logging.getLogger("test.ra"))
    with caplog.at_level(logging.INFO, "test.ra"), hooks(hook):
        emit("retry.scheduled", "db", attempt=1, delay=0.2)
        emit("retry.gave_up", "db", attempt=3, exception=ValueError("x"))
    first, second = caplog.records
    assert first.levelno == logging.INFO
    assert (first.kind, first.policy) == ("retry.scheduled", "db")  # type: ignore[attr-defined]
    assert "retry.scheduled" in first.getMessage()
    assert "db" in first.getMessage()
    assert second.levelno == logging.WARNING
    assert second.exc_info is not None


@pytest.mark.anyio
async def test_scoped_hooks_reach_child_tasks_and_do_not_leak() -> None:
    recorder = Recorder()

    async def child() -> None:
        emit("child.event", None)

    with hooks(recorder):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
    emit("after", None)
    assert recorder.kinds() == ["child.event"]


def test_before_any_hook_emitting_reads_no_context(monkeypatch: pytest.MonkeyPatch) -> None:
    import resilient_async.instrumentation as instrumentation

    class UnreadableVar:
        def get(self) -> tuple[object, ...]:
            raise AssertionError("emit() read a context variable with no hook installed")

    monkeypatch.setattr(instrumentation, "_maybe_active", False)
    monkeypatch.setattr(instrumentation, "_scoped_hooks", UnreadableVar())
    emit("retry.scheduled", "quiet", attempt=1)
    assert not enabled()


@pytest.mark.anyio
async def test_a_task_outliving_its_hooks_block_still_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import resilient_async.instrumentation as instrumentation

    monkeypatch.setattr(instrumentation, "_maybe_active", False)
    recorder = Recorder()
    started = anyio.Event()
    release = anyio.Event()

    async def child() -> None:
        started.set()
        await release.wait()
        emit("retry.scheduled", "late", attempt=1)

    async with anyio.create_task_group() as tg:
        with hooks(recorder):
            tg.start_soon(child)
            await started.wait()
        release.set()
    assert [event.policy for event in recorder.events] == ["late"]
