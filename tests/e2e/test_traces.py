"""Traces through the real collector into Jaeger, and what tail sampling keeps."""

from __future__ import annotations

import httpx
import pytest

from tests.waiting import poll_until, wait_behind_markers

from .conftest import (
    SAMPLING_INSTANCE,
    E2EStack,
    jaeger_trace,
    kept_trace_id,
    prom,
    send,
    wait_for_trace,
)

pytestmark = pytest.mark.e2e

SERVER, CLIENT, INTERNAL = 2, 3, 1
KIND = {"SPAN_KIND_SERVER": SERVER, "SPAN_KIND_CLIENT": CLIENT, "SPAN_KIND_INTERNAL": INTERNAL}
STATUS_ERROR = (2, "STATUS_CODE_ERROR")


def kind(span: dict) -> int:
    value = span.get("kind")
    return KIND.get(value, value) if isinstance(value, str) else int(value or 0)


def only(spans: list[dict], what: str, **match: object) -> dict:
    found = [s for s in spans if all(s.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one {what}, found {len(found)} in {describe(spans)}"
    return found[0]


def describe(spans: list[dict]) -> str:
    return "; ".join(
        f"{s['_service']}:{s['name']} kind={s.get('kind')} id={s['spanId']} "
        f"parent={s.get('parentSpanId')}"
        for s in spans
    )


def test_one_request_is_one_trace_across_both_services(e2e: E2EStack) -> None:
    # Through the slow pair: > TAIL_SAMPLING_LATENCY_MS, so the latency policy keeps it.
    sent = send(e2e.slow_gateway_url)
    assert sent.response.status_code == 200, sent.response.text

    spans = wait_for_trace(e2e, sent.trace_id, min_spans=4)
    for span in spans:
        span["kind"] = kind(span)
    assert {s["_service"] for s in spans} == {"gateway", "model-service"}, describe(spans)

    gw_server = only(spans, "gateway server span", _service="gateway", kind=SERVER)
    gw_client = only(spans, "gateway client span", _service="gateway", kind=CLIENT)
    model_server = only(spans, "model server span", _service="model-service", kind=SERVER)
    assert gw_server["name"] == "POST /v1/predict"
    assert model_server["name"] == "POST /predict"
    # Our traceparent's span is the gateway server span's parent.
    assert gw_server.get("parentSpanId") == sent.parent_span_id
    assert gw_client.get("parentSpanId") == gw_server["spanId"], describe(spans)
    assert model_server.get("parentSpanId") == gw_client["spanId"], describe(spans)
    children = {
        s["name"]
        for s in spans
        if s["_service"] == "model-service" and s.get("parentSpanId") == model_server["spanId"]
    }
    assert children == {"model inference"}, describe(spans)


def test_error_trace_is_kept(e2e: E2EStack) -> None:
    sent = send(e2e.dead_gateway_url)
    assert sent.response.status_code == 503, sent.response.text

    spans = wait_for_trace(e2e, sent.trace_id, min_spans=1)
    server = [s for s in spans if kind(s) == SERVER]
    assert server, describe(spans)
    assert server[0].get("status", {}).get("code") in STATUS_ERROR, server[0]


def test_slow_trace_is_kept(e2e: E2EStack) -> None:
    sent = send(e2e.slow_gateway_url)
    assert sent.response.status_code == 200, sent.response.text
    assert sent.response.elapsed.total_seconds() > 0.2
    spans = wait_for_trace(e2e, sent.trace_id, min_spans=4)
    assert all(s.get("status", {}).get("code") not in STATUS_ERROR for s in spans)


def span_metric_calls(e2e: E2EStack) -> float:
    query = (
        'sum(traces_span_metrics_calls_total{service_name="gateway",'
        f'span_kind="SPAN_KIND_SERVER",service_instance_id="{SAMPLING_INSTANCE}"}})'
    )
    result = prom(e2e, query)
    return float(result[0]["value"][1]) if result else 0.0


def test_fast_successful_traces_are_mostly_dropped_but_all_counted(e2e: E2EStack) -> None:
    requests = 200
    assert span_metric_calls(e2e) == 0, "gateway-sampling got traffic from elsewhere"
    trace_ids = []
    with httpx.Client() as client:
        for _ in range(requests):
            sent = send(e2e.sampling_gateway_url, client)
            assert sent.response.status_code == 200, sent.response.text
            trace_ids.append(sent.trace_id)

    # Span metrics sit before sampling: every request is counted, exactly once.
    poll_until(lambda: span_metric_calls(e2e) >= requests, timeout_s=45, poll_s=1)
    counted = span_metric_calls(e2e)
    assert counted == requests, f"span metrics counted {counted} gateway server spans"

    # Every span has reached the collector. The traces it keeps are in Jaeger once traces
    # sent afterwards, through the same gateway and kept for sure, are there too.
    wait_behind_markers(
        lambda: send(e2e.sampling_gateway_url, trace_id=kept_trace_id()).trace_id,
        lambda trace_id: jaeger_trace(e2e, trace_id),
        "a trace sent after the others, in Jaeger",
        timeout_s=30,
    )
    kept = [t for t in trace_ids if jaeger_trace(e2e, t)]
    share = len(kept) / requests
    print(f"tail sampling kept {len(kept)}/{requests} fast traces ({share:.0%})")
    assert len(kept) > 0, "no fast trace kept at all: is the probabilistic policy active?"
    assert share < 0.5, f"{share:.0%} of fast successful traces kept; expected about 10%"
