"""Forwarding through broken connections (a real proxy between gateway and model service):
an answer lost after the prediction was made is replayed, not predicted again; a keep-alive
connection closed under the gateway is retried and never reaches the caller."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from modelobs.apps import gateway, model_service

from .conftest import VALID_RECORD, make_settings
from .faulty_proxy import Arrival, Fault, Plan, Traffic, faulty_proxy
from .servers import Captured, captured, free_port, serve


@dataclass
class ProxiedStack:
    gateway_url: str
    traffic: Traffic
    model: Captured
    gateway: Captured
    prediction_db: Path


@contextmanager
def proxied_stack(model_dir: Path, tmp_path: Path, plan: Plan) -> Iterator[ProxiedStack]:
    """Model service ← faulty proxy ← gateway, all on real sockets; both apps stopped (the
    prediction log written out) when the block ends."""
    model_port = free_port()
    model_tel, gateway_tel = captured("model-service"), captured("gateway")
    settings = make_settings(model_dir, tmp_path)
    with (
        serve(model_service.create_app(settings, model_tel.telemetry), model_port),
        faulty_proxy(model_port, plan) as (proxy_url, traffic),
    ):
        gateway_settings = make_settings(model_dir, tmp_path, model_url=proxy_url)
        with serve(gateway.create_app(gateway_settings, gateway_tel.telemetry)) as gateway_url:
            yield ProxiedStack(gateway_url, traffic, model_tel, gateway_tel, settings.prediction_db)


def stored_prediction_ids(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return [row[0] for row in conn.execute("SELECT prediction_id FROM predictions")]


def repeats(cap: Captured) -> dict[str, int]:
    _, points = cap.metric_points()["modelobs.idempotency.repeats"]
    return {p.attributes["idempotency.outcome"]: p.value for p in points}


def events(cap: Captured, name: str) -> list[dict]:
    return [dict(r.attributes) for r in cap.log_records() if r.attributes.get("event") == name]


def test_answer_lost_after_the_prediction_is_replayed_not_predicted_again(
    model_dir: Path, tmp_path: Path
) -> None:
    def plan(arrival: Arrival) -> Fault:
        return Fault.DROP_ANSWER if arrival.number == 1 else Fault.NONE

    with proxied_stack(model_dir, tmp_path, plan) as stack:
        response = httpx.post(f"{stack.gateway_url}/v1/predict", json={"record": VALID_RECORD})
        model_metrics = stack.model.metric_points()
        replayed = repeats(stack.model)

    # The model service answered the first attempt; the gateway never saw that answer.
    assert stack.traffic.faults == [Fault.DROP_ANSWER]
    assert stack.traffic.forwarded == 2
    # The caller gets the first (and only) prediction, exactly once in the prediction log.
    assert response.status_code == 200
    prediction_id = response.json()["predictions"][0]["prediction_id"]
    assert stored_prediction_ids(stack.prediction_db) == [prediction_id]
    _, predicted = model_metrics["modelobs.predictions"]
    assert sum(p.value for p in predicted) == 1
    # Counted and logged on both sides, under the key the caller got back.
    key = response.headers["idempotency-key"]
    assert replayed == {"replayed": 1, "awaited": 0, "key_reused": 0}
    [replay] = events(stack.model, "idempotent_replay")
    assert replay["idempotency.key"] == key and replay["outcome"] == "replayed"
    [retry] = events(stack.gateway, "upstream_retry")
    assert retry["idempotency.key"] == key
    assert retry["error.type"] == "RemoteProtocolError"
    assert not events(stack.gateway, "upstream_failed")


def test_keep_alive_connection_closed_under_the_gateway_is_not_an_error(
    model_dir: Path, tmp_path: Path
) -> None:
    def plan(arrival: Arrival) -> Fault:
        # Every reused connection is closed as the next request arrives on it.
        return Fault.CLOSE_UNSENT if arrival.on_connection > 1 else Fault.NONE

    with proxied_stack(model_dir, tmp_path, plan) as stack:
        with httpx.Client(base_url=stack.gateway_url) as client:
            answers = [client.post("/v1/predict", json={"record": VALID_RECORD}) for _ in range(3)]
        replayed = repeats(stack.model)

    assert [a.status_code for a in answers] == [200, 200, 200]
    # The gateway reused its kept-alive connection twice and had it closed under it both times.
    assert stack.traffic.faults == [Fault.CLOSE_UNSENT, Fault.CLOSE_UNSENT]
    assert stack.traffic.connections == 3
    ids = [a.json()["predictions"][0]["prediction_id"] for a in answers]
    assert sorted(stored_prediction_ids(stack.prediction_db)) == sorted(ids)
    # Those requests never reached the model service: nothing to replay.
    assert replayed == {"replayed": 0, "awaited": 0, "key_reused": 0}
    retries = events(stack.gateway, "upstream_retry")
    assert [r["error.type"] for r in retries] == ["RemoteProtocolError"] * 2
