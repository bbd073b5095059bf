"""Feedback: unknown id 404, conflicting label 409, same label 200 unchanged; quality gauges
(on each store; across replicas: test_feedback_replicas.py)."""

from __future__ import annotations

import httpx
import pytest

from .conftest import VALID_RECORD, Stack


def _predict(url: str, n: int = 1) -> list[dict]:
    r = httpx.post(f"{url}/v1/predict", json={"records": [VALID_RECORD] * n})
    assert r.status_code == 200
    return r.json()["predictions"]


def test_feedback_cases_through_the_gateway(store_stack: Stack) -> None:
    stack = store_stack
    (prediction,) = _predict(stack.gateway_url)
    pid = prediction["prediction_id"]
    url = f"{stack.gateway_url}/v1/feedback"

    first = httpx.post(url, json={"prediction_id": pid, "label": "stay"})
    assert first.status_code == 200
    assert first.json() == {"prediction_id": pid, "label": "stay", "status": "recorded"}

    again = httpx.post(url, json={"prediction_id": pid, "label": "stay"})
    assert again.status_code == 200 and again.json()["status"] == "unchanged"

    conflict = httpx.post(url, json={"prediction_id": pid, "label": "churn"})
    assert conflict.status_code == 409
    assert conflict.json()["error"] == {
        "reason": "label_conflict",
        "field": "label",
        "message": "prediction already labelled 'stay'",
    }
    stored = httpx.get(f"{stack.model_url}/predictions/{pid}").json()
    assert stored["true_label"] == "stay"  # the conflict changed nothing

    unknown = httpx.post(url, json={"prediction_id": "no-such-id", "label": "stay"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["field"] == "prediction_id"

    stack.model.finished_spans(servers=6)
    _, points = stack.model.metric_points()["modelobs.feedback"]
    assert {p.attributes["feedback.outcome"]: p.value for p in points} == {
        "accepted": 1,
        "duplicate": 1,
        "conflict": 1,
        "unknown_id": 1,
    }


@pytest.mark.parametrize(
    ("body", "status", "field", "reason"),
    [
        ({"label": "stay"}, 422, "prediction_id", "missing_field"),
        ({"prediction_id": "x"}, 422, "label", "missing_field"),
        ({"prediction_id": 5, "label": "stay"}, 422, "prediction_id", "wrong_type"),
        ({"prediction_id": "x", "label": "maybe"}, 422, "label", "unknown_category"),
        ({"prediction_id": "x", "label": "stay", "note": 1}, 422, "note", "extra_field"),
        ({"prediction_id": "x" * 65, "label": "stay"}, 422, "prediction_id", "invalid_shape"),
    ],
)
def test_bad_feedback_is_named(
    stack: Stack, body: dict, status: int, field: str, reason: str
) -> None:
    r = httpx.post(f"{stack.model_url}/feedback", json=body)
    assert r.status_code == status
    assert r.json()["error"]["field"] == field
    assert r.json()["error"]["reason"] == reason


def test_quality_gauges_follow_the_labels(store_stack: Stack) -> None:
    stack = store_stack
    predictions = _predict(stack.gateway_url, 8)
    assert {p["prediction"] for p in predictions} == {"churn"}
    # 6 right (churn), 2 wrong (stay): accuracy 0.75; churn precision 0.75, recall 1.0.
    for i, p in enumerate(predictions):
        label = "churn" if i < 6 else "stay"
        r = httpx.post(
            f"{stack.model_url}/feedback",
            json={"prediction_id": p["prediction_id"], "label": label},
        )
        assert r.status_code == 200
    points = stack.model.metric_points()
    (accuracy,) = points["modelobs.model.accuracy"][1]
    assert accuracy.value == pytest.approx(0.75)
    precision = {p.attributes["class"]: p.value for p in points["modelobs.model.precision"][1]}
    recall = {p.attributes["class"]: p.value for p in points["modelobs.model.recall"][1]}
    f1 = {p.attributes["class"]: p.value for p in points["modelobs.model.f1"][1]}
    assert precision == {"churn": pytest.approx(0.75)}  # no "stay" predictions: undefined
    assert recall == {"churn": pytest.approx(1.0), "stay": pytest.approx(0.0)}
    assert f1["churn"] == pytest.approx(2 * 0.75 / 1.75)
    (delay,) = points["modelobs.label.delay"][1]
    assert delay.count == 8 and delay.min >= 0 and delay.max < 30
    (size,) = points["modelobs.model.labelled_window.size"][1]
    assert size.value == 8
