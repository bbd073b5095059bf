"""Spans and log records queued encoded as they end (pre_encoding.py) reach a real gRPC OTLP
receiver as the official encoder would have sent them, without being encoded again at
export, through the exporters' bytes stub (exporters.py)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from modelobs.telemetry import otlp_encoding
from modelobs.telemetry.exporters import FastEncodingLogExporter, FastEncodingSpanExporter
from modelobs.telemetry.pre_encoding import (
    Encoded,
    PreEncodingBatchLogRecordProcessor,
    PreEncodingBatchSpanProcessor,
)
from modelobs.telemetry.providers import build_telemetry, span_processor_for


class _Receiver(
    trace_service_pb2_grpc.TraceServiceServicer, logs_service_pb2_grpc.LogsServiceServicer
):
    """An OTLP/gRPC receiver keeping every request it is sent."""

    def __init__(self) -> None:
        self.traces: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.logs: list[logs_service_pb2.ExportLogsServiceRequest] = []

    def Export(self, request: Any, context: Any) -> Any:
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            self.traces.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()
        self.logs.append(request)
        return logs_service_pb2.ExportLogsServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[_Receiver, str]]:
    received = _Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(received, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield received, f"127.0.0.1:{port}"
    server.stop(grace=None)


def _encode_forbidden(*_args: Any) -> bytes:
    raise AssertionError("an item was encoded again at export")


class _NotesItemTypes:
    """Mixed into a gRPC exporter: notes the types of the items it is handed."""

    item_types: frozenset[type] = frozenset()

    def _translate_data(self, data: Any) -> bytes:
        self.item_types = frozenset(type(item) for item in data)
        return super()._translate_data(data)  # type: ignore[misc]


class _SpanItems(_NotesItemTypes, FastEncodingSpanExporter):
    pass


class _LogItems(_NotesItemTypes, FastEncodingLogExporter):
    pass


def test_spans_arrive_as_the_official_encoder_sends_them_encoded_once(
    receiver: tuple[_Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, endpoint = receiver
    exporter = _SpanItems(endpoint=endpoint, insecure=True)
    telemetry = build_telemetry("pre-encoding-test", span_exporter=exporter)
    kept = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = telemetry.tracer
    with tracer.start_as_current_span(
        "POST /predict", kind=SpanKind.SERVER, attributes={"http.route": "/predict", "n": 3}
    ) as server:
        server.add_event("event", {"k": "v"})
        with tracer.start_as_current_span("model inference") as child:
            child.set_status(Status(StatusCode.ERROR, "boom"))
    spans = kept.get_finished_spans()
    # From here on, encoding a span fails: the export must send what was encoded at the end.
    monkeypatch.setattr(otlp_encoding, "encode_span", _encode_forbidden)
    assert telemetry.tracer_provider.force_flush(10_000)
    telemetry.shutdown()
    (request,) = received.traces
    assert request == encode_spans(spans)
    assert exporter.item_types == {Encoded}  # the queue held bytes, not the spans


def test_log_records_arrive_as_the_official_encoder_sends_them_encoded_once(
    receiver: tuple[_Receiver, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    received, endpoint = receiver
    exporter = _LogItems(endpoint=endpoint, insecure=True)
    telemetry = build_telemetry("pre-encoding-test", log_exporter=exporter)
    kept = InMemoryLogRecordExporter()
    telemetry.logger_provider.add_log_record_processor(SimpleLogRecordProcessor(kept))
    logger = telemetry.logger_provider.get_logger("modelobs", "0.1")
    with telemetry.tracer.start_as_current_span("in a span"):
        logger.emit(
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            body="prediction",
            attributes={"event": "prediction", "prediction.score": 0.93},
        )
    logger.emit(severity_number=SeverityNumber.WARN, body="no span", event_name="my.event")
    records = kept.get_finished_logs()
    monkeypatch.setattr(otlp_encoding, "encode_log", _encode_forbidden)
    assert telemetry.logger_provider.force_flush(10_000)
    telemetry.shutdown()
    (request,) = received.logs
    assert request == encode_logs(records)
    assert exporter.item_types == {Encoded}
    assert [r.trace_id != 0 for r in (rec.log_record for rec in records)] == [True, False]


def test_an_exporter_without_the_wire_encoder_gets_the_sdk_processor() -> None:
    assert span_processor_for(InMemorySpanExporter()) is BatchSpanProcessor
    wire = FastEncodingSpanExporter(endpoint="127.0.0.1:1", insecure=True)
    assert span_processor_for(wire) is PreEncodingBatchSpanProcessor
    telemetry = build_telemetry(
        "pre-encoding-test",
        log_exporter=FastEncodingLogExporter(endpoint="127.0.0.1:1", insecure=True),
    )
    processors = telemetry.logger_provider._multi_log_record_processor._log_record_processors
    assert any(type(p) is PreEncodingBatchLogRecordProcessor for p in processors)
    telemetry.shutdown(timeout_s=1)
