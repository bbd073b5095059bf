"""Run the real apps on real sockets inside the test process, with in-memory telemetry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from deploy.native.net import free_port
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from modelobs.telemetry import Telemetry, build_telemetry

from .waiting import poll_until

__all__ = ["Captured", "captured", "free_port", "serve"]


@dataclass
class Captured:
    """One service's telemetry, kept in memory."""

    telemetry: Telemetry
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    metrics: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    logs: InMemoryLogRecordExporter = field(default_factory=InMemoryLogRecordExporter)

    def flush(self) -> None:
        # Not the meter provider: a collection there would consume the exemplars.
        self.telemetry.tracer_provider.force_flush()
        self.telemetry.logger_provider.force_flush()

    def finished_spans(self, servers: int = 1) -> list[Any]:
        """Waits for ``servers`` server spans: a server span ends just after its response
        is sent, so the client can be a moment ahead of it."""
        spans: list[Any] = []

        def ended() -> bool:
            self.flush()
            spans[:] = self.spans.get_finished_spans()
            return sum(1 for s in spans if s.kind == SpanKind.SERVER) >= servers

        poll_until(ended, timeout_s=5, poll_s=0.01)
        return spans

    def log_records(self) -> list[Any]:
        self.flush()
        return [entry.log_record for entry in self.logs.get_finished_logs()]

    def metric_points(self) -> dict[str, tuple[Any, list[Any]]]:
        """Metric name → (metric, data points)."""
        data = self.metrics.get_metrics_data()
        found: dict[str, tuple[Any, list[Any]]] = {}
        for resource_metrics in data.resource_metrics if data else []:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = (metric, list(metric.data.data_points))
        return found


def captured(service_name: str) -> Captured:
    spans, reader, logs = (
        InMemorySpanExporter(),
        InMemoryMetricReader(),
        InMemoryLogRecordExporter(),
    )
    telemetry = build_telemetry(
        service_name, span_exporter=spans, metric_reader=reader, log_exporter=logs
    )
    return Captured(telemetry, spans, reader, logs)


@contextmanager
def serve(app: Any, port: int | None = None) -> Iterator[str]:
    """Start ``app`` under uvicorn in a thread; yield its base URL; stop it afterwards."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    poll_until(lambda: server.started or not thread.is_alive(), timeout_s=30)
    if not server.started:
        raise RuntimeError(f"server on port {port} did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
