"""The model service dies under load: SIGKILLed, the gateway answers 503 at once with an error
that says what happened, and serves again by itself once the model service is back; stopped
gracefully (SIGTERM), every prediction the gateway acknowledged is in the prediction log."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing

import httpx
import pytest

from modelobs.model.data import EXAMPLE_RECORD
from tests.waiting import wait_until

from .conftest import FaultStack
from .load import load_phase

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

# "At once": the gateway's own retries of a refused connection take 0.05 + 0.1 s.
AT_ONCE_S = 1.0
SENDERS = 4


def _predict(client: httpx.Client, url: str) -> httpx.Response:
    return client.post(f"{url}/v1/predict", json={"record": EXAMPLE_RECORD}, timeout=10)


def _wait_ready(url: str, want: int, timeout_s: float = 30) -> None:
    status: list[int] = []

    def answers_want() -> bool:
        status[:] = [httpx.get(f"{url}/readyz", timeout=5).status_code]
        return status[0] == want

    wait_until(
        answers_want, lambda: f"{url}/readyz answers {status[0]}, not {want}", timeout_s, 0.2
    )


def test_gateway_answers_503_at_once_and_recovers_after_a_sigkill(
    fault_stack: FaultStack,
) -> None:
    stack = fault_stack
    url = stack.gateway_url
    before = load_phase("before", url, 5)
    answers: list[tuple[float, httpx.Response]] = []

    def crash() -> None:
        stack.kill("model-service")
        with httpx.Client() as client:
            for _ in range(5):
                t0 = time.perf_counter()
                response = _predict(client, url)
                answers.append((time.perf_counter() - t0, response))
        _wait_ready(url, 503)

    during = load_phase("down", url, 5, beside=crash)
    stack.start("model-service")
    _wait_ready(url, 200)  # the gateway notices by itself: nothing restarted it
    after = load_phase("after", url, 5)

    print()
    for phase in (before, during, after):
        print(phase.line())
    slowest = max(elapsed for elapsed, _ in answers)
    print(
        f"gateway answers while the model service is dead: {len(answers)}, slowest {slowest:.3f} s"
    )
    assert before.failed == 0 and after.failed == 0
    for _, response in answers:
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["reason"] == "upstream_unavailable"
        assert "model service unreachable" in error["message"]
    assert slowest < AT_ONCE_S
    # Under load too: only 503s (and the 200s answered before the kill), nothing hangs.
    assert set(during.result.statuses) <= {"200", "503"}, during.line()
    assert during.result.statuses["503"] > 0
    assert max(during.result.latencies_s) < AT_ONCE_S, during.line()


def test_every_acknowledged_prediction_survives_a_graceful_stop(fault_stack: FaultStack) -> None:
    stack = fault_stack
    url = stack.gateway_url
    acknowledged: list[str] = []
    refused: list[int] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                response = _predict(client, url)
                if response.status_code == 200:
                    acknowledged.extend(p["prediction_id"] for p in response.json()["predictions"])
                else:
                    refused.append(response.status_code)

    senders = [threading.Thread(target=send, daemon=True) for _ in range(SENDERS)]
    for thread in senders:
        thread.start()
    wait_until(
        lambda: len(acknowledged) >= 200,
        lambda: f"only {len(acknowledged)} predictions",
        timeout_s=30,
        poll_s=0.05,
    )
    stack.kill("model-service", graceful=True)  # SIGTERM, and wait until it has ended
    stop.set()
    for thread in senders:
        thread.join(timeout=30)
    db = stack.cfg.run_dir / "model-service.predictions.db"
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        logged = {row[0] for row in conn.execute("SELECT prediction_id FROM predictions")}
    stack.start("model-service")
    _wait_ready(url, 200)

    missing = [p for p in acknowledged if p not in logged]
    print(
        f"\nacknowledged {len(acknowledged)} predictions (then {len(refused)} refused: "
        f"{sorted(set(refused))}); {len(missing)} of them missing from the prediction log"
    )
    assert len(acknowledged) >= 200
    assert set(refused) <= {503}
    assert not missing, missing[:5]
