"""What one request-path span costs to create and end: the SDK's span against ours
(telemetry/light_spans.py), in a tight loop, through the service's real span processors.

    python bench/light_spans.py            # ~30 s
    python bench/light_spans.py --rounds 5 --spans 5000

Both tracers come from one ``build_telemetry`` (the synthetic baggage processor and a batch
processor whose exporter drops the batch unread), so the sampler, id generator, limits and
processors are the same. Three shapes: the server span (its 11 HTTP attributes at start,
2 set_attribute, a status, attached and detached as the middleware does), ``model inference``
(``start_as_current_span`` with the model's attributes and one set_attribute), and a child
``start_span`` + ``end``. CPU time of this thread per span, SDK and light interleaved round
after round, medians; and light with the sampler called (a ``ParentBased(ALWAYS_ON)`` that
is not the default's object), what the shortcut for the default sampler saves. Then what
encoding each kind costs the export thread, with both OTLP encoders."""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

# A batch per round, exported (and dropped) only when a round is over.
os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "3600000")
os.environ.setdefault("OTEL_BSP_MAX_QUEUE_SIZE", "200000")

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from modelobs.telemetry import build_telemetry
from modelobs.telemetry.light_spans import LightTracer, LightTracerProvider
from modelobs.telemetry.otlp_encoding import encode_spans_bytes

SERVER_ATTRIBUTES = {
    "url.scheme": "http",
    "server.address": "127.0.0.1",
    "server.port": 8000,
    "network.protocol.version": "1.1",
    "url.path": "/predict",
    "user_agent.original": "wrk",
    "client.address": "127.0.0.1",
    "client.port": 51234,
    "http.request.method": "POST",
    "modelobs.a": "a",
    "modelobs.b": 1,
}
MODEL_ATTRIBUTES = {"model.name": "iris", "model.version": "1"}


class DropExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def server_span(tracer: trace.Tracer) -> None:
    span = tracer.start_span("POST", None, SpanKind.SERVER, SERVER_ATTRIBUTES)
    token = otel_context.attach(trace.set_span_in_context(span))
    span.update_name("POST /predict")
    span.set_attribute("http.route", "/predict")
    span.set_attribute("http.response.status_code", 200)
    span.set_status(Status(StatusCode.UNSET))
    otel_context.detach(token)
    span.end()


def inference_span(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("model inference", attributes=MODEL_ATTRIBUTES) as span:
        span.set_attribute("modelobs.batch.size", 1)


def child_span(tracer: trace.Tracer) -> None:
    tracer.start_span("child").end()


SHAPES: dict[str, Callable[[trace.Tracer], None]] = {
    "server span": server_span,
    "start_as_current_span": inference_span,
    "start_span + end": child_span,
}


def per_span_us(shape: Callable[[trace.Tracer], None], tracer: trace.Tracer, n: int) -> float:
    start = time.thread_time_ns()
    for _ in range(n):
        shape(tracer)
    return (time.thread_time_ns() - start) / n / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--spans", type=int, default=3000)
    args = parser.parse_args()
    telemetry = build_telemetry(
        "bench-light-spans", span_exporter=DropExporter(), metric_reader=InMemoryMetricReader()
    )
    provider = telemetry.tracer_provider
    assert isinstance(provider, LightTracerProvider)
    sdk_tracer = provider.sdk_provider.get_tracer("modelobs")
    # The same configuration with a sampler equal to the default but not the default's
    # object: what the shortcut for parentbased_always_on saves.
    called = copy.copy(sdk_tracer)
    called.sampler = ParentBased(ALWAYS_ON)  # type: ignore[attr-defined]
    tracers = {
        "sdk": sdk_tracer,
        "light": provider.get_tracer("modelobs"),
        "light, sampler called": LightTracer(called),  # type: ignore[arg-type]
    }
    for name, shape in SHAPES.items():
        times: dict[str, list[float]] = {k: [] for k in tracers}
        for tracer in tracers.values():
            per_span_us(shape, tracer, args.spans)  # warm-up
        for r in range(args.rounds):
            order = list(tracers.items())
            for kind, tracer in order if r % 2 == 0 else reversed(order):
                times[kind].append(per_span_us(shape, tracer, args.spans))
            provider.force_flush()
        sdk, light, called_us = (statistics.median(v) for v in times.values())
        print(
            f"{name:<24} SDK {sdk:6.1f} µs   light {light:6.1f} µs   light/SDK "
            f"{light / sdk:.2f}   light with the sampler called {called_us:6.1f} µs"
        )
    encoding_us(provider, args.rounds)
    telemetry.shutdown()
    return 0


def encoding_us(provider: LightTracerProvider, rounds: int) -> None:
    """What exporting them costs on the export thread: a batch of server and inference
    spans of each kind through our wire encoder and the official one, per span."""
    kept = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(kept))
    batches = {}
    for kind, tracer in (
        ("sdk", provider.sdk_provider.get_tracer("modelobs")),
        ("light", provider.get_tracer("modelobs")),
    ):
        kept.clear()
        for _ in range(128):
            server_span(tracer)
            inference_span(tracer)
        batches[kind] = list(kept.get_finished_spans())
    encoders: dict[str, Callable[[list[Any]], Any]] = {
        "ours": encode_spans_bytes,
        "official": lambda spans: encode_spans(spans).SerializeToString(),
    }
    for name, encode in encoders.items():
        times: dict[str, list[float]] = {k: [] for k in batches}
        for _ in range(rounds * 2):
            for kind, spans in batches.items():
                start = time.thread_time_ns()
                encode(spans)
                times[kind].append((time.thread_time_ns() - start) / len(spans) / 1000)
        sdk, light = (statistics.median(v) for v in times.values())
        print(f"encode one span, {name:<9} SDK {sdk:6.1f} µs   light {light:6.1f} µs")


if __name__ == "__main__":
    sys.exit(main())
