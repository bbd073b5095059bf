"""Metrics in the real Prometheus (services, model, span metrics, exemplars) and logs in the
collector's log pipeline."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.waiting import wait_until

from .conftest import E2EStack, jaeger_trace, send, wait_for_series

pytestmark = pytest.mark.e2e

NO_PROBES = 'http_route!~"/healthz|/readyz"'
SERVICES = ("gateway", "model-service")


@pytest.mark.parametrize("service", SERVICES)
def test_red_metrics_of_each_service(e2e: E2EStack, traffic: dict, service: str) -> None:
    sel = f'service_name="{service}",{NO_PROBES}'
    rate = f"sum(rate(http_server_request_duration_seconds_count{{{sel}}}[1m]))"
    errors = (
        f'sum(rate(http_server_request_duration_seconds_count{{{sel},http_response_status_code=~"5.."}}[1m]))'
        f" or vector(0)"
    )
    p99 = (
        "histogram_quantile(0.99, sum by (le) "
        f"(rate(http_server_request_duration_seconds_bucket{{{sel}}}[1m])))"
    )
    (r,) = wait_for_series(e2e, rate)
    assert float(r["value"][1]) > 0
    (ratio,) = wait_for_series(e2e, f"({errors}) / {rate}")
    assert 0 <= float(ratio["value"][1]) <= 1
    (q,) = wait_for_series(e2e, p99)
    assert 0 < float(q["value"][1]) <= 10


@pytest.mark.parametrize(
    "query",
    [
        "sum by (prediction_class) (rate(modelobs_predictions_total[1m]))",
        "histogram_quantile(0.99, sum by (le) (rate(modelobs_inference_duration_seconds_bucket[1m])))",
        "sum by (validation_reason) (modelobs_validation_failures_total)",
        "histogram_quantile(0.5, sum by (le) (rate(modelobs_prediction_score_bucket[1m])))",
        'sum by (service_name, span_name) (rate(traces_span_metrics_calls_total{span_kind="SPAN_KIND_SERVER"}[1m]))',
        "histogram_quantile(0.99, sum by (service_name, le) (rate(traces_span_metrics_duration_seconds_bucket[1m])))",
    ],
)
def test_model_and_span_metrics(e2e: E2EStack, traffic: dict, query: str) -> None:
    assert wait_for_series(e2e, query)


def test_validation_failures_by_reason(e2e: E2EStack, traffic: dict) -> None:
    result = wait_for_series(e2e, "sum by (validation_reason) (modelobs_validation_failures_total)")
    reasons = {r["metric"].get("validation_reason") for r in result}
    assert {"malformed_json", "missing_field"} <= reasons, reasons


def test_span_metrics_cover_both_services(e2e: E2EStack, traffic: dict) -> None:
    result = wait_for_series(
        e2e, "sum by (service_name) (traces_span_metrics_calls_total)", timeout_s=30
    )
    assert {r["metric"]["service_name"] for r in result} >= set(SERVICES)


def test_latency_exemplar_names_a_trace_jaeger_has(e2e: E2EStack, traffic: dict) -> None:
    # Slow requests are all kept by tail sampling, so their exemplars resolve.
    for _ in range(3):
        assert send(e2e.slow_gateway_url).response.status_code == 200
    checked: set[str] = set()

    def one_resolves() -> bool:
        now = time.time()
        response = httpx.get(
            f"{e2e.prom_url}/api/v1/query_exemplars",
            params={
                "query": 'http_server_request_duration_seconds_bucket{service_name="gateway"}',
                "start": now - 600,
                "end": now,
            },
            timeout=10,
        )
        response.raise_for_status()
        trace_ids = [
            ex["labels"]["trace_id"]
            for series in response.json()["data"]
            for ex in series["exemplars"]
            if "trace_id" in ex["labels"]
        ]
        for trace_id in reversed(trace_ids):
            if trace_id in checked:
                continue
            checked.add(trace_id)
            if jaeger_trace(e2e, trace_id):
                return True
        return False

    wait_until(
        one_resolves,
        lambda: (
            f"none of the {len(checked)} exemplar trace ids of the gateway latency histogram "
            "is in Jaeger"
        ),
        timeout_s=60,
        poll_s=2,
    )


def _log_records(e2e: E2EStack) -> list[tuple[dict, dict]]:
    """(resource attributes, log record) of every record in the collector's logs.jsonl."""
    out = []
    path = e2e.files_dir / "logs.jsonl"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for rl in json.loads(line).get("resourceLogs", []):
            resource = {
                a["key"]: next(iter(a["value"].values()), None)
                for a in rl.get("resource", {}).get("attributes", [])
            }
            for sl in rl.get("scopeLogs", []):
                for record in sl.get("logRecords", []):
                    out.append((resource, record))
    return out


def test_request_logs_reach_the_log_pipeline_with_the_trace_id(e2e: E2EStack) -> None:
    sent = send(e2e.gateway_url)
    assert sent.response.status_code == 200, sent.response.text
    mine: list[tuple[dict, dict]] = wait_until(
        lambda: [
            (res, rec) for res, rec in _log_records(e2e) if rec.get("traceId") == sent.trace_id
        ],
        f"no log record with trace id {sent.trace_id} in {e2e.files_dir}/logs.jsonl",
        timeout_s=30,
        poll_s=0.5,
    )
    resource, record = next(
        ((res, rec) for res, rec in mine if "prediction" in json.dumps(rec.get("body", {}))),
        mine[0],
    )
    assert resource.get("service.name") == "model-service", resource
    assert record.get("severityText") == "INFO", record
    assert record.get("severityNumber") == 9, record
    assert len(record.get("spanId", "")) == 16, record
