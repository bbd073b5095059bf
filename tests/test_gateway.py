"""The gateway's failure answers: unreachable → 503, timeout → 504, API key → 401."""

from __future__ import annotations

import socket
import threading

import httpx

from modelobs.apps import gateway, model_service

from .conftest import VALID_RECORD, make_settings
from .servers import captured, free_port, serve


def test_unreachable_model_service_is_503(model_dir, tmp_path) -> None:
    cap = captured("gateway")
    dead = f"http://127.0.0.1:{free_port()}"
    app = gateway.create_app(make_settings(model_dir, tmp_path, model_url=dead), cap.telemetry)
    with serve(app) as url:
        response = httpx.post(f"{url}/v1/predict", json={"record": VALID_RECORD})
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "reason": "upstream_unavailable",
            "message": "model service unreachable after 3 attempts",
        }
    }
    client_spans = [s for s in cap.finished_spans() if s.name == "POST"]
    assert len(client_spans) == 3  # one client span per attempt
    cap.telemetry.shutdown()


def test_slow_model_service_is_504(model_dir, tmp_path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_hold() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    cap = captured("gateway")
    settings = make_settings(
        model_dir, tmp_path, model_url=f"http://127.0.0.1:{port}", upstream_timeout_s=0.3
    )
    try:
        with serve(gateway.create_app(settings, cap.telemetry)) as url:
            response = httpx.post(f"{url}/v1/predict", json={"record": VALID_RECORD})
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert response.status_code == 504
    assert response.json()["error"] == {
        "reason": "upstream_timeout",
        "message": "model service did not answer in time",
    }
    # No retry after a timeout: one connection, one client span.
    assert len(accepted) == 1
    assert len([s for s in cap.finished_spans() if s.name == "POST"]) == 1
    cap.telemetry.shutdown()


def test_api_key_when_configured(model_dir, tmp_path) -> None:
    model_port = free_port()
    settings = make_settings(
        model_dir, tmp_path, model_url=f"http://127.0.0.1:{model_port}", api_key="s3cret-key"
    )
    model_cap, gw_cap = captured("model-service"), captured("gateway")
    with (
        serve(model_service.create_app(settings, model_cap.telemetry), model_port),
        serve(gateway.create_app(settings, gw_cap.telemetry)) as url,
    ):
        missing = httpx.post(f"{url}/v1/predict", json={"record": VALID_RECORD})
        wrong = httpx.post(
            f"{url}/v1/predict", json={"record": VALID_RECORD}, headers={"x-api-key": "nope"}
        )
        right = httpx.post(
            f"{url}/v1/predict", json={"record": VALID_RECORD}, headers={"x-api-key": "s3cret-key"}
        )
    assert missing.status_code == 401
    assert missing.json()["error"] == {
        "reason": "unauthorized",
        "field": "x-api-key",
        "message": "missing API key",
    }
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"
    assert right.status_code == 200
    logs = gw_cap.log_records()
    assert logs and not any("s3cret-key" in str(r.attributes) + str(r.body) for r in logs)
    model_cap.telemetry.shutdown()
    gw_cap.telemetry.shutdown()


def test_readiness_probe_leaves_no_trace(model_dir, tmp_path) -> None:
    model_port = free_port()
    settings = make_settings(model_dir, tmp_path, model_url=f"http://127.0.0.1:{model_port}")
    model_cap, gw_cap = captured("model-service"), captured("gateway")
    with (
        serve(model_service.create_app(settings, model_cap.telemetry), model_port),
        serve(gateway.create_app(settings, gw_cap.telemetry)) as url,
    ):
        for _ in range(3):
            assert httpx.get(f"{url}/readyz").status_code == 200
        assert httpx.post(f"{url}/v1/predict", json={"record": VALID_RECORD}).status_code == 200
        spans = gw_cap.finished_spans()
    # Only the prediction: one server and one client span, no probe spans.
    assert sorted(s.name for s in spans) == ["POST", "POST /v1/predict"]
    model_cap.telemetry.shutdown()
    gw_cap.telemetry.shutdown()


def test_idle_upstream_connections_close_before_the_replica_closes_them(
    model_dir, tmp_path
) -> None:
    """The gateway drops an idle connection to a replica a second before the replica's
    keep-alive timeout would, so it never sends a prediction on a connection being closed."""
    for keepalive_s in (5, 2, 1):
        settings = make_settings(model_dir, tmp_path, keepalive_timeout_s=keepalive_s)
        upstream = gateway.Upstream(settings, captured("gateway").telemetry)
        for client in upstream.clients.values():
            transport = client._transport  # client telemetry → FaultyHopTransport → httpx
            while not isinstance(transport, httpx.AsyncHTTPTransport):
                transport = transport.inner
            pool = transport._pool  # → httpcore
            assert 0 < pool._keepalive_expiry < keepalive_s, (keepalive_s, pool._keepalive_expiry)
