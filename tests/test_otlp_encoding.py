"""Our OTLP wire encoder (telemetry/otlp_encoding.py) gives, message for message, what the
official encoder gives: spans and log records of every shape, several resources and scopes."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState

from modelobs.telemetry.otlp_encoding import (
    _LOG_ATTRIBUTES,
    VOLATILE_AFTER,
    encode_logs_bytes,
    encode_spans_bytes,
    varint,
)

EVERY_TYPE = {
    "s": "text é",
    "empty": "",
    "yes": True,
    "no": False,
    "zero": 0,
    "i": 42,
    "neg": -7,
    "big": 2**62,
    "f": 0.25,
    "fneg": -1e-300,
    "strs": ("a", "b"),
    "ints": [1, -2, 3],
    "floats": [0.5],
    "bools": [True, False],
    "nothing": [],
}


def _provider(resource: Resource, limits: SpanLimits | None = None):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _spans() -> list:
    first, first_out = _provider(Resource.create({"service.name": "a", "n": 1}))
    second, second_out = _provider(
        Resource({"service.name": "b"}, schema_url="https://opentelemetry.io/schemas/1.21.0"),
        SpanLimits(max_span_attributes=3, max_events=1, max_links=1),
    )
    scoped = first.get_tracer(
        "scope.one",
        "1.2.3",
        schema_url="https://opentelemetry.io/schemas/1.24.0",
        attributes={"scope.attr": "x"},
    )
    plain = first.get_tracer("scope.two")
    remote = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "v1"), ("other", "o2")]),
    )
    local_link = SpanContext(trace_id=1, span_id=2, is_remote=False)
    with scoped.start_as_current_span(
        "POST /predict",
        context=trace.set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes=EVERY_TYPE,
        links=[Link(remote, {"link.kind": "follows"}), Link(local_link)],
    ) as server:
        server.add_event("no attributes")
        server.add_event("with", {"k": "v", "n": 3}, timestamp=1_700_000_000_000_000_000)
        with plain.start_as_current_span("model inference") as child:
            child.set_status(Status(StatusCode.OK))
        try:
            raise ValueError("boom")
        except ValueError as exc:
            server.record_exception(exc)
            server.set_status(Status(StatusCode.ERROR, "ValueError"))
    for kind in (SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.INTERNAL):
        with second.get_tracer("limited").start_as_current_span(
            f"{kind.name}", kind=kind, attributes={f"a{i}": i for i in range(5)}
        ) as span:
            span.add_event("one")
            span.add_event("two")  # over max_events: counted as dropped
            span.set_status(Status(StatusCode.ERROR))
    # A resource equal to the first one but another object (a second provider of one
    # service): the official encoder groups its spans with the first's.
    twin, twin_out = _provider(Resource.create({"service.name": "a", "n": 1}))
    with twin.get_tracer("scope.two").start_as_current_span("twin"):
        pass
    spans = [
        *first_out.get_finished_spans(),
        *second_out.get_finished_spans(),
        *twin_out.get_finished_spans(),
    ]
    # Interleaved, so grouping by resource and scope is exercised.
    return spans[::2] + spans[1::2]


def test_spans_encode_as_the_official_encoder_does() -> None:
    spans = _spans()
    official = encode_spans(spans)
    ours = ExportTraceServiceRequest.FromString(encode_spans_bytes(spans))
    assert ours == official
    assert ours.SerializeToString(deterministic=True) == official.SerializeToString(
        deterministic=True
    )
    dropped = [s for rs in ours.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert any(s.dropped_attributes_count for s in dropped)
    assert any(s.dropped_events_count for s in dropped)
    # A second batch reuses cached resources, scopes and attributes: still equal.
    assert ExportTraceServiceRequest.FromString(encode_spans_bytes(spans[:3])) == encode_spans(
        spans[:3]
    )


def test_log_records_encode_as_the_official_encoder_does() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "a"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("modelobs", "0.1")
    other = provider.get_logger("other")
    tracer_provider, _ = _provider(Resource.create({}))
    with tracer_provider.get_tracer("t").start_as_current_span("in a span"):
        logger.emit(
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body="prediction 1",
            attributes={"event": "prediction", "prediction.score": 0.93, **EVERY_TYPE},
            timestamp=1_700_000_000_123_456_789,
        )
    logger.emit(body={"structured": [1, "two"], "nested": {"k": None}}, event_name="my.event")
    other.emit(severity_number=SeverityNumber.ERROR, body=None, exception=ValueError("boom"))
    other.emit(body=7, severity_text="WARN")
    records = list(exporter.get_finished_logs())
    official = encode_logs(records)
    ours = ExportLogsServiceRequest.FromString(encode_logs_bytes(records))
    assert ours == official
    assert ours.SerializeToString(deterministic=True) == official.SerializeToString(
        deterministic=True
    )


def test_an_attribute_that_cannot_be_encoded_is_skipped_as_upstream_does(caplog) -> None:
    provider, exporter = _provider(Resource.create({}))
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("ok", 1)
    (finished,) = exporter.get_finished_spans()
    finished._attributes = {"ok": 1, "bad": object()}  # what a buggy processor could leave
    with caplog.at_level(logging.ERROR):
        ours = ExportTraceServiceRequest.FromString(encode_spans_bytes([finished]))
    (encoded,) = ours.resource_spans[0].scope_spans[0].spans
    assert [kv.key for kv in encoded.attributes] == ["ok"]
    assert ours == encode_spans([finished])


def test_varint_matches_protobuf() -> None:
    for value, expected in [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02")]:
        assert varint(value) == expected
    assert varint(-1) == b"\xff" * 9 + b"\x01"


def test_a_key_whose_values_do_not_repeat_is_encoded_fresh_and_equal() -> None:
    """Past VOLATILE_AFTER distinct values a key skips the cache; its bytes must not change,
    nor those of the keys around it, whose values still come from the cache."""
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "a"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("modelobs")
    for i in range(VOLATILE_AFTER + 50):
        logger.emit(
            body=f"prediction {i}",
            attributes={"event": "prediction", "prediction.id": f"p-{i}", "score": i / 7},
        )
    records = list(exporter.get_finished_logs())
    ours = ExportLogsServiceRequest.FromString(encode_logs_bytes(records))
    assert ours == encode_logs(records)
    assert {"prediction.id", "score"} <= _LOG_ATTRIBUTES._volatile
    assert "event" not in _LOG_ATTRIBUTES._volatile
    # Once volatile, later batches are still equal.
    assert ExportLogsServiceRequest.FromString(encode_logs_bytes(records[-5:])) == encode_logs(
        records[-5:]
    )
