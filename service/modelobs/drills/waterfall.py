"""A trace drawn in the terminal as a span waterfall (service, span, duration bar, status, the
fault flag on the span), followed by its log lines: the native stack has no trace UI."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

BAR_WIDTH = 40
FLAG_KEY = "feature_flag.key"
FLAG_VARIANT = "feature_flag.result.variant"
_STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}
_STATUS_NAMES = {"STATUS_CODE_UNSET": "UNSET", "STATUS_CODE_OK": "OK", "STATUS_CODE_ERROR": "ERROR"}


def attribute_map(span: dict[str, Any]) -> dict[str, Any]:
    """A span's OTLP JSON attributes as a plain mapping."""
    out: dict[str, Any] = {}
    for attribute in span.get("attributes", []):
        value = attribute.get("value", {})
        out[attribute["key"]] = next(iter(value.values()), None) if value else None
    return out


def status_of(span: dict[str, Any]) -> str:
    code = span.get("status", {}).get("code", 0)
    if isinstance(code, str):
        return _STATUS_NAMES.get(code, code)
    return _STATUS.get(int(code), str(code))


def flag_of(span: dict[str, Any]) -> str:
    """``key=variant`` of the fault flag on the span, or ``""``."""
    attributes = attribute_map(span)
    key = attributes.get(FLAG_KEY)
    return f"{key}={attributes.get(FLAG_VARIANT, '?')}" if key else ""


def _ordered(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Depth-first by start time, with each span's depth (orphans start at depth 0)."""
    ids = {s["spanId"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span.get("parentSpanId") or None
        children.setdefault(parent if parent in ids else None, []).append(span)
    out: list[tuple[int, dict[str, Any]]] = []

    def visit(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: int(s["startTimeUnixNano"])):
            out.append((depth, span))
            visit(span["spanId"], depth + 1)

    visit(None, 0)
    return out


def _bar(start: int, end: int, t0: int, total: int) -> str:
    left = round((start - t0) / total * BAR_WIDTH) if total else 0
    width = max(1, round((end - start) / total * BAR_WIDTH)) if total else 1
    left = min(left, BAR_WIDTH - 1)
    width = min(width, BAR_WIDTH - left)
    return " " * left + "█" * width + " " * (BAR_WIDTH - left - width)


def render_trace(trace_id: str, spans: list[dict[str, Any]]) -> list[str]:
    """The waterfall's lines (no trailing newlines)."""
    if not spans:
        return [f"trace {trace_id}: not found (dropped by tail sampling, or not exported yet)"]
    t0 = min(int(s["startTimeUnixNano"]) for s in spans)
    t1 = max(int(s["endTimeUnixNano"]) for s in spans)
    total = max(t1 - t0, 1)
    services = sorted({str(s.get("_service")) for s in spans})
    lines = [
        f"trace {trace_id}: {len(spans)} spans, {total / 1e6:.1f} ms, "
        f"services: {', '.join(services)}",
        f"{'SERVICE':<15} {'SPAN':<30} {'DURATION':>11}  {'':<{BAR_WIDTH + 2}}  {'STATUS':<6} FLAG",
    ]
    for depth, span in _ordered(spans):
        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        name = ("  " * depth + span.get("name", "?"))[:30]
        lines.append(
            f"{str(span.get('_service'))[:15]:<15} {name:<30} {(end - start) / 1e6:>8.1f} ms"
            f"  |{_bar(start, end, t0, total)}|  {status_of(span):<6} {flag_of(span)}".rstrip()
        )
    return lines


def _clock(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]


def render_logs(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per log record of the trace, oldest first."""
    ordered = sorted(records, key=lambda r: str(r.get("_time", "")))
    if not ordered:
        return ["  (no log records with this trace id in the log store)"]
    lines = []
    for record in ordered:
        level = record.get("severity_text") or record.get("level") or "-"
        extras = " ".join(
            f"{k}={record[k]}"
            for k in ("event", FLAG_KEY, "synthetic_request")
            if record.get(k) not in (None, "")
        )
        lines.append(
            f"  {_clock(record.get('_time'))}  {record.get('service.name')!s:<14} "
            f"{level:<7} {record.get('_msg', '')}" + (f"  [{extras}]" if extras else "")
        )
    return lines
