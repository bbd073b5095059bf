"""loguru is the logging API; every record goes to stdout as JSON and to OTLP, except the
per-request ones ``log_event`` writes (one per prediction): while the service exports logs
over OTLP they go there only (``MODELOBS_STDOUT_PREDICTIONS=true``: stdout too), so a
prediction leaves the process once, and start-up lines, warnings and errors still show in
``docker compose logs``.

Both sinks run synchronously in the logging call, so the active span's trace and span ids
are read where the log happened. The OTLP sink only appends to the batch processor's
bounded queue. stdlib loggers (uvicorn, httpx, ...) are routed into loguru, so they take
the same path, and the OTel handler is never attached to the root logger: nothing is
exported twice. ``log_event`` is the per-prediction path: the same record, without
loguru's, when only the OTLP sink takes it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC
from typing import IO, Any

from loguru import logger
from opentelemetry import trace
from opentelemetry.instrumentation.log_utils import std_to_otel

from . import log_records
from .context import active_telemetry

# The exporters' own complaints must not feed back into the exporters.
_NOT_EXPORTED_PREFIXES = ("opentelemetry", "grpc", "urllib3")


def exported(record: Any) -> bool:
    """The OTLP sink's loguru filter. A filter, not a check inside the sink: loguru runs it
    before taking the sink's lock, so a record the SDK logs while the sink is emitting (its
    "Shutdown called, ignoring Log." after shutdown, for one) goes to stdout only instead of
    re-entering the sink, which loguru refuses with a "Logging error" on stderr."""
    return _exported_name(record["name"] or "")


def _exported_name(name: str) -> bool:
    return not name.startswith(_NOT_EXPORTED_PREFIXES)


def _json_default(value: Any) -> Any:
    return str(value)


def _trace_ids() -> tuple[str | None, str | None]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _to_attribute(value: Any) -> Any:
    if isinstance(value, log_records.SCALARS):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, log_records.SCALARS) for v in value):
        return list(value)
    return json.dumps(value, default=_json_default, separators=(",", ":"))


class JsonLineSink:
    """One JSON object per line, with the fields log shippers expect."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, message: Any) -> None:
        record = message.record
        telemetry = active_telemetry()
        trace_id, span_id = _trace_ids()
        line: dict[str, Any] = {
            "time": record["time"].astimezone(UTC).isoformat(timespec="microseconds"),
            "level": record["level"].name,
            "message": record["message"],
            "logger": record["name"],
        }
        if telemetry is not None:
            line["service.name"] = telemetry.service_name
        if trace_id:
            line["trace_id"], line["span_id"] = trace_id, span_id
        line.update(record["extra"])
        if record["exception"] is not None:
            exc = record["exception"]
            line["exception.type"] = getattr(exc.type, "__name__", str(exc.type))
            line["exception.message"] = str(exc.value)
        self._stream.write(json.dumps(line, default=_json_default, separators=(",", ":")) + "\n")


# OTel's severity text for loguru's level names (the logs data model's short names).
_SEVERITY_TEXT = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def otel_sink(message: Any) -> None:
    """Emit the record straight through the SDK logger of the service it belongs to.

    The SDK's ``Logger.emit`` takes the fields as keywords and adds the exception
    attributes itself; going through the logging instrumentation's ``LoggingHandler``
    instead meant building a stdlib ``LogRecord`` per call only for it to be taken apart
    again (measured: ~35 µs of a prediction's ~60 µs OTel log cost, bench/README.md).
    loguru's bound values become one attribute each, not one ``extra`` map.
    """
    record = message.record
    telemetry = active_telemetry()
    if telemetry is None or not telemetry.enabled:
        return
    level = record["level"]
    exc = record["exception"]
    _emit_to_otlp(
        telemetry,
        record["name"] or "modelobs",
        int(record["time"].timestamp() * 1e9),
        level.no,
        level.name,
        record["message"],
        record["extra"],
        exc.value if exc is not None else None,
    )


def _emit_to_otlp(
    telemetry: Any,
    name: str,
    timestamp: int,
    level_no: int,
    level_name: str,
    body: str,
    fields: dict[str, Any],
    exception: BaseException | None,
) -> None:
    """One record through the SDK logger of ``telemetry``'s service, ``name`` its scope: the
    fields one attribute each, converted only when one is not a plain scalar."""
    plain = all(type(value) in log_records.SCALARS for value in fields.values())
    log_records.emit(
        telemetry.sdk_logger(name),
        timestamp=timestamp,
        severity_number=std_to_otel(level_no),
        severity_text=_SEVERITY_TEXT.get(level_name, level_name),
        body=body,
        attributes=fields if plain else {k: _to_attribute(v) for k, v in fields.items()},
        exception=exception,
    )


@dataclass
class _Config:
    """What configure_logging set: the lowest level logged, and whether per-request records
    also go to stdout while the active telemetry exports logs."""

    logged: int = logger.level("INFO").no
    per_request_on_stdout: bool = False


_config = _Config()


def log_event(level: str, name: str, message: str, fields: dict[str, Any]) -> None:
    """``logger.bind(**fields).log(level, message)`` as called from module ``name`` (the
    caller's ``__name__``), for records logged on every request (one per prediction).

    While the telemetry exports logs (and ``per_request_on_stdout`` is off), the record goes
    to OTLP only, emitted straight through the SDK logger as ``otel_sink`` would emit
    loguru's, without loguru's own record (caller frame, local time, thread and process),
    which only the sinks read. Measured as instructions per model request under callgrind
    (bench/README.md): loguru's record alone ~90k of a request's ~3.6M, the JSON line ~130k.
    Otherwise it takes loguru's path to both sinks, as any record does.
    ``tests/test_logging.py`` holds the two paths' OTLP records equal."""
    number = logger.level(level).no
    if number < _config.logged:
        return
    telemetry = active_telemetry()
    if (
        telemetry is None
        or not telemetry.enabled
        or not telemetry.exports_logs
        or _config.per_request_on_stdout
        or not _exported_name(name)
    ):
        logger.opt(depth=1).bind(**fields).log(level, message)
        return
    _emit_to_otlp(telemetry, name, time.time_ns(), number, level, message, fields, None)


class InterceptHandler(logging.Handler):
    """Routes stdlib logging into loguru, keeping the caller's location."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        name = record.name
        logger.patch(lambda r: r.update(name=name)).opt(exception=record.exc_info).log(
            level, record.getMessage()
        )


def configure_logging(
    level: str = "INFO", stream: IO[str] | None = None, per_request_on_stdout: bool = False
) -> None:
    """Idempotent: replaces loguru's sinks and the stdlib root handlers.
    ``per_request_on_stdout``: ``log_event``'s records go to stdout too while logs are
    exported over OTLP."""
    _config.logged = logger.level(level).no
    _config.per_request_on_stdout = per_request_on_stdout
    logger.remove()
    logger.add(JsonLineSink(stream or sys.stdout), level=level, format="{message}")
    logger.add(otel_sink, level=level, format="{message}", filter=exported)
    root = logging.getLogger()
    root.handlers = [InterceptHandler()]
    root.setLevel(level)
    # uvicorn.access is left as uvicorn configured it (off unless --access-log).
    for name in ("uvicorn", "uvicorn.error", "httpx", "httpcore"):
        std = logging.getLogger(name)
        std.handlers = []
        std.propagate = True
    # httpx logs every request at INFO: useful, but the client span already says it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
