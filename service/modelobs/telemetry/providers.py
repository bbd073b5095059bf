"""Build the three OpenTelemetry providers for one service, from the standard OTEL_* variables.

Providers are returned, not installed globally, so two apps can live in one process (tests)
and each keeps its own resource. Every export runs on a background thread behind a bounded
queue: a slow or absent collector costs dropped telemetry, never a slow request. What is
dropped is counted by the SDK itself (its ``otel.sdk.*`` self-metrics, recorded on the
service's own meter provider).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
from . import synthetic
from .exemplars import exemplar_filter
from .http_views import unused_http_instrument_views
from .instance import instance_attributes
from .light_spans import LightTracerProvider

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

INSTRUMENTATION_SCOPE = "modelobs"
# The SDK's switch for its self-metrics (queue capacity, processed and dropped items,
# exported and failed items). Read by each processor and exporter when it is created.
SDK_SELF_METRICS = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
METRICS_EXPORTERS = frozenset({"otlp", "prometheus"})
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
    """OTEL_{TRACES,LOGS}_EXPORTER: ``none`` turns one signal off; ``otlp`` (the default)
    is the only exporter this service ships for them."""
    value = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp").strip().lower()
    if value not in ("otlp", "none"):
        raise ValueError(f"OTEL_{signal.upper()}_EXPORTER={value!r}: use otlp or none")
    return value == "otlp"


def metrics_exporters() -> frozenset[str]:
    """OTEL_METRICS_EXPORTER, a comma-separated list as the spec allows: ``otlp`` (default,
    push to the collector), ``prometheus`` (pull: GET /metrics on the app's port), ``none``."""
    raw = os.environ.get("OTEL_METRICS_EXPORTER", "otlp")
    values = {v.strip().lower() for v in raw.split(",") if v.strip()} or {"otlp"}
    unknown = values - METRICS_EXPORTERS - {"none"}
    if unknown:
        raise ValueError(
            f"OTEL_METRICS_EXPORTER={raw!r}: {', '.join(sorted(unknown))} unknown "
            "(use otlp, prometheus or none)"
        )
    return frozenset(values & METRICS_EXPORTERS)


def enable_sdk_self_metrics() -> None:
    """The SDK counts dropped spans and log records, and failed exports, only when its
    self-metrics are on; ServiceTelemetryDropped and ServiceTelemetryMissing read them.
    An explicit ``false`` in the environment is respected (and those alerts go blind)."""
    os.environ.setdefault(SDK_SELF_METRICS, "true")


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
        "deployment.environment.name": environment,
    }
    from_env = OTELResourceDetector().detect().attributes
    return Resource.create({**defaults, **from_env, **instance_attributes(from_env)})


def _span_exporter(meter_provider: metrics.MeterProvider) -> SpanExporter:
    if otlp_protocol("traces") == "grpc":
        from .exporters import FastEncodingSpanExporter

        return FastEncodingSpanExporter(meter_provider=meter_provider)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(meter_provider=meter_provider)


