"""A guided drill: switch a fault flag on, then follow what an on-call engineer sees, in order
(alert -> panel query -> exemplar -> trace -> logs), with the real ids and values found;
switch it off and wait for the alert to resolve. Every wait has a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ..flags import store
from ..flags.definitions import OFF
from . import backends as api
from .backends import Backends
from .scenarios import DrillScenario
from .waterfall import FLAG_KEY, attribute_map, render_logs, render_trace

Say = Callable[[str], object]
POLL_S = 2.0


@dataclass
class DrillReport:
    """What the drill found (the tests assert on it as well as on the printed output)."""

    scenario: str
    alert: dict[str, Any] | None = None
    webhook_firing: bool = False
    panel: list[tuple[dict[str, str], float]] = field(default_factory=list)
    exemplar: dict[str, Any] | None = None
    trace_id: str | None = None
    flagged_spans: list[tuple[str, str]] = field(default_factory=list)
    log_records: int = 0
    evidence: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    resolved: bool | None = None
    seconds_to_fire: float | None = None
    seconds_to_resolve: float | None = None


def _wait(check: Callable[[], Any], timeout_s: float) -> Any:
    """``check()``'s first truthy answer within ``timeout_s`` (HTTP errors count as none)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = check()
        except httpx.HTTPError:
            answer = None
        if answer or time.monotonic() >= deadline:
            return answer
        time.sleep(POLL_S)


def _values(rows: list[dict[str, Any]]) -> list[tuple[dict[str, str], float]]:
    return [(r["metric"], float(r["value"][1])) for r in rows]


# Labels every series of a service has: not worth a line of the drill's output.
_COMMON_LABELS = frozenset(
    {
        "__name__", "job", "instance", "otel_scope_name", "otel_scope_version",
        "service_instance_id", "service_namespace", "network_protocol_version", "url_scheme",
    }
)  # fmt: skip


def _labels(metric: dict[str, str]) -> str:
    shown = {k: v for k, v in metric.items() if k not in _COMMON_LABELS}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items())) + "}"


def _for_service(alerts: list[dict[str, Any]], service: str) -> dict[str, Any] | None:
    return next((a for a in alerts if a["labels"].get("service_name") == service), None)


def _webhook_saw(b: Backends, alert: str, service: str, status: str, since: float) -> bool:
    """The webhook receiver got ``alert`` for ``service`` with ``status`` after ``since``."""
    if not b.webhook:
        return False
    for payload in api.webhook_payloads(b.webhook):
        for a in payload.get("alerts", []):
            labels = a.get("labels", {})
            if (
                labels.get("alertname") == alert
                and labels.get("service_name") == service
                and a.get("status") == status
                and _epoch(a.get("endsAt" if status == "resolved" else "startsAt")) >= since - 60
            ):
                return True
    return False


