"""The instrumentation adapters, each with its real library."""

from __future__ import annotations

import logging
import sys

import pytest
import structlog
import structlog.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import resilient_async as ra
from resilient_async import backoff
from resilient_async.instrumentation import (
    Event,
    OpenTelemetryHook,
    PrometheusHook,
    StructlogHook,
    emit,
    hooks,
)
from resilient_async.instrumentation._labels import policy_label
from resilient_async.testing import faults


def flaky(failures: int) -> object:
    """An async callable that fails `failures` times with ConnectionError, then returns 'ok'."""

    async def ok() -> str:
        return "ok"

    return faults(ok, script=[ConnectionError("down")] * failures + [None])


async def retried_call(name: str | None = "db", failures: int = 2) -> str:
    policy = ra.Retry(attempts=5, backoff=backoff.constant(0.25), name=name)
    return await policy.call(flaky(failures))  # type: ignore[arg-type]


def broken_hook(event: Event) -> None:
    raise RuntimeError("this hook is broken")


# --- Prometheus -----------------------------------------------------------------------


def events_total(registry: CollectorRegistry, kind: str, policy: str) -> float | None:
    labels = {"kind": kind, "policy": policy}
    return registry.get_sample_value("resilient_async_events_total", labels)


@pytest.mark.anyio
async def test_prometheus_counts_events_and_observes_retry_delays() -> None:
    registry = CollectorRegistry()
    with hooks(PrometheusHook(registry)):
        assert await retried_call("db") == "ok"
    assert events_total(registry, "retry.scheduled", "db") == 2
    assert events_total(registry, "retry.attempt_failed", "db") == 2
    delays = {"policy": "db"}
    assert registry.get_sample_value("resilient_async_retry_delay_seconds_count", delays) == 2
    assert registry.get_sample_value("resilient_async_retry_delay_seconds_sum", delays) == 0.5
    buckets = {"policy": "db", "le": "0.1"}, {"policy": "db", "le": "0.25"}
    assert [
        registry.get_sample_value("resilient_async_retry_delay_seconds_bucket", bucket)
        for bucket in buckets
    ] == [0, 2]
    longest = {"policy": "db", "le": "60.0"}
    assert registry.get_sample_value("resilient_async_retry_delay_seconds_bucket", longest) == 2


@pytest.mark.anyio
async def test_prometheus_labels_stay_bounded() -> None:
    registry = CollectorRegistry()
    per_user = ra.Bulkhead.per_key(1, name="api")
    with hooks(PrometheusHook(registry)):
        await retried_call(None, failures=1)
        await retried_call(None, failures=1)
        for user in range(5):
            async with per_user[f"user-{user}"]:
                with pytest.raises(ra.BulkheadFullError):
                    async with per_user[f"user-{user}"]:
                        pass
    assert events_total(registry, "retry.scheduled", "") == 2  # unnamed share one value
    assert events_total(registry, "bulkhead.rejected", "api") == 5  # the family, not the key
    policies = {
        sample.labels["policy"]
        for metric in registry.collect()
        for sample in metric.samples
        if "policy" in sample.labels
    }
    assert policies == {"", "api"}


@pytest.mark.parametrize(
    ("name", "label"),
    [(None, ""), ("db", "db"), ("api[user-42]", "api"), ("[odd]", "[odd]"), ("a[b", "a[b")],
)
def test_policy_labels_keep_the_family_of_a_per_key_guard(name: str | None, label: str) -> None:
    assert policy_label(name) == label


def test_prometheus_hooks_on_one_registry_share_the_metrics() -> None:
    registry = CollectorRegistry()
    first, second = PrometheusHook(registry), PrometheusHook(registry)
    with hooks(first, second):
        emit("breaker.rejected", "b")
    assert events_total(registry, "breaker.rejected", "b") == 2
    PrometheusHook()  # the default registry, twice: no duplicate-metric error
    PrometheusHook()
    with pytest.raises(TypeError, match="CollectorRegistry"):
        PrometheusHook(registry={})


# --- OpenTelemetry --------------------------------------------------------------------


