"""Run-time fault flags: switched in the flag file, acted on by the running services without a
restart, marked on the span they affected; synthetic traffic told apart by its baggage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from modelobs.apps import gateway, model_service
from modelobs.flags import store
from modelobs.flags.client import FaultFlags
from modelobs.flags.definitions import BY_KEY, FLAGS, OFF, default_document
from modelobs.flags.faults import InferenceFaults
from modelobs.loadgen.baggage import baggage_header
from modelobs.loadgen.flag_driven import FlagDriven
from modelobs.loadgen.scenarios import Scenario

from .conftest import VALID_RECORD, make_settings
from .servers import Captured, captured, free_port, serve
from .waiting import wait_until

POLL_MS = 50


@dataclass
class FlaggedStack:
    flags_file: Path
    model_url: str
    gateway_url: str
    model: Captured
    gateway: Captured


@pytest.fixture
def flagged(model_dir: Path, tmp_path: Path) -> Iterator[FlaggedStack]:
    flags_file = tmp_path / "flags.json"
    model_port = free_port()
    settings = make_settings(
        model_dir,
        tmp_path,
        model_url=f"http://127.0.0.1:{model_port}",
        flags_file=flags_file,
        flags_poll_ms=POLL_MS,
        upstream_retries=1,
    )
    model_cap, gateway_cap = captured("model-service"), captured("gateway")
    model_app = model_service.create_app(settings, model_cap.telemetry)
    gateway_app = gateway.create_app(settings, gateway_cap.telemetry)
    with serve(model_app, model_port) as model_url, serve(gateway_app) as gateway_url:
        yield FlaggedStack(flags_file, model_url, gateway_url, model_cap, gateway_cap)
    model_cap.telemetry.shutdown()
    gateway_cap.telemetry.shutdown()


def predict(url: str, **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/predict", json={"record": VALID_RECORD}, headers=headers, timeout=10)


def spans_named(cap: Captured, name: str) -> list[Any]:
    return [s for s in cap.finished_spans() if s.name == name]


def flag_of(span: Any) -> tuple[str | None, str | None]:
    return span.attributes.get("feature_flag.key"), span.attributes.get(
        "feature_flag.result.variant"
    )


def test_the_flag_file_starts_with_every_flag_off_and_is_never_overwritten(tmp_path) -> None:
    path = tmp_path / "flags.json"
    store.ensure(path)
    assert store.variants(path) == dict.fromkeys(BY_KEY, OFF)
    store.switch(path, "inference-latency", "on")
    store.ensure(path)  # a service starting later keeps the switch
    assert store.variants(path)["inference-latency"] == "on"
    assert json.loads(path.read_text())["flags"]["inference-latency"]["state"] == "ENABLED"
    with pytest.raises(store.UnknownFlag, match="known: inference-latency"):
        store.switch(path, "no-such-flag", "on")
    with pytest.raises(store.UnknownFlag, match="no variant 'maybe'"):
        store.switch(path, "inference-latency", "maybe")


def test_every_flag_has_an_off_variant_that_does_nothing() -> None:
    for flag in FLAGS:
        assert OFF in flag.variants, flag.key
        assert default_document()["flags"][flag.key]["defaultVariant"] == OFF
        assert not any(v for k, v in flag.off_value.items() if k in ("share", "delay_ms")), flag


def test_inference_errors_switch_on_and_off_without_a_restart(flagged: FlaggedStack) -> None:
    assert predict(flagged.model_url).status_code == 200
    store.switch(flagged.flags_file, "inference-errors", "every", {"share": 1.0})
    failed = wait_until(
        lambda: (r := predict(flagged.model_url)).status_code == 500 and r,
        "a prediction failing once inference-errors is on",
    )
    assert failed.json()["error"]["reason"] == "internal_error"
    inference = [s for s in spans_named(flagged.model, "model inference") if flag_of(s)[0]]
    assert inference, "no inference span carries the flag"
    assert flag_of(inference[-1]) == ("inference-errors", "every")
    assert inference[-1].attributes["feature_flag.provider.name"] == "flagd"
    assert inference[-1].status.status_code == StatusCode.ERROR
    store.switch(flagged.flags_file, "inference-errors", OFF)
    wait_until(
        lambda: predict(flagged.model_url).status_code == 200,
        "predictions succeeding again once inference-errors is off",
    )


def test_inference_latency_marks_the_slowed_span_only(flagged: FlaggedStack) -> None:
    store.switch(flagged.flags_file, "inference-latency", "every", {"share": 1.0, "delay_ms": 120})
    wait_until(
        lambda: (
            predict(flagged.model_url)
            and any(flag_of(s)[0] for s in spans_named(flagged.model, "model inference"))
        ),
        "an inference span marked by inference-latency",
    )
    spans = flagged.model.finished_spans()
    slowed = [s for s in spans if flag_of(s) == ("inference-latency", "every")]
    assert {s.name for s in slowed} == {"model inference"}
    # The delay is inside the marked span: it lasted at least the flag's delay.
    assert min(s.end_time - s.start_time for s in slowed) >= 120_000_000


def test_failing_hop_marks_each_gateway_attempt_and_answers_503(flagged: FlaggedStack) -> None:
    store.switch(flagged.flags_file, "model-hop", "failing")
    answer = wait_until(
        lambda: (r := predict(f"{flagged.gateway_url}/v1")).status_code == 503 and r,
        "the gateway answering 503 once model-hop is failing",
    )
    assert answer.json()["error"]["reason"] == "upstream_unavailable"
    clients = [s for s in flagged.gateway.finished_spans() if s.kind == SpanKind.CLIENT]
    marked = [s for s in clients if flag_of(s) == ("model-hop", "failing")]
    # Both attempts (upstream_retries=1) failed on the flag, each on its own client span.
    assert len(marked) >= 2
    assert all(s.status.status_code == StatusCode.ERROR for s in marked)
    store.switch(flagged.flags_file, "model-hop", OFF)
    wait_until(
        lambda: predict(f"{flagged.gateway_url}/v1").status_code == 200,
        "the gateway answering 200 once model-hop is off",
    )


def test_memory_leak_holds_memory_while_on_and_releases_it_when_off(model_dir, tmp_path) -> None:
    flags_file = tmp_path / "flags.json"
    store.switch(flags_file, "memory-leak", "on", {"bytes_per_request": 1000})
    flags = FaultFlags(flags_file, POLL_MS)
    faults = InferenceFaults(flags)
    cap = captured("model-service")
    with cap.telemetry.tracer.start_as_current_span("model inference") as span:
        for _ in range(5):
            asyncio.run(faults.apply(span))
    assert faults.leaked_bytes == 5000
    assert flag_of(cap.finished_spans(servers=0)[0]) == ("memory-leak", "on")
    store.switch(flags_file, "memory-leak", OFF)
    wait_until(lambda: not flags.evaluate("memory-leak").on, "memory-leak read as off")
    with cap.telemetry.tracer.start_as_current_span("model inference") as span:
        asyncio.run(faults.apply(span))
    assert faults.leaked_bytes == 0
    flags.close()


def test_active_flags_gauge_has_one_series_per_declared_flag(flagged: FlaggedStack) -> None:
    store.switch(flagged.flags_file, "label-shift", "on")

    def gauge() -> dict[str, int]:
        points = flagged.model.metric_points().get("modelobs.feature_flag.active")
        return {p.attributes["feature_flag.key"]: p.value for p in points[1]} if points else {}

    values = wait_until(lambda: (g := gauge()).get("label-shift") == 1 and g, "gauge at 1")
    assert set(values) == set(BY_KEY)
    assert sum(values.values()) == 1


def test_synthetic_baggage_lands_on_spans_logs_and_one_bounded_metric_attribute(
    flagged: FlaggedStack,
) -> None:
    for headers in ({"baggage": baggage_header()}, {}):
        response = httpx.post(
            f"{flagged.gateway_url}/v1/predict",
            json={"record": VALID_RECORD},
            headers=headers,
            timeout=10,
        )
        assert response.status_code == 200
    spans = flagged.model.finished_spans(servers=2)
    marked = [s for s in spans if s.attributes.get("synthetic_request") == "true"]
    assert {s.name for s in marked} >= {"POST /predict", "model inference"}
    assert any(s.kind == SpanKind.SERVER and "synthetic_request" not in s.attributes for s in spans)
    gateway_server = [
        s for s in flagged.gateway.finished_spans(servers=2) if s.kind == SpanKind.SERVER
    ]
    assert sorted(s.attributes.get("synthetic_request", "-") for s in gateway_server) == [
        "-",
        "true",
    ]
    predictions = [
        r for r in flagged.model.log_records() if r.attributes.get("event") == "prediction"
    ]
    assert sorted(r.attributes.get("synthetic_request", "-") for r in predictions) == ["-", "true"]
    points = flagged.model.metric_points()["modelobs.predictions"][1]
    assert {p.attributes["synthetic_request"] for p in points} == {"true", "false"}
    assert sum(p.value for p in points) == 2


def test_a_forged_synthetic_value_is_not_a_metric_label(flagged: FlaggedStack) -> None:
    response = predict(flagged.model_url, baggage="synthetic_request=anything-at-all")
    assert response.status_code == 200
    points = flagged.model.metric_points()["modelobs.predictions"][1]
    assert {p.attributes["synthetic_request"] for p in points} == {"false"}


def test_loadgen_shifts_features_and_labels_while_their_flags_are_on(tmp_path) -> None:
    flags_file = tmp_path / "flags.json"
    flags = FaultFlags(flags_file, POLL_MS)
    base = Scenario(pool=200)
    driven = FlagDriven(base, flags)
    plain = json.loads(driven.request(0, 0).body)["record"]
    assert plain == base.record(0, 0)
    store.switch(flags_file, "feature-shift", "on")
    wait_until(lambda: flags.evaluate("feature-shift").on, "feature-shift read as on")
    request = driven.request(0, 0)
    shifted = json.loads(request.body)["record"]
    assert shifted["monthly_charges"] > plain["monthly_charges"] + 20  # 2 sd of ~25
    assert shifted["age"] == plain["age"]  # not a shifted feature
    assert "feature_flag.key=feature-shift" in request.headers["baggage"]
    assert "synthetic_request=true" in request.headers["baggage"]

    # Feedback: the true labels while label-shift is off, mostly 'churn' while it is on.
    def labels(n: int) -> list[str]:
        out = []
        for i in range(n):
            prediction = driven.request(2 * i, 0)
            prediction.on_response(  # type: ignore[misc]
                httpx.Response(200, json={"predictions": [{"prediction_id": f"p{i}"}]})
            )
            out.append(json.loads(driven.request(2 * i + 1, 0).body)["label"])
        return out

    truth = [base.true_label(2 * i) for i in range(40)]
    assert labels(40) == truth
    store.switch(flags_file, "label-shift", "on")
    wait_until(lambda: flags.evaluate("label-shift").on, "label-shift read as on")
    shifted_labels = labels(200)
    assert shifted_labels.count("churn") > 150  # churn_share 0.9
    assert truth.count("churn") < 30  # the records' own share is lower
    flags.close()