def _epoch(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _flagged(spans: list[dict[str, Any]], flag: str) -> list[tuple[str, str]]:
    return [
        (str(s.get("_service")), s.get("name", ""))
        for s in spans
        if attribute_map(s).get(FLAG_KEY) == flag
    ]


def _candidates(s: DrillScenario, b: Backends) -> list[tuple[str, dict[str, Any] | None]]:
    """Trace ids to look at, each with the exemplar that named it (None: a search hit)."""
    if s.exemplar_selector:
        found = api.exemplars(b.prometheus, s.exemplar_selector)
        if s.exemplar_pick == "slowest":
            found.sort(key=lambda e: -e["value"])
        return [(e["trace_id"], e) for e in found[:10]]
    return [(t, None) for t in api.jaeger_find(b.jaeger, s.service, s.trace_search)[:10]]


def _find_trace(
    s: DrillScenario, b: Backends, report: DrillReport, timeout_s: float
) -> tuple[str, list[dict[str, Any]]] | None:
    """The first candidate trace Jaeger holds with the flag on a span (tail sampling drops
    most traces, and a kept one reaches Jaeger after its decision wait: look again)."""

    def look() -> tuple[str, list[dict[str, Any]]] | None:
        for trace_id, exemplar in _candidates(s, b):
            spans = api.jaeger_trace(b.jaeger, trace_id)
            if _flagged(spans, s.flag):
                report.exemplar = exemplar
                return trace_id, spans
        return None

    return _wait(look, timeout_s)


def run_drill(
    s: DrillScenario,
    b: Backends,
    flags_file: Path,
    *,
    fire_timeout_s: float = 600,
    resolve_timeout_s: float = 600,
    say: Say = print,
    switch_off: bool = True,
) -> DrillReport:
    report = DrillReport(s.name)
    say(f"drill {s.name}: {s.what}")
    say(f"[1/7] switch on: flag {s.flag} = {s.variant} in {flags_file}")
    store.switch(flags_file, s.flag, s.variant)
    started = time.time()
    try:
        _follow(s, b, say, report, started, fire_timeout_s)
    finally:
        if switch_off:
            say(f"[7/7] switch off: flag {s.flag} = {OFF}")
            store.switch(flags_file, s.flag, OFF)
    if switch_off and report.alert is not None:
        off_at = time.time()
        say(f"  waiting for {s.alert} ({s.service}) to resolve (up to {resolve_timeout_s:.0f}s)")
        gone = _wait(
            lambda: (
                _for_service(api.alertmanager_alerts(b.alertmanager, s.alert), s.service) is None
                and (not b.webhook or _webhook_saw(b, s.alert, s.service, "resolved", off_at))
            ),
            resolve_timeout_s,
        )
        report.resolved = bool(gone)
        report.seconds_to_resolve = time.time() - off_at if gone else None
        if gone:
            say(f"  resolved after {report.seconds_to_resolve:.0f}s (Alertmanager and webhook)")
        else:
            say(f"  NOT resolved within {resolve_timeout_s:.0f}s")
    return report


def _follow(
    s: DrillScenario, b: Backends, say: Say, report: DrillReport, started: float, timeout_s: float
) -> None:
    say(
        f"[2/7] alert: waiting for {s.alert} on {s.service} in Alertmanager "
        f"(up to {timeout_s:.0f}s)"
    )
    alert = _wait(
        lambda: _for_service(api.alertmanager_alerts(b.alertmanager, s.alert), s.service),
        timeout_s,
    )
    if not alert:
        say(f"  {s.alert} did not fire within {timeout_s:.0f}s")
        return
    report.alert = alert
    report.seconds_to_fire = time.time() - started
    say(
        f"  FIRING {s.alert} {_labels(alert['labels'])} since {alert.get('startsAt')} "
        f"({report.seconds_to_fire:.0f}s after the switch)"
    )
    say(f"  summary: {alert.get('annotations', {}).get('summary', '')}")
    say(f"  runbook: {alert.get('annotations', {}).get('runbook_url', '')}")
    if b.webhook:
        report.webhook_firing = bool(
            _wait(lambda: _webhook_saw(b, s.alert, s.service, "firing", started), 60)
        )
        say(f"  webhook receiver notified: {'yes' if report.webhook_firing else 'NO'}")

    say(f"[3/7] panel query: {s.panel_query}")
    report.panel = _values(api.prom_query(b.prometheus, s.panel_query))
    for metric, value in report.panel:
        say(f"  {_labels(metric)} = {value:.4g}")
    for title, query in s.evidence:
        rows = _values(api.prom_query(b.prometheus, query))
        report.evidence[title] = rows
        say(f"  {title}: {query}")
        for metric, value in rows:
            say(f"    {_labels(metric)} = {value:.4g}")

    if s.exemplar_selector:
        say(f"[4/7] exemplar: {s.exemplar_pick} exemplar of {s.exemplar_selector}")
    else:
        say(
            f"[4/7] trace search (no exemplar for this signal): Jaeger, "
            f"service={s.service} tags={s.trace_search}"
        )
    found = _find_trace(s, b, report, timeout_s=90)
    if not found:
        say(f"  no kept trace with {s.flag} on a span within 90s")
        return
    trace_id, spans = found
    if report.exemplar is not None:
        e = report.exemplar
        say(f"  exemplar trace_id={trace_id} value={e['value']:.3f} on {_labels(e['series'])}")
    else:
        say(f"  found trace_id={trace_id}")
    report.trace_id = trace_id
    report.flagged_spans = _flagged(spans, s.flag)
    say(f"[5/7] trace {trace_id} (flag {s.flag} on: {report.flagged_spans})")
    for line in render_trace(trace_id, spans):
        say("  " + line)

    query = api.trace_logs_query(trace_id)
    say(f"[6/7] logs: {query}")
    records = _wait(lambda: api.logs_query(b.logs, query), 30) or []
    report.log_records = len(records)
    for line in render_logs(records):
        say(line)
