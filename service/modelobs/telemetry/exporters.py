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

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .otlp_encoding import encode_logs_bytes, encode_spans_bytes

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def bytes_stub(channel: grpc.Channel, method: str, response: Any) -> SimpleNamespace:
    """A stub with the generated one's ``Export``, whose request is already serialized."""
    return SimpleNamespace(
        Export=channel.unary_unary(
            method, response_deserializer=response.FromString, _registered_method=True
        )
    )


class FastEncodingSpanExporter(OTLPSpanExporter):
    """OTLPSpanExporter (gRPC) sending the wire encoder's bytes."""

    sends_pre_encoded = True  # pre_encoding.SENDS_PRE_ENCODED

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()
        self._client = bytes_stub(self._channel, TRACE_EXPORT, ExportTraceServiceResponse)

    def _translate_data(self, data: Sequence[Any]) -> bytes:  # type: ignore[override]
        return encode_spans_bytes(data)


class FastEncodingLogExporter(OTLPLogExporter):
    """OTLPLogExporter (gRPC) sending the wire encoder's bytes."""

    sends_pre_encoded = True  # pre_encoding.SENDS_PRE_ENCODED

    def _initialize_channel_and_stub(self) -> None:
        super()._initialize_channel_and_stub()
        self._client = bytes_stub(self._channel, LOGS_EXPORT, ExportLogsServiceResponse)

    def _translate_data(self, data: Sequence[Any]) -> bytes:  # type: ignore[override]
        return encode_logs_bytes(data)
