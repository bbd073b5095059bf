"""Build the three OpenTelemetry providers for one service, from the standard OTEL_* variables.

Providers are returned, not installed globally, so two apps can live in one process (tests)
and each keeps its own resource. Every export runs on a background thread behind a bounded
queue: a slow or absent collector costs dropped telemetry, never a slow request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import LoggerProvider, NoOpLoggerProvider
from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from .. import __version__
from .exemplars import exemplar_filter

INSTRUMENTATION_SCOPE = "modelobs"
_logger = logging.getLogger(__name__)


def sdk_disabled() -> bool:
    """OTEL_SDK_DISABLED, as the spec defines it: only the string 'true' disables."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_protocol(signal: str) -> str:
    """The per-signal protocol variable wins over the general one; the spec's default is HTTP."""
    value = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    value = value.strip().lower()
    if value not in ("grpc", "http/protobuf"):
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={value!r} is not supported (use grpc or http/protobuf)"
        )
    return value


def exporter_enabled(signal: str) -> bool:
    """OTEL_{TRACES,METRICS,LOGS}_EXPORTER: ``none`` turns one signal off; ``otlp`` (the
    default) is the only exporter this service ships."""
    value = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").strip().lower()
    if value not in ("otlp", "none"):
        raise ValueError(f"OTEL_{signal.upper()}_EXPORTER={value!r}: use otlp or none")
    return value == "otlp"


def use_stable_http_semconv() -> None:
    """The httpx instrumentation emits the stable HTTP conventions only when opted in;
    our server middleware always does, so both sides speak the same names."""
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")


def build_resource(service_name: str, environment: str) -> Resource:
    """Our defaults, overridden by OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES."""
    defaults: dict[str, Any] = {
        "service.name": service_name,
        "service.namespace": "modelobs",
        "service.version": __version__,
        "service.instance.id": str(uuid.uuid4()),
        "deployment.environment.name": environment,
    }
    from_env = OTELResourceDetector().detect().attributes
    return Resource.create({**defaults, **from_env})


def _span_exporter() -> SpanExporter:
    if otlp_protocol("traces") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


def _metric_reader() -> MetricReader:
    if otlp_protocol("metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    # Interval and timeout come from OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT.
    return PeriodicExportingMetricReader(OTLPMetricExporter())


def _log_exporter() -> LogRecordExporter:
    if otlp_protocol("logs") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    return OTLPLogExporter()


class _DropCountingMixin:
    """Counts what a full queue throws away: the SDK only logs it."""

    _signal: str  # the `signal` attribute of the drop counter

    def __init__(self, exporter: Any, dropped: metrics.Counter) -> None:
        super().__init__(exporter)  # type: ignore[call-arg]  # the SDK's batch processor
        self._dropped = dropped
        # The SDK's bounded deque (private, so looked up once and checked for).
        queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)
        self._queue = queue if queue is not None and queue.maxlen is not None else None

    def _count_if_full(self) -> None:
        queue = self._queue
        if queue is not None and len(queue) >= queue.maxlen:
            self._dropped.add(1, {"signal": self._signal})


class DropCountingSpanProcessor(_DropCountingMixin, BatchSpanProcessor):
    _signal = "spans"

    def on_end(self, span: Any) -> None:
        self._count_if_full()
        super().on_end(span)


class DropCountingLogProcessor(_DropCountingMixin, BatchLogRecordProcessor):
    _signal = "logs"

    def on_emit(self, log_record: Any) -> None:
        self._count_if_full()
        super().on_emit(log_record)


@dataclass
class Telemetry:
    """The providers of one service. ``enabled`` is False under OTEL_SDK_DISABLED=true."""

    service_name: str
    resource: Resource
    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider
    logger_provider: LoggerProvider
    enabled: bool = True
    _closed: bool = field(default=False, repr=False)

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer(INSTRUMENTATION_SCOPE, __version__)

    @property
    def meter(self) -> metrics.Meter:
        return self.meter_provider.get_meter(INSTRUMENTATION_SCOPE, __version__)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Flush what is queued and stop, within ``timeout_s`` in all.

        The three providers stop in parallel; with the collector down each would otherwise
        retry every queued batch in turn, holding a stopping process for a minute.
        What is still unsent at the deadline is dropped.
        """
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        threads = []
        for provider in (self.tracer_provider, self.logger_provider, self.meter_provider):
            stop = getattr(provider, "shutdown", None)
            if stop is not None:
                thread = threading.Thread(target=stop, name="telemetry-shutdown", daemon=True)
                thread.start()
                threads.append(thread)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            _logger.warning(
                "telemetry shutdown timed out after %.1fs; unsent data dropped", timeout_s
            )


def build_telemetry(
    service_name: str,
    *,
    environment: str = "dev",
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    log_exporter: LogRecordExporter | None = None,
) -> Telemetry:
    """Providers exporting over OTLP, or to the given exporters (tests pass in-memory ones)."""
    use_stable_http_semconv()
    resource = build_resource(service_name, environment)
    if sdk_disabled():
        return Telemetry(
            service_name=service_name,
            resource=resource,
            tracer_provider=trace.NoOpTracerProvider(),
            meter_provider=metrics.NoOpMeterProvider(),
            logger_provider=NoOpLoggerProvider(),
            enabled=False,
        )
    readers = [metric_reader] if metric_reader else []
    if not readers and exporter_enabled("metrics"):
        readers.append(_metric_reader())
    meter_provider = SdkMeterProvider(
        resource=resource, metric_readers=readers, exemplar_filter=exemplar_filter()
    )
    dropped = meter_provider.get_meter(INSTRUMENTATION_SCOPE, __version__).create_counter(
        "modelobs.telemetry.dropped",
        unit="{item}",
        description="Spans and log records dropped because the export queue was full",
    )
    for signal in ("spans", "logs"):  # a series at 0 from the start, so panels show "0"
        dropped.add(0, {"signal": signal})
    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
    tracer_provider = SdkTracerProvider(resource=resource)
    if span_exporter or exporter_enabled("traces"):
        tracer_provider.add_span_processor(
            DropCountingSpanProcessor(span_exporter or _span_exporter(), dropped)
        )
    logger_provider = SdkLoggerProvider(resource=resource)
    if log_exporter or exporter_enabled("logs"):
        logger_provider.add_log_record_processor(
            DropCountingLogProcessor(log_exporter or _log_exporter(), dropped)
        )
    return Telemetry(
        service_name=service_name,
        resource=resource,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
    )
