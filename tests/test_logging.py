"""loguru and stdlib logs take one path: one JSON line on stdout and one OTel record each,
with the active span's ids; the exporters' own logs are never exported (no feedback loop).
Per-request records (log_event) go to OTLP only while logs are exported, as the record
loguru's path exports."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import pytest
from loguru import logger
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from modelobs.telemetry import build_telemetry, configure_logging, current_telemetry
from modelobs.telemetry.logs import log_event

from .servers import captured


def test_stdlib_and_loguru_records_are_exported_once_with_trace_ids() -> None:
    cap = captured("model-service")
    stdout = io.StringIO()
    configure_logging(stream=stdout)
    token = current_telemetry.set(cap.telemetry)
    try:
        with cap.telemetry.tracer.start_as_current_span("work") as span:
            logging.getLogger("uvicorn.error").warning("from the stdlib %s", "logger")
            logger.bind(event="custom", count=3, nested={"a": 1}).info("from loguru")
        logging.getLogger("opentelemetry.exporter").error("export failed")
    finally:
        current_telemetry.reset(token)
        configure_logging()
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert [line["message"] for line in lines] == [
        "from the stdlib logger",
        "from loguru",
        "export failed",
    ]
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert lines[0]["trace_id"] == trace_id and lines[0]["logger"] == "uvicorn.error"
    assert lines[0]["service.name"] == "model-service"
    assert lines[1]["count"] == 3 and lines[1]["nested"] == {"a": 1}

    records = cap.log_records()
    assert [r.body for r in records] == ["from the stdlib logger", "from loguru"]
    assert records[0].severity_text == "WARN"
    assert all(r.trace_id == span.get_span_context().trace_id for r in records)
    assert records[1].attributes["count"] == 3  # flattened, not one "extra" map
    assert records[1].attributes["nested"] == '{"a":1}'
    cap.telemetry.shutdown()


class _ComplainingProcessor(LogRecordProcessor):
    """Logs through an SDK logger from inside the OTLP sink's emit, as the SDK itself does
    (its "Shutdown called, ignoring Log." after shutdown, an exporter's complaints)."""

    def on_emit(self, log_record: object) -> None:
        logging.getLogger("opentelemetry.sdk._shared_internal").warning("ignoring Log.")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_the_sdks_own_logs_from_inside_the_otlp_sink_go_to_stdout_only(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A record the SDK logs while the OTLP sink is emitting must reach stdout without
    re-entering the sink: loguru refuses that with a "Logging error" traceback on stderr, as
    every stopping service printed before."""
    cap = captured("model-service")
    cap.telemetry.logger_provider.add_log_record_processor(_ComplainingProcessor())
    stdout = io.StringIO()
    configure_logging(stream=stdout)
    token = current_telemetry.set(cap.telemetry)
    try:
        logging.getLogger("uvicorn.error").info("Finished server process")
    finally:
        current_telemetry.reset(token)
        configure_logging()
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert sorted((line["logger"], line["message"]) for line in lines) == [
        ("opentelemetry.sdk._shared_internal", "ignoring Log."),
        ("uvicorn.error", "Finished server process"),
    ]
    assert "Logging error" not in capfd.readouterr().err
    assert [r.body for r in cap.log_records()] == ["Finished server process"]
    cap.telemetry.shutdown()


def _logged(
    telemetry: Any, per_request_on_stdout: bool, log: Callable[[], None]
) -> list[dict[str, Any]]:
    """The JSON lines written to stdout while ``log`` runs as ``telemetry``'s service."""
    stdout = io.StringIO()
    configure_logging(stream=stdout, per_request_on_stdout=per_request_on_stdout)
    token = current_telemetry.set(telemetry)
    try:
        log()
    finally:
        current_telemetry.reset(token)
        configure_logging()
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def test_a_per_request_record_goes_to_stdout_only_when_logs_are_not_exported_or_asked() -> None:
    def log() -> None:
        logger.info("serving")  # any other record: both sinks
        log_event("INFO", __name__, "prediction p-1", {"event": "prediction"})

    exporting = captured("model-service")
    lines = _logged(exporting.telemetry, False, log)
    assert [line["message"] for line in lines] == ["serving"]
    assert [r.body for r in exporting.log_records()] == ["serving", "prediction p-1"]
    exporting.telemetry.shutdown()

    asked = captured("model-service")
    lines = _logged(asked.telemetry, True, log)
    assert [line["message"] for line in lines] == ["serving", "prediction p-1"]
    assert [r.body for r in asked.log_records()] == ["serving", "prediction p-1"]
    asked.telemetry.shutdown()

    # With OTLP logs off, nothing would leave the process: every record goes to stdout.
    os.environ["OTEL_LOGS_EXPORTER"] = "none"
    try:
        silent = build_telemetry("model-service", metric_reader=InMemoryMetricReader())
    finally:
        del os.environ["OTEL_LOGS_EXPORTER"]
    assert not silent.exports_logs
    lines = _logged(silent, False, log)
    assert [line["message"] for line in lines] == ["serving", "prediction p-1"]
    silent.shutdown()


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_log_event_exports_what_loguru_would(level: str) -> None:
    """Straight through the SDK logger (stdout not asked) or through loguru (asked): what is
    exported must be the same record, field by field."""
    fields = {"event": "prediction", "prediction.id": "p-1", "prediction.score": 0.93, "n": 3}
    exported = {}
    for on_stdout in (True, False):  # loguru's path, the direct one
        cap = captured("model-service")

        def log(cap: Any = cap) -> None:
            with cap.telemetry.tracer.start_as_current_span("request"):
                log_event(level, __name__, "prediction p-1", dict(fields))

        lines = _logged(cap.telemetry, on_stdout, log)
        assert len(lines) == (1 if on_stdout else 0)
        (record,) = cap.log_records()
        (entry,) = cap.logs.get_finished_logs()
        (span,) = cap.finished_spans(servers=0)
        assert record.trace_id == span.context.trace_id
        assert record.span_id == span.context.span_id
        exported[on_stdout] = (
            record.body,
            record.severity_number,
            record.severity_text,
            dict(record.attributes),
            entry.instrumentation_scope.name,
        )
        cap.telemetry.shutdown()
    assert exported[True] == exported[False]
    assert exported[False][3] == fields
    assert exported[False][4] == __name__
