"""`PrometheusHook`: an event counter and a retry-delay histogram, with bounded labels."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from ._labels import import_extra, policy_label

if TYPE_CHECKING:
    from . import Event

__all__ = ["PrometheusHook"]

EVENTS = "resilient_async_events_total"
RETRY_DELAY = "resilient_async_retry_delay_seconds"
# Backoff waits run from milliseconds to the 60 s a server's Retry-After may ask for.
DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# A collector name may be registered once per registry, so every hook on one registry shares
# one pair of metrics (two hooks on the default registry must not collide).
_metrics: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()
_metrics_lock = threading.Lock()


class PrometheusHook:
    """A hook that counts events and observes retry delays in Prometheus metrics.

    - Counter `resilient_async_events_total`, labels `kind` (the event kind) and `policy`.
    - Histogram `resilient_async_retry_delay_seconds`, label `policy`, observed with the
      delay of every `retry.scheduled` (buckets from 10 ms to 60 s).

    Labels stay bounded: `policy` is the policy's name, the empty string for every unnamed
    policy, and the family name for a per-key guard (`"api"` for `"api[user-42]"`), never a
    per-call value. Hooks given the same registry share its metrics.

    Args:
        registry: The `prometheus_client.CollectorRegistry` to register in; the default
            registry (`prometheus_client.REGISTRY`) when omitted.

    Raises:
        ImportError: prometheus-client is not installed
            (`pip install resilient-async[prometheus]`).

    Example:
        ```python
        from prometheus_client import start_http_server
        from resilient_async.instrumentation import PrometheusHook, set_hooks

        set_hooks([PrometheusHook()])
        start_http_server(9100)
        ```
    """

    __slots__ = ("_children", "_delays", "_events", "registry")

    def __init__(self, registry: Any = None) -> None:
        prometheus = import_extra("prometheus_client", "PrometheusHook", "prometheus")
        if registry is None:
            registry = prometheus.REGISTRY
        elif not isinstance(registry, prometheus.CollectorRegistry):
            raise TypeError(
                f"registry must be a prometheus_client.CollectorRegistry or None, got {registry!r}"
            )
        self.registry = registry
        with _metrics_lock:
            metrics = _metrics.get(registry)
            if metrics is None:
                metrics = _metrics[registry] = (
                    prometheus.Counter(
                        EVENTS,
                        "Events reported by resilient_async policies.",
                        ("kind", "policy"),
                        registry=registry,
                    ),
                    prometheus.Histogram(
                        RETRY_DELAY,
                        "Waits scheduled before retries, in seconds.",
                        ("policy",),
                        registry=registry,
                        buckets=DELAY_BUCKETS,
                    ),
                )
        self._events, self._delays = metrics
        # The labelled children by (kind, policy): labels are bounded, and a dict lookup
        # skips the client's lock and label checks on every event.
        self._children: dict[tuple[str, str | None], tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"PrometheusHook(registry={self.registry!r})"

    def __call__(self, event: Event) -> None:
        """Count `event`; observe its delay when it schedules a retry."""
        key = (event.kind, event.policy)
        children = self._children.get(key)
        if children is None:
            policy = policy_label(event.policy)
            children = (self._events.labels(event.kind, policy), self._delays.labels(policy))
            self._children[key] = children
        children[0].inc()
        if event.kind == "retry.scheduled":
            children[1].observe(event.delay)
