"""Prometheus or Alertmanager down: the services do not notice (pull metrics and alert
delivery are off their request path), and an alert that starts firing while Alertmanager is
down reaches the receiver after it returns (Prometheus re-sends firing alerts).

The alert is a real one from deploy/prometheus/rules (HttpErrorRatioHigh, its ``for:``
shortened to 10 s), raised by real failures: a gateway whose model service is unreachable
answers 503, under its own service name so the alert is this test's alone.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from deploy.native.components import SPECS, resolve
from deploy.native.net import free_ports
from deploy.native.summary import prom_query

from tests.waiting import wait_until

from .conftest import ERROR_ALERT, FaultStack
from .load import load_phase

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

BROKEN = "gateway-unreachable"


def _firing(stack: FaultStack) -> bool:
    query = f'ALERTS{{alertname="{ERROR_ALERT}",service_name="{BROKEN}",alertstate="firing"}}'
    return bool(prom_query(stack.url(stack.ports.prometheus), query))


def _received(stack: FaultStack) -> list[dict]:
    payloads = httpx.get(stack.url(stack.ports.webhook, "/alerts"), timeout=5).json()
    return [
        alert
        for payload in payloads
        for alert in payload.get("alerts", [])
        if alert["labels"].get("alertname") == ERROR_ALERT
        and alert["labels"].get("service_name") == BROKEN
    ]


def test_prometheus_and_alertmanager_outages_leave_services_alone_and_lose_no_alert(
    fault_stack: FaultStack,
) -> None:
    stack = fault_stack
    url = stack.gateway_url
    print()
    before = load_phase("before", url, 5)
    prom_down = load_phase("no prom", url, 10, beside=lambda: stack.kill("prometheus"))
    stack.start("prometheus")

    # A bound socket that never listens: connections to it are refused, and no other
    # program on this machine can take the port meanwhile.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    (port,) = free_ports(1)
    stack.add(
        resolve(
            SPECS["gateway"],
            stack.cfg,
            name=BROKEN,
            params={"port": str(port), "model_url": stack.url(closed.getsockname()[1])},
            env={"OTEL_SERVICE_NAME": BROKEN},
            ready="http://127.0.0.1:{port}/healthz",
        )
    )
    stop = threading.Event()
    failures: list[int] = []

    def failing_traffic() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                response = client.post(f"{stack.url(port)}/v1/predict", json={}, timeout=5)
                failures.append(response.status_code)
                stop.wait(0.05)  # about 20 failing requests a second, until told to stop

    am_down = []
    try:
        stack.kill("alertmanager")
        threading.Thread(target=failing_traffic, daemon=True).start()
        # Under load, in 10 s steps, until the alert fires (at most a minute).
        while not am_down or not _firing(stack):
            assert len(am_down) < 6, "the alert never fired"
            am_down.append(load_phase("no am", url, 10))
        fired = time.monotonic()
        received_during = len(_received(stack))
        stack.start("alertmanager")
        delivered = wait_until(
            lambda: _received(stack), "the alert was never delivered", timeout_s=60, poll_s=0.5
        )
        delivered_after_s = time.monotonic() - fired
    finally:
        stop.set()
        closed.close()
        stack.kill(BROKEN, graceful=True)

    for phase in (before, prom_down, *am_down):
        print(phase.line())
    print(
        f"{len(failures)} failing requests to {BROKEN} (statuses {sorted(set(failures))}); "
        f"{ERROR_ALERT} firing while Alertmanager was down, received {received_during} then; "
        f"delivered {delivered_after_s:.1f} s after it fired: {delivered[0]['status']}"
    )
    assert before.failed == prom_down.failed == sum(p.failed for p in am_down) == 0
    assert set(failures) == {503}
    assert received_during == 0
    assert delivered[0]["status"] == "firing"
