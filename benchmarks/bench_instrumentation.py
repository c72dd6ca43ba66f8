"""What events cost: a retried call with no hook, with LoggingHook off, and with each adapter.

One call = one failed attempt, a zero wait, then a success: two events (`retry.attempt_failed`
and `retry.scheduled`). The success path emits nothing, so this is where hooks cost. A
second group measures one event: `emit()` with no hook installed (against an empty function
call with the same arguments), and each hook's own cost, called with a ready event.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable

import structlog
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from resilient_async import backoff
from resilient_async._async.retry import Retry
from resilient_async.instrumentation import (
    Event,
    Hook,
    LoggingHook,
    OpenTelemetryHook,
    PrometheusHook,
    StructlogHook,
    emit,
    hooks,
)

from .harness import Group

Op = Callable[[], Awaitable[int]]


def _retried_call() -> Op:
    """A retry loop around a callable that fails every other time: one retry per call."""
    policy = Retry(attempts=2, on=ConnectionError, backoff=backoff.constant(0), name="db")
    fail_next = True

    async def flaky() -> int:
        nonlocal fail_next
        fail_next = not fail_next
        if not fail_next:
            raise ConnectionError("down")
        return 1

    async def op() -> int:
        return await policy.call(flaky)

    return op


def _with(make_hook: Callable[[], Hook] | None) -> Callable[[], Op]:
    """Build the case: the retried call in a `hooks()` block with `make_hook()` (or none)."""

    def factory() -> Op:
        scoped = () if make_hook is None else (make_hook(),)
        call = _retried_call()

        async def op() -> int:
            with hooks(*scoped):
                return await call()

        return op

    return factory


def _no_hook() -> Op:
    call = _retried_call()

    async def op() -> int:
        return await call()

    return op


def _logging_off() -> Hook:
    logger = logging.getLogger("benchmarks.instrumentation")
    logger.setLevel(logging.WARNING)  # the events are INFO: filtered out
    logger.propagate = False
    return LoggingHook(logger)


def _structlog_off() -> Hook:
    logger = structlog.wrap_logger(
        structlog.PrintLogger(io.StringIO()),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    ).bind()
    return StructlogHook(logger)


def _structlog_rendered() -> Hook:
    logger = structlog.wrap_logger(
        structlog.ReturnLogger(),
        processors=[structlog.processors.add_log_level, structlog.processors.KeyValueRenderer()],
    ).bind()
    return StructlogHook(logger)


def _prometheus() -> Hook:
    return PrometheusHook(CollectorRegistry())


def _opentelemetry() -> Hook:
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return OpenTelemetryHook(meter_provider=meters, tracer_provider=TracerProvider())


def _in_span(make_hook: Callable[[], Hook] | None) -> Callable[[], Op]:
    """Build the case: each call in a recording span of its own (the span's cost included)."""

    def factory() -> Op:
        tracer = TracerProvider().get_tracer("benchmarks")
        call = _retried_call()
        if make_hook is None:

            async def bare() -> int:
                with tracer.start_as_current_span("call"):
                    return await call()

            return bare
        hook = make_hook()

        async def op() -> int:
            with tracer.start_as_current_span("call"), hooks(hook):
                return await call()

        return op

    return factory


calls = Group(
    "instrumentation: a retried call (2 events)",
    baseline="no hook",
    note="one failed attempt, a zero wait, a success; hooks scoped with hooks() around each call",
)
calls.add("no hook", _no_hook)
calls.add("no hook, in an empty hooks() block", _with(None))
calls.add("LoggingHook, level disabled", _with(_logging_off))
calls.add("StructlogHook, level disabled", _with(_structlog_off))
calls.add("StructlogHook, key=value rendered", _with(_structlog_rendered))
calls.add("PrometheusHook", _with(_prometheus))
calls.add("OpenTelemetryHook, no span", _with(_opentelemetry))
calls.add("no hook, in a recording span", _in_span(None))
calls.add("OpenTelemetryHook, in a recording span", _in_span(_opentelemetry))


def _empty() -> Callable[[], object]:
    def nothing(kind: str, policy: str, /, **fields: object) -> None:
        return None

    return lambda: nothing("retry.scheduled", "db", attempt=1, delay=0.0)


def _emit_no_hook() -> Callable[[], object]:
    return lambda: emit("retry.scheduled", "db", attempt=1, delay=0.0)


def _hook_alone(make_hook: Callable[[], Hook]) -> Callable[[], Callable[[], object]]:
    """Build the case: the hook called with a ready event (its own cost, no dispatch)."""

    def factory() -> Callable[[], object]:
        hook = make_hook()
        event = Event("retry.scheduled", "db", {}, {"attempt": 1, "delay": 0.0})
        return lambda: hook(event)

    return factory


events = Group(
    "instrumentation: one event",
    baseline="empty function, same arguments",
    note="emit() where no hook listens; then each hook's own cost per event",
)
events.add("empty function, same arguments", _empty, is_async=False)
events.add("emit(), no hook installed", _emit_no_hook, is_async=False)
events.add("LoggingHook, level disabled", _hook_alone(_logging_off), is_async=False)
events.add("StructlogHook, level disabled", _hook_alone(_structlog_off), is_async=False)
events.add("StructlogHook, key=value rendered", _hook_alone(_structlog_rendered), is_async=False)
events.add("PrometheusHook", _hook_alone(_prometheus), is_async=False)
events.add("OpenTelemetryHook, no span", _hook_alone(_opentelemetry), is_async=False)

GROUPS = [calls, events]
