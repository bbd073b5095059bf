"""What `make up` prints once telemetry flows: a recent kept trace from Jaeger, its log
records from the log store (VictoriaLogs), and the request rate and p99 of each service from
Prometheus; plus the query helpers the end-to-end tests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

# The query helpers live with the drills (the modelobs package); the tests import them here.
from modelobs.drills.backends import iter_spans, logs_query, prom_query, trace_logs_query

__all__ = ["iter_spans", "logs_query", "prom_query", "summary", "trace_logs_query"]

RATE_QUERY = (
    "sum by (service_name) (rate(http_server_request_duration_seconds_count"
    '{http_route!~"/healthz|/readyz"}[1m]))'
)
P99_QUERY = (
    "histogram_quantile(0.99, sum by (service_name, le) (rate("
    'http_server_request_duration_seconds_bucket{http_route!~"/healthz|/readyz"}[1m])))'
)


def jaeger_recent_trace(query_url: str, service: str = "gateway") -> tuple[str, int] | None:
    """(trace id, span count) of the most recent kept trace of ``service``, or None."""
    now = datetime.now(UTC)
    params = {
        "query.service_name": service,
        "query.start_time_min": (now - timedelta(minutes=15)).isoformat(),
        "query.start_time_max": (now + timedelta(minutes=1)).isoformat(),
        "query.num_traces": "20",
    }
    response = httpx.get(f"{query_url}/api/v3/traces", params=params, timeout=5)
    if response.status_code != 200:
        return None
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in iter_spans(response.json()):
        by_trace.setdefault(span["traceId"], []).append(span)
    # Prefer traces whose model-service spans arrived too (each SDK exports on its own timer).
    complete = {t: s for t, s in by_trace.items() if len({x["_service"] for x in s}) > 1}
    candidates = complete or by_trace
    if not candidates:
        return None
    trace_id = max(
        candidates, key=lambda t: max(int(x.get("startTimeUnixNano", 0)) for x in candidates[t])
    )
    return trace_id, len(candidates[trace_id])


def summary(
    jaeger_url: str,
    prom_url: str,
    logs_url: str,
    timeout_s: float = 120.0,
    say: Callable[[str], object] = print,
) -> bool:
    """Wait (bounded) until a trace is in Jaeger with its logs in the log store, and rate and
    p99 of both services are in Prometheus; print them. False when something is still
    missing at the deadline."""
    deadline = time.monotonic() + timeout_s
    trace, logs, rates, p99s = None, [], [], []
    while time.monotonic() < deadline:
        try:
            trace = trace or jaeger_recent_trace(jaeger_url)
            logs = logs_query(logs_url, trace_logs_query(trace[0])) if trace else []
            rates = prom_query(prom_url, RATE_QUERY)
            p99s = [r for r in prom_query(prom_url, P99_QUERY) if r["value"][1] != "NaN"]
        except httpx.HTTPError:
            pass
        if trace and logs and len(rates) >= 2 and len(p99s) >= 2:  # gateway and model-service
            break
        time.sleep(2)
    if trace:
        say(
            f"  recent trace    {trace[0]} ({trace[1]} spans): "
            f"{jaeger_url}/api/v3/traces/{trace[0]}"
        )
    if logs:
        services = ", ".join(sorted({str(r.get("service.name")) for r in logs}))
        url = f"{logs_url}/select/logsql/query?query={trace_logs_query(trace[0])}"
        say(f"  its logs        {len(logs)} records ({services}): curl -s '{url}'")
    for r in rates:
        say(f"  request rate    {r['metric'].get('service_name')}: {float(r['value'][1]):.2f}/s")
    for r in p99s:
        say(
            f"  p99 latency     {r['metric'].get('service_name')}: "
            f"{float(r['value'][1]) * 1000:.1f} ms"
        )
    if not (trace and logs and rates and p99s):
        missing = [
            n
            for n, v in (("trace", trace), ("logs", logs), ("rate", rates), ("p99", p99s))
            if not v
        ]
        say(f"  telemetry not complete after {timeout_s:.0f}s: no {', '.join(missing)} yet")
        return False
    return True
