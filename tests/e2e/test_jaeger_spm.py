"""Jaeger's Monitor tab (service performance monitoring): its metrics API answers calls,
latencies and errors of the model service from the collector's span metrics in Prometheus."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from ..waiting import poll_until
from .conftest import E2EStack

pytestmark = pytest.mark.e2e

SERVICE = "model-service"


def points(family: dict) -> list[float]:
    """Every finite value of a Jaeger MetricFamily (JSON of jaeger's metrics proto)."""
    values = []
    for metric in family.get("metrics") or []:
        for point in metric.get("metricPoints") or []:
            value = (point.get("gaugeValue") or {}).get("doubleValue")
            if value is not None and math.isfinite(float(value)):
                values.append(float(value))
    return values


def monitor(e2e: E2EStack, what: str, **params: str) -> list[float]:
    """GET /api/metrics/<what> for the model service's server spans over the last 5 minutes,
    as the Monitor tab asks; waits until it has a data point."""
    query = {
        "service": SERVICE,
        "spanKind": "server",
        "lookback": "300000",
        "step": "15000",
        "ratePer": "60000",
        **params,
    }
    fetched: list[dict] = [{}]

    def values_now() -> list[float]:
        query["endTs"] = str(int(time.time() * 1000))
        response = httpx.get(f"{e2e.jaeger_url}/api/metrics/{what}", params=query, timeout=10)
        assert response.status_code == 200, f"{what}: HTTP {response.status_code} {response.text}"
        fetched[0] = response.json()
        return points(fetched[0])

    values = poll_until(values_now, 60, poll_s=2)
    family = fetched[0]
    assert values, f"{what}: no data points after 60 s: {family}\n{e2e.log_tail('jaeger')}"
    labels = {
        label["value"]
        for metric in family["metrics"]
        for label in metric.get("labels", [])
        if label.get("name") == "service_name"
    }
    assert labels == {SERVICE}, labels
    return values


def test_monitor_tab_call_rate(e2e: E2EStack, traffic: dict) -> None:
    calls = monitor(e2e, "calls")
    assert max(calls) > 0, calls  # the steady load reaches the model service


def test_monitor_tab_p95_latency_in_seconds(e2e: E2EStack, traffic: dict) -> None:
    # The histogram is in seconds (latency_unit: s): a prediction takes milliseconds.
    p95 = monitor(e2e, "latencies", quantile="0.95")
    assert all(0 < v < 10 for v in p95), p95


def test_monitor_tab_error_rate(e2e: E2EStack, traffic: dict) -> None:
    errors = monitor(e2e, "errors")
    assert all(0 <= v <= 1 for v in errors), errors
