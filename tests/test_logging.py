"""loguru and stdlib logs take one path: one JSON line on stdout and one OTel record each,
with the active span's ids; the exporters' own logs are never exported (no feedback loop)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from loguru import logger
from opentelemetry.sdk._logs import LogRecordProcessor

from modelobs.telemetry import configure_logging, current_telemetry

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
