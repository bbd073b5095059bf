"""The OTLP sink's record built without re-cleaning attributes equals the SDK's own
(telemetry/log_records.py), and everything the SDK would change still goes through it."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from modelobs.telemetry import log_records

PREDICTION = {
    "event": "prediction",
    "prediction.id": "0193a1b2c3d4",
    "model.version": "3",
    "prediction.class": "churn",
    "prediction.score": 0.91,
    "inference.duration_ms": 0.212,
    "outcome": "success",
    "flag": True,
    "rows": 1,
}


def _provider(limits: LogRecordLimits | None = None) -> tuple[LoggerProvider, Any]:
    provider = LoggerProvider(resource=Resource.create({"service.name": "t"}))
    exporter = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    if limits is not None:
        provider._log_record_limits = limits  # the limits its loggers are built with
    return provider, exporter


def _fields(record: Any) -> dict[str, Any]:
    log = record.log_record
    return {
        "timestamp": log.timestamp,
        "trace_id": log.trace_id,
        "span_id": log.span_id,
        "trace_flags": log.trace_flags,
        "severity_text": log.severity_text,
        "severity_number": log.severity_number,
        "body": log.body,
        "attributes": dict(log.attributes or {}),
        "attribute_types": {k: type(v) for k, v in (log.attributes or {}).items()},
        "dropped": record.dropped_attributes,
        "event_name": log.event_name,
        "resource": record.resource.attributes,
        "scope": record.instrumentation_scope,
    }


def _emit_both(
    attributes: dict[str, Any], exception: BaseException | None = None, **limits: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    out = []
    for fast in (False, True):
        provider, exporter = _provider(LogRecordLimits(**limits) if limits else None)
        logger = provider.get_logger("modelobs.apps")
        fields = {
            "timestamp": 1_700_000_000_123_456_789,
            "severity_number": SeverityNumber.INFO,
            "severity_text": "INFO",
            "body": "prediction 0193a1b2c3d4",
            "attributes": dict(attributes),
            "exception": exception,
        }
        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("request") as span:
            if fast:
                log_records.emit(logger, **fields)
            else:
                logger.emit(**fields)
        (record,) = exporter.get_finished_logs()
        got = _fields(record)
        # Each run has its own span: the record must name the span it was logged in.
        context = span.get_span_context()
        assert (got.pop("trace_id"), got.pop("span_id")) == (context.trace_id, context.span_id)
        out.append(got)
    return out[0], out[1]


def test_a_prediction_record_equals_the_sdks() -> None:
    sdk, ours = _emit_both(PREDICTION)
    assert ours == sdk
    assert ours["attributes"] == PREDICTION
    # ... and it was built here, not by the SDK's cleaning path.
    assert log_records._trusted(PREDICTION, LogRecordLimits()) is not None


@pytest.mark.parametrize(
    ("attributes", "limits"),
    [
        ({"ids": ["a", "b"]}, {}),  # a list: the SDK makes it a tuple
        (PREDICTION, {"max_log_record_attributes": 3}),  # over the count limit
        (PREDICTION, {"max_log_record_attribute_length": 4}),  # strings truncated
        ({"": "empty key"}, {}),
    ],
)
def test_what_the_sdk_would_change_goes_through_the_sdk(
    attributes: dict[str, Any], limits: dict[str, Any]
) -> None:
    assert log_records._trusted(attributes, LogRecordLimits(**limits)) is None
    sdk, ours = _emit_both(attributes, **limits)
    assert ours == sdk


def test_an_exception_gets_the_sdks_exception_attributes() -> None:
    try:
        raise ValueError("bad row")
    except ValueError as exc:
        sdk, ours = _emit_both({"event": "request_failed"}, exception=exc)
    assert ours == sdk
    assert ours["attributes"]["exception.type"] == "ValueError"


def test_outside_a_span_the_record_has_no_trace() -> None:
    provider, exporter = _provider()
    log_records.emit(
        provider.get_logger("x"),
        timestamp=1,
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        body="no span",
        attributes={"event": "x"},
        exception=None,
    )
    (record,) = exporter.get_finished_logs()
    assert record.log_record.trace_id == trace.INVALID_TRACE_ID
    assert record.log_record.attributes == {"event": "x"}
