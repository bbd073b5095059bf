"""The peer in telemetry_overhead.py: the same services with the default OpenTelemetry setup
a user would write instead of ours, so its cost is measured beside ours in one run.

    python bench/peer_service.py model --port 8000 [--workers 2]
    python bench/peer_service.py gateway --port 8080 --model-url http://127.0.0.1:8000

Our telemetry is off (the apps get disabled providers, as under OTEL_SDK_DISABLED); in its
place, global providers with the OTLP exporters' defaults (endpoint and protocol from the
standard OTEL_* variables), ``FastAPIInstrumentor.instrument_app(app)`` and
``HTTPXClientInstrumentor().instrument()`` with defaults, the logging instrumentation, and
the SDK's ``LoggingHandler`` added to loguru as its documentation shows for a stdlib handler,
so every log line (one per prediction) is exported as well. FastAPI's own telemetry sees the
instrumentation and stays off, so there is one server span per request. Providers are built
in each worker, after uvicorn's fork.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

SERVICES = {"model": "model-service", "gateway": "gateway"}


def _default_setup(service_name: str) -> None:
    """What the OpenTelemetry Python getting-started pages have a user write."""
    from loguru import logger
    from opentelemetry import _logs, metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.logging import LoggingInstrumentor
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": service_name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    _logs.set_logger_provider(logger_provider)
    LoggingInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    logger.add(LoggingHandler(logger_provider=logger_provider), format="{message}")


def _app(kind: str):
    from fastapi import FastAPI
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    from modelobs.apps import gateway, model_service
    from modelobs.telemetry import build_telemetry

    service_name = SERVICES[kind]
    # Ours off; build_telemetry's defaults (SDK self-metrics, stable HTTP conventions) must
    # not leak into the peer, which gets the SDK's and the libraries' own defaults.
    saved = dict(os.environ)
    os.environ["OTEL_SDK_DISABLED"] = "true"
    ours_off = build_telemetry(service_name)
    os.environ.clear()
    os.environ.update(saved)
    module = model_service if kind == "model" else gateway
    app: FastAPI = module.create_app(telemetry=ours_off)  # sets up our (JSON line) logging
    # Our (disabled) server instrumentation still marks the app's telemetry current around
    # the middleware stack; the FastAPI instrumentation refuses an outer layer it does not
    # know, so the app gets FastAPI's own stack back.
    del app.build_middleware_stack
    _default_setup(service_name)
    FastAPIInstrumentor.instrument_app(app)
    return app


def model_app():
    return _app("model")


def gateway_app():
    return _app("gateway")


def main() -> int:
    import uvicorn

    from modelobs.apps.slow_clients import server_options
    from modelobs.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=sorted(SERVICES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--model-url")
    args = parser.parse_args()
    if args.model_url:
        os.environ["MODELOBS_MODEL_URL"] = args.model_url
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")) if p
    )
    uvicorn.run(
        f"peer_service:{args.app}_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        # The same server as ours (protocol, TCP_NODELAY, keep-alive): only the telemetry
        # differs. Without it, two peer workers waited ~40 ms per request on Nagle.
        **server_options(get_settings()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
