"""The OTLP/gRPC span and log exporters, encoding with our wire encoder (otlp_encoding.py).

Everything else is the SDK's exporter: channel, compression, retries with backoff,
timeouts, its ``otel.sdk.exporter.*`` self-metrics. Only ``_translate_data``, the hook the
gRPC exporter base calls to turn a batch into its request message, is replaced: the bytes
are parsed into the same request message in C (upb), which costs a fraction of building it
object by object in Python. OTLP/HTTP keeps the official encoder (its exporter encodes
inline, with no hook to replace).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .otlp_encoding import encode_logs_bytes, encode_spans_bytes


class FastEncodingSpanExporter(OTLPSpanExporter):
    """OTLPSpanExporter (gRPC) with the wire encoder."""

    def _translate_data(self, data: Sequence[Any]) -> ExportTraceServiceRequest:
        return ExportTraceServiceRequest.FromString(encode_spans_bytes(data))


class FastEncodingLogExporter(OTLPLogExporter):
    """OTLPLogExporter (gRPC) with the wire encoder."""

    def _translate_data(self, data: Sequence[Any]) -> ExportLogsServiceRequest:
        return ExportLogsServiceRequest.FromString(encode_logs_bytes(data))
