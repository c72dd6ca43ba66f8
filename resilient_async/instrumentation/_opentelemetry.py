"""`OpenTelemetryHook`: an event counter, and span events on the current span."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._labels import import_extra, policy_label

if TYPE_CHECKING:
    from . import Event

__all__ = ["OpenTelemetryHook"]

METER = "resilient_async"
EVENTS = "resilience.events"

_ATTRIBUTE_TYPES = (str, bool, int, float)


class OpenTelemetryHook:
    """A hook that counts events in an OpenTelemetry counter and adds them to the current span.

    - Meter `resilient_async`, counter `resilience.events` with the attributes `event.kind`
      and `policy.name` (bounded like Prometheus labels: the empty string for unnamed
      policies, the family name for a per-key guard).
    - When the current span is recording, each event is added to it as a span event named
      after its kind, with `event.kind`, `policy.name` (the full name) and the event's
      fields as attributes; an exception field becomes `exception.type` and
      `exception.message`.

    Args:
        meter_provider: The `MeterProvider` to get the meter from; the global one when
            omitted.
        tracer_provider: The `TracerProvider` the application traces with; the global one
            when omitted. Span events go to the current span, whichever provider made it.

    Raises:
        ImportError: opentelemetry-api is not installed (`pip install resilient-async[otel]`).

    Example:
        ```python
        from resilient_async.instrumentation import OpenTelemetryHook, set_hooks

        set_hooks([OpenTelemetryHook()])  # the global meter and tracer providers
        ```
    """

    __slots__ = ("_attributes", "_counter", "_trace", "meter_provider", "tracer_provider")

    def __init__(self, meter_provider: Any = None, tracer_provider: Any = None) -> None:
        metrics = import_extra("opentelemetry.metrics", "OpenTelemetryHook", "otel")
        trace = import_extra("opentelemetry.trace", "OpenTelemetryHook", "otel")
        if meter_provider is None:
            meter_provider = metrics.get_meter_provider()
        elif not isinstance(meter_provider, metrics.MeterProvider):
            raise TypeError(
                f"meter_provider must be a MeterProvider or None, got {meter_provider!r}"
            )
        if tracer_provider is None:
            tracer_provider = trace.get_tracer_provider()
        elif not isinstance(tracer_provider, trace.TracerProvider):
            raise TypeError(
                f"tracer_provider must be a TracerProvider or None, got {tracer_provider!r}"
            )
        self.meter_provider = meter_provider
        self.tracer_provider = tracer_provider
        meter = meter_provider.get_meter(METER)
        self._counter = meter.create_counter(
            EVENTS, unit="{event}", description="Events reported by resilient_async policies."
        )
        self._trace = trace
        # The counter's attributes by (kind, policy), built once: they are bounded.
        self._attributes: dict[tuple[str, str | None], Mapping[str, str]] = {}

    def __repr__(self) -> str:
        return (
            f"OpenTelemetryHook(meter_provider={self.meter_provider!r}, "
            f"tracer_provider={self.tracer_provider!r})"
        )

    def __call__(self, event: Event) -> None:
        """Count `event`, and add it to the current span when that span is recording."""
        kind: str = event.kind
        key = (kind, event.policy)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = {"event.kind": kind, "policy.name": policy_label(event.policy)}
            self._attributes[key] = attributes
        self._counter.add(1, attributes)
        span = self._trace.get_current_span()
        if span.is_recording():
            span.add_event(kind, _span_attributes(event))


def _span_attributes(event: Event) -> dict[str, Any]:
    """Turn an event into span-event attributes (OpenTelemetry takes scalars only)."""
    attributes: dict[str, Any] = {"event.kind": event.kind}
    if event.policy is not None:
        attributes["policy.name"] = event.policy
    for key, value in event.fields.items():
        if value is None:
            continue
        if isinstance(value, BaseException):
            cls = type(value)
            module = "" if cls.__module__ == "builtins" else f"{cls.__module__}."
            attributes["exception.type"] = f"{module}{cls.__qualname__}"
            attributes["exception.message"] = str(value)
        elif isinstance(value, enum.Enum):
            attributes[key] = str(value.value)
        elif isinstance(value, _ATTRIBUTE_TYPES):
            attributes[key] = value
        else:
            attributes[key] = str(value)
    return attributes
