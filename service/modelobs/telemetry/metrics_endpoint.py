"""Pull mode: with OTEL_METRICS_EXPORTER=prometheus each app serves its own metrics at
``GET /metrics`` on its own port, in the Prometheus / OpenMetrics text format.

The series are the ones the OTLP path gives through the collector's Prometheus exporter:
the same names (the exporter's own unit and ``_total`` suffixes) and the same resource
labels (``service_name``, ``service_namespace``, ``service_instance_id``, the ones the
collector's ``resource_constant_labels`` copies), so dashboards and rules read either path.
``job`` and ``instance`` come from the scrape config (deploy/prometheus/pull/).

Each app has its own ``CollectorRegistry``: two apps in one process (tests) never merge,
and nothing lands in prometheus_client's global registry. OTEL_EXPORTER_PROMETHEUS_HOST /
_PORT (the exporter's stand-alone server) are not used: the app's port serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, make_asgi_app

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .providers import Telemetry

METRICS_PATH = "/metrics"
# The resource attributes the collector's prometheus exporter copies onto every series
# (otel-collector/config.yaml, resource_constant_labels.included; tests hold them equal).
RESOURCE_LABELS = frozenset({"service.name", "service.namespace", "service.instance.id"})

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def is_resource_label(key: str) -> bool:
    """Resource attributes copied onto every series as labels."""
    return key in RESOURCE_LABELS


def prometheus_reader() -> tuple[PrometheusMetricReader, CollectorRegistry]:
    """A reader that answers scrapes from a registry of its own."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry, resource_attribute_filter=is_resource_label)
    return reader, registry


class MetricsEndpoint:
    """Outermost middleware: ``GET /metrics`` is answered here, before routing and the server
    telemetry, so scrapes are neither traced nor counted as requests (like the probes).

    prometheus_client's ASGI app does the content negotiation (OpenMetrics for Prometheus,
    text 0.0.4 otherwise) and gzip. It collects on the event loop: measured about 5 ms per
    scrape of a loaded model service (GET round trip), once per scrape interval, so it is
    not moved to a thread.
    """

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.metrics_app = make_asgi_app(registry=registry)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == METRICS_PATH and scope["method"] == "GET":
            await self.metrics_app(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def serve_metrics(app: FastAPI, telemetry: Telemetry) -> None:
    """In pull mode, serve ``telemetry``'s registry at GET /metrics, outside everything else
    the app builds, the server instrumentation included (it wraps the whole middleware
    stack, so call this after ``instrument_server``)."""
    registry = telemetry.metrics_registry
    if registry is None:
        return
    inner = app.build_middleware_stack

    def build() -> ASGIApp:
        return MetricsEndpoint(inner(), registry)

    app.build_middleware_stack = build  # type: ignore[method-assign]