def _otlp_metric_exporter() -> Any:
    """The OTLP metric exporter of the configured protocol (both have set_meter_provider)."""
    if otlp_protocol("metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return OTLPMetricExporter()


def _log_exporter(meter_provider: metrics.MeterProvider) -> LogRecordExporter:
    if otlp_protocol("logs") == "grpc":
        from .exporters import FastEncodingLogExporter

        return FastEncodingLogExporter(meter_provider=meter_provider)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(meter_provider=meter_provider)


def span_processor_for(exporter: SpanExporter) -> type[BatchSpanProcessor]:
    """Spans are encoded as they end for an exporter that sends those bytes (pre_encoding.py)."""
    from .pre_encoding import PreEncodingBatchSpanProcessor, sends_pre_encoded

    return PreEncodingBatchSpanProcessor if sends_pre_encoded(exporter) else BatchSpanProcessor


def log_processor_for(exporter: LogRecordExporter) -> type[BatchLogRecordProcessor]:
    """Log records are encoded as they are emitted for an exporter that sends those bytes."""
    from .pre_encoding import PreEncodingBatchLogRecordProcessor, sends_pre_encoded

    if sends_pre_encoded(exporter):
        return PreEncodingBatchLogRecordProcessor
    return BatchLogRecordProcessor


@dataclass
class Telemetry:
    """The providers of one service. ``enabled`` is False under OTEL_SDK_DISABLED=true."""

    service_name: str
    resource: Resource
    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider
    logger_provider: LoggerProvider
    enabled: bool = True
    # Whether log records leave over OTLP (False under OTEL_LOGS_EXPORTER=none): per-request
    # records then go there only, not to stdout too (logs.log_event).
    exports_logs: bool = False
    # Pull mode (OTEL_METRICS_EXPORTER=prometheus): this service's own registry, served at
    # GET /metrics by telemetry/metrics_endpoint.py; None when metrics are only pushed.
    metrics_registry: CollectorRegistry | None = None
    _closed: bool = field(default=False, repr=False)
    _sdk_loggers: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def tracer(self) -> trace.Tracer:
        return self.tracer_provider.get_tracer(INSTRUMENTATION_SCOPE, __version__)

    @property
    def meter(self) -> metrics.Meter:
        return self.meter_provider.get_meter(INSTRUMENTATION_SCOPE, __version__)

    def sdk_logger(self, name: str) -> Any:
        """The logger provider's logger for ``name``, kept: the SDK's ``get_logger`` takes two
        locks per call, once per record on the log sinks' path. The SDK keeps one logger per
        name too (and reconfigures those same objects), so keeping it changes nothing."""
        found = self._sdk_loggers.get(name)
        if found is None:
            found = self._sdk_loggers[name] = self.logger_provider.get_logger(name)
        return found

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
    """Providers exporting over OTLP (or serving metrics for scraping), or to the given
    exporters (tests pass in-memory ones)."""
    use_stable_http_semconv()
    enable_sdk_self_metrics()
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
    readers: list[MetricReader] = [metric_reader] if metric_reader else []
    otlp_exporter = registry = None
    if not readers:
        exporters = metrics_exporters()
        if "otlp" in exporters:
            otlp_exporter = _otlp_metric_exporter()
            # Interval and timeout come from OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT.
            readers.append(PeriodicExportingMetricReader(otlp_exporter))
        if "prometheus" in exporters:
            from .metrics_endpoint import prometheus_reader

            pull_reader, registry = prometheus_reader()
            readers.append(pull_reader)
    meter_provider = SdkMeterProvider(
        resource=resource,
        metric_readers=readers,
        views=unused_http_instrument_views(),
        exemplar_filter=exemplar_filter(),
    )
    if otlp_exporter is not None:
        # Its failed exports are counted too, on the provider that did not exist before.
        otlp_exporter.set_meter_provider(meter_provider)
    # The sampler comes from OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG, the span limits
    # from OTEL_SPAN_*; the SDK provider's configuration and processors, light spans
    # (light_spans.py) for every tracer the service and its instrumentations get.
    tracer_provider = SdkTracerProvider(resource=resource)
    # Baggage marks of synthetic traffic onto every span and log record (synthetic.py).
    tracer_provider.add_span_processor(synthetic.span_processor())
    if span_exporter or exporter_enabled("traces"):
        exporter = span_exporter or _span_exporter(meter_provider)
        tracer_provider.add_span_processor(
            span_processor_for(exporter)(exporter, meter_provider=meter_provider)
        )
    logger_provider = SdkLoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(synthetic.log_processor())
    exports_logs = log_exporter is not None or exporter_enabled("logs")
    if exports_logs:
        exporter = log_exporter or _log_exporter(meter_provider)
        logger_provider.add_log_record_processor(
            log_processor_for(exporter)(exporter, meter_provider=meter_provider)
        )
    return Telemetry(
        service_name=service_name,
        resource=resource,
        tracer_provider=LightTracerProvider(tracer_provider),
        meter_provider=meter_provider,
        logger_provider=logger_provider,
        exports_logs=exports_logs,
        metrics_registry=registry,
    )
