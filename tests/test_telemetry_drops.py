"""Lost telemetry is counted by the SDK's own self-metrics, on the service's meter provider:
a full batch queue (``otel.sdk.processor.*.processed`` with ``error.type=queue_full``) and a
failed export (``otel.sdk.exporter.*.exported`` with ``error.type``)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from modelobs.telemetry import Telemetry, build_telemetry
from modelobs.telemetry.providers import SDK_SELF_METRICS

from .servers import free_port

QUEUE = 4
BATCH = 2
ITEMS = 30


class _Stuck:
    """An exporter whose first export blocks until released: the worker thread holds one
    batch, the queue fills behind it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.exported = 0

    def export(self, batch: Sequence[Any]) -> Any:
        self.entered.set()
        self.release.wait(timeout=30)
        self.exported += len(batch)
        return self.result

    def shutdown(self) -> None:
        self.release.set()

    def force_flush(self, timeout_millis: int = 0) -> bool:
        return True


class StuckSpanExporter(_Stuck, SpanExporter):
    result = SpanExportResult.SUCCESS


class StuckLogExporter(_Stuck, LogRecordExporter):
    result = LogRecordExportResult.SUCCESS


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    return [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def _sum(points: list[Any], **attributes: str | None) -> float:
    """Sum of the points whose attributes match (None: the attribute is absent)."""
    return sum(
        p.value for p in points if all(p.attributes.get(k) == v for k, v in attributes.items())
    )


@pytest.fixture
def small_queues(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny batch queues; the self-metrics switch unset, so the services' default decides."""
    monkeypatch.delenv(SDK_SELF_METRICS, raising=False)
    for prefix in ("OTEL_BSP", "OTEL_BLRP"):
        monkeypatch.setenv(f"{prefix}_MAX_QUEUE_SIZE", str(QUEUE))
        monkeypatch.setenv(f"{prefix}_MAX_EXPORT_BATCH_SIZE", str(BATCH))
    yield


@pytest.mark.parametrize("signal", ["span", "log"])
def test_queue_overflow_raises_the_sdk_drop_count(small_queues: None, signal: str) -> None:
    spans, logs, reader = StuckSpanExporter(), StuckLogExporter(), InMemoryMetricReader()
    telemetry = build_telemetry(
        "model-service", span_exporter=spans, metric_reader=reader, log_exporter=logs
    )
    stuck = spans if signal == "span" else logs
    try:
        _produce(telemetry, signal, ITEMS)
        # Read once the worker holds its one batch: nothing moves any more.
        assert stuck.entered.wait(timeout=10), "the batch worker never exported"
        processed = _points(reader, f"otel.sdk.processor.{signal}.processed")
        dropped = _sum(processed, **{"error.type": "queue_full"})
        capacity = _sum(_points(reader, f"otel.sdk.processor.{signal}.queue.capacity"))
    finally:
        stuck.release.set()
        telemetry.shutdown()
    assert capacity == QUEUE
    lost = ITEMS - stuck.exported  # one batch and a full queue got through
    assert lost >= ITEMS - QUEUE - BATCH
    # Every lost item is counted. The SDK checks "full" before it appends, so a batch taken
    # in between can make it count one that then fits: at most one more per batch taken.
    assert lost <= dropped <= lost + 1


def _produce(telemetry: Telemetry, signal: str, n: int) -> None:
    if signal == "span":
        for i in range(n):
            telemetry.tracer.start_span(f"work {i}").end()
    else:
        logger = telemetry.logger_provider.get_logger("drops")
        for i in range(n):
            logger.emit(body=f"line {i}")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_failed_exports_are_counted_by_the_exporter(
    small_queues: None, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    # Seconds, as the Python exporters read it (the spec says milliseconds): the first
    # backoff already passes the deadline, so the export gives up at once.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    reader = InMemoryMetricReader()
    telemetry = build_telemetry("gateway", metric_reader=reader)
    try:
        telemetry.tracer.start_span("lost").end()
        telemetry.tracer_provider.force_flush()
        exported = _points(reader, "otel.sdk.exporter.span.exported")
    finally:
        telemetry.shutdown(timeout_s=2)
    failed = {p.attributes.get("error.type"): p.value for p in exported}
    expected = "_InactiveRpcError" if protocol == "grpc" else "ConnectionError"
    assert failed == {expected: 1}


def test_an_explicit_false_switches_the_self_metrics_off(
    small_queues: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SDK_SELF_METRICS, "false")
    spans, reader = StuckSpanExporter(), InMemoryMetricReader()
    telemetry = build_telemetry("model-service", span_exporter=spans, metric_reader=reader)
    try:
        _produce(telemetry, "span", ITEMS)
        assert _points(reader, "otel.sdk.processor.span.processed") == []
    finally:
        spans.release.set()
        telemetry.shutdown()


def test_readme_names_the_counters_the_drop_alert_reads() -> None:
    """README's Telemetry section and the ServiceTelemetryDropped rule name the same series."""
    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    section = readme[readme.index("## Telemetry") :]
    section = section[: section.index("\n## ", 1)]
    rules = yaml.safe_load((repo / "deploy/prometheus/rules/modelobs.yml").read_text())
    (expr,) = [
        r["expr"]
        for g in rules["groups"]
        for r in g["rules"]
        if r.get("alert") == "ServiceTelemetryDropped"
    ]
    read = set(re.findall(r"otel_sdk_\w+_total", expr))
    named = set()
    for stem, signals, rest in re.findall(r"`(otel_sdk_\w+_)\{([a-z,]+)\}(_\w+_total)", section):
        named.update(f"{stem}{s}{rest}" for s in signals.split(","))
    assert read and named == read
    links = re.findall(r"\]\((deploy/[^)]+)\)", section)
    assert "deploy/prometheus/scrape-pull.yml" in links  # pull mode's scrape config
    assert all((repo / path).is_file() for path in links), links
