"""Logs in the native log store (VictoriaLogs): the records of a kept trace are found by its
trace id through the LogsQL query API, with their service name, severity and span."""

from __future__ import annotations

import secrets

import pytest

from .conftest import E2EStack, logs, send, wait_for_logs, wait_for_trace

pytestmark = pytest.mark.e2e


def test_logs_of_a_kept_trace_are_found_by_trace_id(e2e: E2EStack) -> None:
    # Through the slow pair: > TAIL_SAMPLING_LATENCY_MS, so tail sampling keeps the trace.
    sent = send(e2e.slow_gateway_url)
    assert sent.response.status_code == 200, sent.response.text
    spans = wait_for_trace(e2e, sent.trace_id, min_spans=4)

    records = wait_for_logs(e2e, f"trace_id:{sent.trace_id}")

    assert {r["trace_id"] for r in records} == {sent.trace_id}
    prediction_id = sent.response.json()["predictions"][0]["prediction_id"]
    (record,) = [r for r in records if r.get("prediction.id") == prediction_id]
    assert record["service.name"] == "model-service", record
    assert record["severity_text"] == "INFO", record
    assert record["severity_number"] == "9", record
    assert record["_msg"] == f"prediction {prediction_id}", record
    # The record names the span it was written in, and Jaeger has that span.
    model_spans = {s["spanId"] for s in spans if s["_service"] == "model-service"}
    assert record["span_id"] in model_spans, (record["span_id"], model_spans)


def test_a_trace_id_nobody_sent_finds_no_logs(e2e: E2EStack, traffic: dict) -> None:
    assert logs(e2e, "service.name:model-service"), "the log store holds no records at all"
    assert logs(e2e, f"trace_id:{secrets.token_hex(16)}") == []
