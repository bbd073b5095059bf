"""Log records carry trace context; every metric exists with its name, unit and attributes;
latency exemplars name the trace of a real request when the collector keeps it."""

from __future__ import annotations

import httpx

from modelobs.apps.errors import Reason
from modelobs.settings import get_settings
from modelobs.telemetry.exemplars import TailSamplingPolicy

from .conftest import VALID_RECORD, Stack
from .sampled_trace_ids import trace_ids


def test_request_logs_carry_trace_and_span_ids(stack: Stack) -> None:
    response = httpx.post(f"{stack.gateway_url}/v1/predict", json={"records": [VALID_RECORD] * 3})
    assert response.status_code == 200
    ids = [p["prediction_id"] for p in response.json()["predictions"]]
    spans = {s.name: s for s in stack.model.finished_spans()}
    server_span = spans["POST /predict"]  # recorded after inference
    logs = [r for r in stack.model.log_records() if r.attributes.get("event") == "prediction"]
    assert sorted(r.attributes["prediction.id"] for r in logs) == sorted(ids)
    for log in logs:
        assert log.trace_id == server_span.context.trace_id
        assert log.span_id == server_span.context.span_id
        assert log.severity_text == "INFO"
        assert log.attributes["model.version"] == "1.0.0"
        assert log.attributes["outcome"] == "success"
        assert "features" not in log.attributes  # raw features are off by default
        assert "extra" not in log.attributes  # bound values are flattened
    # Exactly one OTel record per prediction: nothing is exported twice.
    assert len(logs) == 3


def test_features_logged_only_when_allowed(model_dir, tmp_path) -> None:
    from modelobs.apps import model_service

    from .conftest import make_settings
    from .servers import captured, serve

    cap = captured("model-service")
    app = model_service.create_app(
        make_settings(model_dir, tmp_path, log_features=True), cap.telemetry
    )
    with serve(app) as url:
        assert httpx.post(f"{url}/predict", json={"record": VALID_RECORD}).status_code == 200
    logs = [r for r in cap.log_records() if r.attributes.get("event") == "prediction"]
    assert '"contract":"month-to-month"' in logs[0].attributes["features"]
    cap.telemetry.shutdown()


def test_every_metric_has_its_name_unit_and_attributes(stack: Stack) -> None:
    for _ in range(3):
        assert (
            httpx.post(f"{stack.gateway_url}/v1/predict", json={"record": VALID_RECORD}).status_code
            == 200
        )
    bad = httpx.post(
        f"{stack.gateway_url}/v1/predict", json={"record": {**VALID_RECORD, "age": "x"}}
    )
    assert bad.status_code == 422

    stack.model.finished_spans(servers=4)
    stack.gateway.finished_spans(servers=4)
    model = stack.model.metric_points()
    gateway = stack.gateway.metric_points()

    metric, points = model["http.server.request.duration"]
    assert metric.unit == "s"
    ok = [p for p in points if p.attributes["http.response.status_code"] == 200]
    assert ok[0].attributes["http.route"] == "/predict"
    assert ok[0].attributes["http.request.method"] == "POST"
    assert ok[0].count == 3
    assert list(ok[0].explicit_bounds)[:3] == [0.005, 0.01, 0.025]

    metric, points = model["modelobs.predictions"]
    assert metric.unit == "{prediction}"
    assert sum(p.value for p in points) == 3
    assert {k for p in points for k in p.attributes} == {
        "model.name",
        "model.version",
        "prediction.class",
        "synthetic_request",  # false here: these requests carry no baggage
    }
    assert {p.attributes["synthetic_request"] for p in points} == {"false"}

    metric, points = model["modelobs.inference.duration"]
    assert metric.unit == "s" and points[0].count == 3
    assert points[0].explicit_bounds[0] == 0.0001  # fits a sub-millisecond model
    assert dict(points[0].attributes) == {
        "model.name": "churn-classifier",
        "model.version": "1.0.0",
    }

    metric, points = model["modelobs.prediction.score"]
    assert metric.unit == "1" and sum(p.count for p in points) == 3
    assert all(0.5 <= p.min <= p.max <= 1.0 for p in points)

    metric, points = model["modelobs.validation.failures"]
    counted = {p.attributes["validation.reason"]: p.value for p in points}
    assert counted["wrong_type"] == 1 and sum(counted.values()) == 1
    # every reason of the closed set has a series from the start, so panels show 0
    assert set(counted) == {r.value for r in Reason}

    metric, points = gateway["http.server.request.duration"]
    assert {p.attributes["http.route"] for p in points} == {"/v1/predict"}
    assert {p.attributes["http.response.status_code"] for p in points} == {200, 422}
    metric, points = gateway["http.client.request.duration"]
    assert metric.unit == "s" and sum(p.count for p in points) == 4


def test_latency_exemplars_name_only_traces_the_collector_keeps(stack: Stack) -> None:
    # A fast successful request makes an exemplar only when the collector's probabilistic
    # policy keeps its trace (telemetry/exemplars.py): one request of each kind.
    policy = TailSamplingPolicy.from_settings(get_settings())
    kept, dropped = (trace_ids(policy, kept=k)[0] for k in (True, False))
    for trace_id in (kept, dropped):
        headers = {"traceparent": f"00-{trace_id:032x}-{0xA1B2C3D4E5F60718:016x}-01"}
        response = httpx.post(
            f"{stack.gateway_url}/v1/predict", json={"record": VALID_RECORD}, headers=headers
        )
        assert response.status_code == 200
    servers = [s for s in stack.model.finished_spans(servers=2) if s.name == "POST /predict"]
    assert {s.context.trace_id for s in servers} == {kept, dropped}
    # Exemplars belong to one collection: collect once, read both histograms.
    collected = stack.model.metric_points()
    for name in ("http.server.request.duration", "modelobs.inference.duration"):
        _, points = collected[name]
        exemplar_traces = {e.trace_id for p in points for e in p.exemplars}
        assert kept in exemplar_traces, name
        assert dropped not in exemplar_traces, name
