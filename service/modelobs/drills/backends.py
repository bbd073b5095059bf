"""The stack's query APIs, as the drill and the trace view read them (plain HTTP, no SDKs).

Defaults are the native stack's default ports (docs/contract.md); every one can be given.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Backends:
    prometheus: str = "http://127.0.0.1:9090"
    alertmanager: str = "http://127.0.0.1:9093"
    jaeger: str = "http://127.0.0.1:16686"
    logs: str = "http://127.0.0.1:9428"
    webhook: str | None = "http://127.0.0.1:9099"


def iter_spans(payload: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Every span of a Jaeger v3 answer (OTLP JSON under ``result``), with its service name
    added as ``_service``."""
    for resource_spans in payload.get("result", {}).get("resourceSpans", []):
        attributes = resource_spans.get("resource", {}).get("attributes", [])
        service = next(
            (a["value"].get("stringValue") for a in attributes if a.get("key") == "service.name"),
            None,
        )
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                yield {**span, "_service": service}


def prom_query(prom_url: str, query: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prom_url}/api/v1/query", params={"query": query}, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()["data"]["result"]


def logs_query(logs_url: str, query: str, limit: int = 1000) -> list[dict[str, Any]]:
    """Log records matching a LogsQL ``query`` (VictoriaLogs answers one JSON object per
    line: ``_msg``, ``_time``, resource and log attributes by their OTel names, ``trace_id``,
    ``span_id``, ``severity_text``, ``severity_number``)."""
    response = httpx.get(
        f"{logs_url}/select/logsql/query",
        params={"query": query, "limit": limit},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def trace_logs_query(trace_id: str) -> str:
    """The LogsQL query for every log record of one trace."""
    return f"trace_id:{trace_id}"


def exemplars(prom_url: str, selector: str, window_s: float = 600) -> list[dict[str, Any]]:
    """Exemplars of ``selector`` over the last ``window_s``: each with ``trace_id``,
    ``value``, ``timestamp`` and the series' labels (newest first)."""
    now = time.time()
    response = httpx.get(
        f"{prom_url}/api/v1/query_exemplars",
        params={"query": selector, "start": now - window_s, "end": now},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    found = []
    for series in response.json()["data"] or []:
        for exemplar in series.get("exemplars", []):
            trace_id = exemplar.get("labels", {}).get("trace_id")
            if trace_id:
                found.append(
                    {
                        "trace_id": trace_id,
                        "value": float(exemplar["value"]),
                        "timestamp": float(exemplar["timestamp"]),
                        "series": series["seriesLabels"],
                    }
                )
    return sorted(found, key=lambda e: -e["timestamp"])


def jaeger_trace(jaeger_url: str, trace_id: str) -> list[dict[str, Any]]:
    """The spans Jaeger has for ``trace_id`` ([] when it has none)."""
    response = httpx.get(f"{jaeger_url}/api/v3/traces/{trace_id}", timeout=TIMEOUT_S)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(iter_spans(response.json()))


def jaeger_find(
    jaeger_url: str, service: str, tags: dict[str, str], lookback: str = "15m", limit: int = 20
) -> list[str]:
    """Trace ids of ``service`` with spans carrying every tag in ``tags``, newest first
    (Jaeger's HTTP query API, which filters by span attributes)."""
    response = httpx.get(
        f"{jaeger_url}/api/traces",
        params={
            "service": service,
            "tags": json.dumps(tags),
            "lookback": lookback,
            "limit": limit,
        },
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    traces = response.json().get("data") or []

    def started(t: dict[str, Any]) -> int:
        return max((s.get("startTime", 0) for s in t.get("spans", [])), default=0)

    return [t["traceID"] for t in sorted(traces, key=started, reverse=True)]


def alertmanager_alerts(am_url: str, alertname: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{am_url}/api/v2/alerts",
        params={"filter": f'alertname="{alertname}"', "active": "true"},
        timeout=TIMEOUT_S,
    )
    response.raise_for_status()
    return response.json()


def webhook_payloads(webhook_url: str) -> list[dict[str, Any]]:
    """What the alert webhook receiver (deploy/alert-webhook) was sent, oldest first."""
    response = httpx.get(f"{webhook_url}/alerts", timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()
