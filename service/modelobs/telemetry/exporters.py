"""The OTLP/gRPC span and log exporters, sending the bytes of our wire encoder
(otlp_encoding.py) as the request.

Everything else is the SDK's exporter: channel, compression, retries with backoff,
timeouts, its ``otel.sdk.exporter.*`` self-metrics. Two hooks are replaced:
``_translate_data``, which turns a batch into the request, returns the serialized request;
and the stub's ``Export``, built on the same channel with the same method path and response
type, takes those bytes as they are (gRPC's serializer left out), instead of a message the
stub would serialize again: parsing the bytes into a message and serializing it back cost
the export thread ~0.33 ms of GIL-holding C per 512 spans and ~0.19 ms per 256 log records,
for nothing (bench/README.md, issue 14). OTLP/HTTP keeps the official encoder (its exporter
encodes inline, with no hook to replace).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .otlp_encoding import encode_logs_bytes, encode_spans_bytes


class _SendsWireBytes:
    """Mixed into an SDK gRPC exporter: its stub's ``Export`` takes the serialized request
    (same channel, method path and response type as the generated stub), and the request is
    the wire encoder's bytes."""

    sends_pre_encoded = True  # pre_encoding.SENDS_PRE_ENCODED
    _method: str
    _response: Any
    _encode: Callable[[Sequence[Any]], bytes]
    _channel: grpc.Channel

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()  # type: ignore[misc]
        self._client = SimpleNamespace(
            Export=self._channel.unary_unary(
                self._method,
                response_deserializer=self._response.FromString,
                _registered_method=True,
            )
        )

    def _translate_data(self, data: Sequence[Any]) -> bytes:
        return self._encode(data)


class FastEncodingSpanExporter(_SendsWireBytes, OTLPSpanExporter):
    """OTLPSpanExporter (gRPC) sending the wire encoder's bytes."""

    _method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    _response = ExportTraceServiceResponse
    _encode = staticmethod(encode_spans_bytes)


class FastEncodingLogExporter(_SendsWireBytes, OTLPLogExporter):
    """OTLPLogExporter (gRPC) sending the wire encoder's bytes."""

    _method = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
    _response = ExportLogsServiceResponse
    _encode = staticmethod(encode_logs_bytes)
