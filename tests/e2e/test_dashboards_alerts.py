"""Every dashboard query returns data from the real Prometheus, and a latency fault raises the
p99 alert all the way to the webhook receiver."""

from __future__ import annotations

import re
import threading

import httpx
import pytest

from tests.dashboard_queries import DashboardQuery, prometheus_queries
from tests.waiting import poll_until

from .conftest import ALERT, P99_THRESHOLD_S, E2EStack, prom, send

pytestmark = pytest.mark.e2e


def _empty(e2e: E2EStack, queries: list[DashboardQuery]) -> dict[DashboardQuery, str]:
    """The queries that return nothing (or an error), with the reason."""
    empty: dict[DashboardQuery, str] = {}
    for q in queries:
        try:
            if not prom(e2e, q.expr):
                empty[q] = "no data"
        except httpx.HTTPStatusError as exc:
            empty[q] = f"HTTP {exc.response.status_code}: {exc.response.text[:200]}"
    return empty


FAILURE_ONLY = re.compile(r"failed|refused|dropped")
FAILURE_HINT = (
    "counts failures only, so it has no series in a healthy stack and the panel shows "
    "'No data': add `or vector(0)` in the dashboard, or pre-initialise the counter at 0"
)


@pytest.mark.parametrize(
    ("service", "files"),
    [
        # model-health is about the model service; the other dashboards take either service.
        ("model-service", None),
        ("gateway", {"service-overview.json", "telemetry-pipeline.json"}),
    ],
)
def test_every_dashboard_query_returns_data(
    e2e: E2EStack, traffic: dict, service: str, files: set[str] | None
) -> None:
    queries = [
        q
        for q in prometheus_queries(values={"service": service})
        if files is None or q.dashboard_file in files
    ]
    assert queries, "no Prometheus queries found in dashboards/"
    # Rates over [1m] need two scrapes after the traffic: retry the empty ones a few times.
    empty = _empty(e2e, queries)

    def all_answered() -> bool:
        nonlocal empty
        empty = _empty(e2e, list(empty)) if empty else empty
        return not empty

    poll_until(all_answered, timeout_s=30, poll_s=5)
    lines = [
        f"  [{why}] {q.where}"
        + (f"\n      -> {FAILURE_HINT}" if FAILURE_ONLY.search(q.expr) else "")
        for q, why in empty.items()
    ]
    assert not empty, (
        f"{len(empty)} of {len(queries)} dashboard queries (service={service}) return no data "
        "after real traffic (valid, bad inputs, feedback):\n" + "\n".join(lines)
    )


def test_latency_fault_fires_p99_alert_to_alertmanager_and_webhook(e2e: E2EStack) -> None:
    # model-slow runs with inference-latency on for every request (300 ms); the tuned rule
    # fires above 0.2 s.
    stop = threading.Event()

    def drive() -> None:
        with httpx.Client() as client:
            for _ in range(600):  # bounded: at most ~600 requests
                if stop.is_set():
                    return
                send(e2e.slow_gateway_url, client)
                stop.wait(0.1)  # pacing: about 10 requests/s until stopped

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        firing = _wait_alertmanager(e2e, timeout_s=150)
        assert firing["labels"]["severity"] == "warning"
        assert firing["labels"]["service_name"] in ("model-service", "gateway")
        payload = _wait_webhook(e2e, timeout_s=60)
    finally:
        stop.set()
        driver.join(timeout=15)
    alerts = [a for a in payload["alerts"] if a["labels"].get("alertname") == ALERT]
    assert alerts and alerts[0]["status"] == "firing", payload
    assert "p99 latency" in alerts[0]["annotations"]["summary"]


def _wait_alertmanager(e2e: E2EStack, timeout_s: float) -> dict:
    def mine() -> list[dict]:
        alerts = httpx.get(f"{e2e.alertmanager_url}/api/v2/alerts", timeout=5).json()
        return [a for a in alerts if a["labels"].get("alertname") == ALERT]

    found = poll_until(mine, timeout_s, poll_s=2)
    if found:
        return found[0]
    p99 = prom(e2e, "service_name:http_server_request_duration_seconds:p99_rate5m")
    rule_alerts = prom(e2e, f'ALERTS{{alertname="{ALERT}"}}')
    raise AssertionError(
        f"{ALERT} not in Alertmanager after {timeout_s}s (threshold {P99_THRESHOLD_S}s). "
        f"p99 per service: {[(r['metric'], r['value'][1]) for r in p99]}; "
        f"ALERTS in Prometheus: {rule_alerts}; prometheus log:\n{e2e.log_tail('prometheus')}"
    )


def _wait_webhook(e2e: E2EStack, timeout_s: float) -> dict:
    def delivered() -> dict | None:
        for payload in httpx.get(f"{e2e.webhook_url}/alerts", timeout=5).json():
            if any(a["labels"].get("alertname") == ALERT for a in payload.get("alerts", [])):
                return payload
        return None

    payload = poll_until(delivered, timeout_s, poll_s=2)
    if payload:
        return payload
    raise AssertionError(
        f"{ALERT} reached Alertmanager but not the webhook receiver after {timeout_s}s; "
        f"alertmanager log:\n{e2e.log_tail('alertmanager')}"
    )
