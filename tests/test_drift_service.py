"""Drift in the running service: the load generator's scenarios shift features, the drift
thread notices, GET /drift reports it, the gauges carry it, and a log event names it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from modelobs.apps import gateway, model_service
from modelobs.loadgen.runner import run_load
from modelobs.loadgen.scenarios import BadInputs, GradualDrift, LabelShift, Scenario, SuddenShift

from .conftest import make_settings
from .servers import captured, free_port, serve
from .waiting import wait_until


def test_gradual_and_sudden_shift_move_only_chosen_features() -> None:
    gradual = GradualDrift(features=("monthly_charges",), shift_sd=2.0, ramp_s=100)
    base = Scenario()
    assert gradual.shift_at(0) == 0 and gradual.shift_at(50) == 1.0 and gradual.shift_at(500) == 2.0
    before, after = base.record(3, 0), gradual.record(3, 50)
    sd = gradual._sd["monthly_charges"]
    assert after["monthly_charges"] == pytest.approx(before["monthly_charges"] + sd, abs=0.01)
    assert {k: v for k, v in after.items() if k != "monthly_charges"} == {
        k: v for k, v in before.items() if k != "monthly_charges"
    }
    sudden = SuddenShift(features=("tenure_months",), shift_sd=1.0, at_s=10)
    assert sudden.record(3, 9.9) == base.record(3, 0)
    assert isinstance(sudden.record(3, 10)["tenure_months"], int)
    assert sudden.record(3, 10)["tenure_months"] > base.record(3, 0)["tenure_months"]
    with pytest.raises(ValueError, match="not numeric features: contract"):
        SuddenShift(features=("contract",))


def test_bad_inputs_burst_only_inside_its_window() -> None:
    scenario = BadInputs(every=2, at_s=10, burst_s=5)
    outside = [json.loads(scenario.request(i, 3).body) for i in range(6)]
    assert all("record" in body for body in outside)
    inside = [scenario.request(i, 12) for i in range(0, 12, 2)]
    assert any(r.headers["content-type"] != "application/json" for r in inside)


def test_label_shift_sends_feedback_for_answered_predictions() -> None:
    scenario = LabelShift(at_s=10, churn_before=0.0, churn_after=1.0)
    first = scenario.request(0, 0)
    assert first.path == "/v1/predict"
    answer = httpx.Response(200, json={"predictions": [{"prediction_id": "p1"}]})
    first.on_response(answer)
    feedback = scenario.request(1, 0)
    assert feedback.path == "/v1/feedback"
    assert json.loads(feedback.body) == {"prediction_id": "p1", "label": "stay"}
    first.on_response(httpx.Response(200, json={"predictions": [{"prediction_id": "p2"}]}))
    assert json.loads(scenario.request(3, 11).body)["label"] == "churn"


def _wait_for_verdict(url: str, timeout_s: float = 30) -> dict:
    report: dict = {}

    def ready() -> dict | None:
        report.update(httpx.get(f"{url}/drift").json())
        return report if report["verdict_ready"] and report["window"]["size"] >= 300 else None

    return wait_until(ready, lambda: f"no drift verdict ({report})", timeout_s, poll_s=0.2)


@pytest.mark.parametrize("shifted", [False, True])
def test_service_detects_a_sudden_shift(model_dir: Path, tmp_path: Path, shifted: bool) -> None:
    model_port = free_port()
    settings = make_settings(
        model_dir,
        tmp_path,
        model_url=f"http://127.0.0.1:{model_port}",
        drift_window=300,
        drift_min_window=200,
        drift_recompute_every=50,
        drift_interval_s=0.5,
    )
    model_cap, gw_cap = captured("model-service"), captured("gateway")
    scenario = (
        SuddenShift(features=("monthly_charges",), shift_sd=1.5, at_s=0) if shifted else Scenario()
    )
    with (
        serve(model_service.create_app(settings, model_cap.telemetry), model_port) as model_url,
        serve(gateway.create_app(settings, gw_cap.telemetry)) as gateway_url,
    ):
        result = asyncio.run(
            run_load(gateway_url, scenario, rps=400, total=320, timeout_s=30, show_progress=False)
        )
        assert result.statuses == {"200": 320}
        report = _wait_for_verdict(model_url)
    features = {f["name"]: f for f in report["features"]}
    if shifted:
        assert report["drifted_features"] == ["monthly_charges"]
        assert report["drift_share"] == pytest.approx(1 / 7)
        events = [
            r for r in model_cap.log_records() if r.attributes.get("event") == "drift_changed"
        ]
        assert events, "a drift_changed log event"
        assert "monthly_charges" in events[-1].attributes["drifted_features"]
        assert '"feature":"monthly_charges"' in events[-1].attributes["most_shifted"]
    else:
        assert report["drifted_features"] == []
    gauges = model_cap.metric_points()
    detected = {p.attributes["feature.name"]: p.value for p in gauges["modelobs.drift.detected"][1]}
    assert detected["monthly_charges"] == (1 if shifted else 0)
    assert set(detected) == set(features)
    (window,) = gauges["modelobs.drift.window.size"][1]
    assert window.value == 300
    model_cap.telemetry.shutdown()
    gw_cap.telemetry.shutdown()