class Otel:
    """An SDK meter provider and tracer provider that keep what they record in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.spans))
        self.hook = OpenTelemetryHook(meter_provider=self.meters, tracer_provider=self.tracers)

    def counts(self) -> dict[tuple[str, str], int]:
        data = self.reader.get_metrics_data()
        found: dict[tuple[str, str], int] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "resilient_async"
                for metric in scope.metrics:
                    assert metric.name == "resilience.events"
                    for point in metric.data.data_points:
                        attributes = dict(point.attributes)
                        found[attributes["event.kind"], attributes["policy.name"]] = point.value
        return found


@pytest.mark.anyio
async def test_opentelemetry_counts_events_and_adds_span_events() -> None:
    otel = Otel()
    tracer = otel.tracers.get_tracer("test")
    with hooks(otel.hook), tracer.start_as_current_span("request"):
        assert await retried_call("db") == "ok"
    assert otel.counts() == {("retry.attempt_failed", "db"): 2, ("retry.scheduled", "db"): 2}
    (span,) = otel.spans.get_finished_spans()
    assert [e.name for e in span.events] == ["retry.attempt_failed", "retry.scheduled"] * 2
    scheduled = span.events[1].attributes
    assert scheduled is not None
    assert dict(scheduled) == {
        "event.kind": "retry.scheduled",
        "policy.name": "db",
        "attempt": 1,
        "delay": 0.25,
        "elapsed": 0.0,  # retry events carry the loop's elapsed time (issue 12)
        "exception.type": "ConnectionError",
        "exception.message": "down",
    }


@pytest.mark.anyio
async def test_opentelemetry_without_a_recording_span_only_counts() -> None:
    otel = Otel()
    breaker = ra.CircuitBreaker("pay")
    breaker.force_open()
    with hooks(otel.hook), pytest.raises(ra.CircuitOpenError):
        await breaker.call(flaky(0))  # type: ignore[arg-type]
    assert otel.counts() == {("breaker.rejected", "pay"): 1}
    assert otel.spans.get_finished_spans() == ()


def test_opentelemetry_span_attributes_are_scalars() -> None:
    otel = Otel()
    with hooks(otel.hook), otel.tracers.get_tracer("t").start_as_current_span("s"):
        emit("breaker.state_changed", None, old_state=ra.BreakerState.CLOSED, new_state=None)
        emit("x.y", "p[k]", odd=[1, 2], error=ra.CircuitOpenError("b", 1.0))
    first, second = otel.spans.get_finished_spans()[0].events
    assert dict(first.attributes or {}) == {
        "event.kind": "breaker.state_changed",
        "old_state": "closed",
    }
    assert dict(second.attributes or {}) == {
        "event.kind": "x.y",
        "policy.name": "p[k]",  # the full name on spans; metrics keep the family
        "odd": "[1, 2]",
        "exception.type": "resilient_async.CircuitOpenError",  # its public module
        "exception.message": str(ra.CircuitOpenError("b", 1.0)),
    }
    assert otel.counts()[("x.y", "p")] == 1
    with pytest.raises(TypeError, match="meter_provider must be a MeterProvider"):
        OpenTelemetryHook(meter_provider=object())
    with pytest.raises(TypeError, match="tracer_provider must be a TracerProvider"):
        OpenTelemetryHook(tracer_provider=object())


# --- structlog ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_structlog_logs_one_event_per_record_with_its_fields() -> None:
    with structlog.testing.capture_logs() as logs, hooks(StructlogHook()):
        assert await retried_call("db", failures=1) == "ok"
        breaker = ra.CircuitBreaker("pay")
        breaker.force_open()
        with pytest.raises(ra.CircuitOpenError):
            await breaker.call(flaky(0))  # type: ignore[arg-type]
    failed, scheduled, changed, rejected = logs
    assert scheduled == {
        "event": "retry.scheduled",
        "kind": "retry.scheduled",
        "policy": "db",
        "attempt": 1,
        "delay": 0.25,
        "elapsed": 0.0,
        "exception": failed["exception"],
        "log_level": "info",
    }
    assert isinstance(failed["exception"], ConnectionError)
    assert changed["new_state"] is ra.BreakerState.FORCED_OPEN
    assert (rejected["event"], rejected["log_level"]) == ("breaker.rejected", "warning")


def test_structlog_takes_a_logger_of_ones_own() -> None:
    with structlog.testing.capture_logs() as logs:
        hook = StructlogHook(structlog.get_logger("mine").bind(service="orders"))
        with hooks(hook):
            emit("retry.gave_up", "db", attempt=3, stop_reason="attempts")
    assert logs == [
        {
            "event": "retry.gave_up",
            "kind": "retry.gave_up",
            "policy": "db",
            "attempt": 3,
            "stop_reason": "attempts",
            "service": "orders",
            "log_level": "warning",
        }
    ]


def test_structlog_refuses_something_that_is_not_a_logger() -> None:
    with pytest.raises(TypeError, match="logger must be a structlog logger"):
        StructlogHook("resilient_async")


# --- all of them ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_raising_hook_breaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    otel = Otel()
    with (
        caplog.at_level(logging.ERROR, "resilient_async"),
        structlog.testing.capture_logs() as logs,
        hooks(broken_hook, PrometheusHook(registry), otel.hook, StructlogHook(), broken_hook),
    ):
        assert await retried_call("db", failures=1) == "ok"
    assert events_total(registry, "retry.scheduled", "db") == 1
    assert otel.counts()[("retry.scheduled", "db")] == 1
    assert [entry["event"] for entry in logs] == ["retry.attempt_failed", "retry.scheduled"]
    failures = [r for r in caplog.records if r.exc_info and "broken" in str(r.exc_info[1])]
    assert len(failures) == 4  # two events, two broken hooks


@pytest.mark.parametrize(
    ("adapter", "module", "extra"),
    [
        (PrometheusHook, "prometheus_client", "prometheus"),
        (OpenTelemetryHook, "opentelemetry.metrics", "otel"),
        (StructlogHook, "structlog", "structlog"),
    ],
)
def test_a_missing_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, adapter: type, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees when it is missing
    with pytest.raises(ImportError, match=rf"pip install resilient-async\[{extra}\]"):
        adapter()
