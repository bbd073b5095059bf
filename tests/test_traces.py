"""One gateway request is one trace across both apps, with correct links."""

from __future__ import annotations

import httpx
from opentelemetry.trace import SpanKind, StatusCode

from .conftest import VALID_RECORD, Stack


def _by_name(spans: list) -> dict[str, object]:
    return {span.name: span for span in spans}


def test_one_request_one_trace_across_both_apps(stack: Stack) -> None:
    response = httpx.post(f"{stack.gateway_url}/v1/predict", json={"record": VALID_RECORD})
    assert response.status_code == 200
    prediction_id = response.json()["predictions"][0]["prediction_id"]

    gateway_spans = stack.gateway.finished_spans()
    model_spans = stack.model.finished_spans()
    gw = _by_name(gateway_spans)
    md = _by_name(model_spans)
    assert set(gw) == {"POST /v1/predict", "POST"}
    assert set(md) == {"POST /predict", "model inference"}  # docs/contract.md, "Spans"

    gw_server, gw_client = gw["POST /v1/predict"], gw["POST"]
    md_server = md["POST /predict"]
    trace_ids = {s.context.trace_id for s in gateway_spans + model_spans}
    assert len(trace_ids) == 1, "all spans share one trace"

    assert gw_server.kind == SpanKind.SERVER and gw_server.parent is None
    assert gw_client.kind == SpanKind.CLIENT
    assert gw_client.parent.span_id == gw_server.context.span_id
    assert md_server.kind == SpanKind.SERVER
    assert md_server.parent.span_id == gw_client.context.span_id
    assert md_server.parent.is_remote
    assert md["model inference"].parent.span_id == md_server.context.span_id

    # Stable HTTP semantic conventions on the server spans.
    assert md_server.attributes["http.request.method"] == "POST"
    assert md_server.attributes["http.route"] == "/predict"
    assert md_server.attributes["http.response.status_code"] == 200
    assert md_server.attributes["url.path"] == "/predict"
    assert gw_server.attributes["http.route"] == "/v1/predict"
    assert gw_client.attributes["http.response.status_code"] == 200
    # Model attributes on the inference span; the prediction id is told once, by the
    # prediction's log record, which names this trace.
    inference = md["model inference"]
    assert inference.attributes["model.name"] == "churn-classifier"
    assert inference.attributes["model.version"] == "1.0.0"
    assert inference.attributes["modelobs.batch.size"] == 1
    assert not any("prediction.id" in k for s in model_spans for k in s.attributes)
    (log,) = [
        r for r in stack.model.log_records() if r.attributes.get("prediction.id") == prediction_id
    ]
    assert log.trace_id == md_server.context.trace_id


def test_incoming_traceparent_and_baggage_are_continued(model_dir, tmp_path) -> None:
    from modelobs.apps import gateway, model_service

    from .conftest import make_settings
    from .servers import captured, free_port, serve

    seen: list[dict[str, str]] = []

    def recording(app):  # what reaches the model service, as the model service sees it
        async def wrapped(scope, receive, send):
            if scope["type"] == "http":
                seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
            await app(scope, receive, send)

        return wrapped

    port = free_port()
    settings = make_settings(model_dir, tmp_path, model_url=f"http://127.0.0.1:{port}")
    model_cap, gw_cap = captured("model-service"), captured("gateway")
    with (
        serve(recording(model_service.create_app(settings, model_cap.telemetry)), port),
        serve(gateway.create_app(settings, gw_cap.telemetry)) as gateway_url,
    ):
        _continued(gateway_url, model_cap, gw_cap)
    predict_headers = [h for h in seen if "traceparent" in h]
    assert predict_headers and predict_headers[-1]["baggage"] == "tenant=acme"
    model_cap.telemetry.shutdown()
    gw_cap.telemetry.shutdown()


def _continued(gateway_url: str, model_cap, gw_cap) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent_span = "00f067aa0ba902b7"
    response = httpx.post(
        f"{gateway_url}/v1/predict",
        json={"record": VALID_RECORD},
        headers={"traceparent": f"00-{trace_id}-{parent_span}-01", "baggage": "tenant=acme"},
    )
    assert response.status_code == 200
    gw_server = _by_name(gw_cap.finished_spans())["POST /v1/predict"]
    md_server = _by_name(model_cap.finished_spans())["POST /predict"]
    assert format(gw_server.context.trace_id, "032x") == trace_id
    assert format(gw_server.parent.span_id, "016x") == parent_span
    assert format(md_server.context.trace_id, "032x") == trace_id


def test_failure_sets_status_and_records_exception(model_dir, tmp_path) -> None:
    from modelobs.apps import model_service
    from modelobs.flags import store

    from .conftest import make_settings
    from .servers import captured, serve

    flags_file = tmp_path / "flags.json"
    store.switch(flags_file, "inference-errors", "every", {"share": 1.0})
    cap = captured("model-service")
    app = model_service.create_app(
        make_settings(model_dir, tmp_path, flags_file=flags_file), cap.telemetry
    )
    with serve(app) as url:
        response = httpx.post(f"{url}/predict", json={"record": VALID_RECORD})
    assert response.status_code == 500
    assert response.json()["error"]["reason"] == "internal_error"
    spans = _by_name(cap.finished_spans())
    inference = spans["model inference"]
    assert inference.status.status_code == StatusCode.ERROR
    assert any(e.name == "exception" for e in inference.events)
    # The flag that failed it is on the span it failed (semantic conventions' names).
    assert inference.attributes["feature_flag.key"] == "inference-errors"
    assert inference.attributes["feature_flag.result.variant"] == "every"
    server = spans["POST /predict"]
    assert server.status.status_code == StatusCode.ERROR
    # A 5xx was sent: error.type is its code, as the FastAPI instrumentation sets it (the
    # HTTP conventions' rule); the exception stays on the span as an event.
    assert server.attributes["error.type"] == "500"
    assert [e.attributes["exception.type"] for e in server.events] == [
        "modelobs.flags.faults.InjectedFault"
    ]
    errors = [r for r in cap.log_records() if r.attributes.get("event") == "internal_error"]
    assert errors and errors[0].trace_id == inference.context.trace_id
    cap.telemetry.shutdown()


def _contract_spans() -> dict[str, str]:
    """docs/contract.md's span table: every backticked span name → its kind."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "contract.md").read_text()
    table = text.split("### Spans", 1)[1].split("\n\n")[2]
    spans = {}
    for row in table.splitlines()[2:]:
        name_cell, _service, kind = (cell.strip() for cell in row.strip("|").split("|")[:3])
        for name in name_cell.split("`")[1::2]:
            spans[name] = kind
    return spans


def test_the_contract_lists_exactly_the_spans_a_request_makes(stack: Stack) -> None:
    response = httpx.post(f"{stack.gateway_url}/v1/predict", json={"record": VALID_RECORD})
    assert response.status_code == 200
    made = {
        s.name: s.kind.name for s in stack.gateway.finished_spans() + stack.model.finished_spans()
    }
    assert made == _contract_spans()
