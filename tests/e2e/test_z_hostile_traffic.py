"""What hostile traffic does to the telemetry, on the real native stack.

* Feature values stay out of logs and spans by default, checked at the collector's output
  (the file exporter of otel-collector/overlays/test-files.yaml): distinctive values sent in
  valid and invalid records, through the gateway whose traces tail sampling always keeps, are
  in none of the exported log records and spans.
* Unbounded values never become metric attributes: 10,000 requests with random paths, ids,
  query strings, headers and hostile bodies; the number of the services' series in Prometheus
  after the last 8,000 equals the number after the first 2,000, and no label value holds any
  of the random values. Cost: about 110 s on 2 shared cores (measured with the e2e stack up).

The burst also found a context leak: a request handled from inside the previous request's
task (uvicorn, kept-alive connection with the next request already buffered) inherited its
trace context, so after the burst every request was logged under one stale trace id and the
log test after this file failed. Fixed by uvicorn's reset_contextvars (apps/slow_clients.py);
the test checks it after the burst. The file still runs last in the e2e session (by name):
its burst is the heaviest load of the session.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from modelobs.model.data import EXAMPLE_RECORD
from tests.hostile_payloads import table
from tests.waiting import wait_until

from .conftest import E2EStack, prom

pytestmark = pytest.mark.e2e

SERVICES = 'service_name=~"gateway|model-service"'
MARK = "zqx"  # every random value starts with it, so a label holding one is found
CANARY_CATEGORY = "CANARY-c4t3g0ry"
CANARY_NUMBERS = ("73.123456789", "41.987654321")


def _exported_texts(e2e: E2EStack, name: str) -> str:
    path = e2e.files_dir / name
    return path.read_text(errors="replace") if path.exists() else ""


def test_feature_values_never_reach_the_collector(e2e: E2EStack) -> None:
    record = {
        **EXAMPLE_RECORD,
        "monthly_charges": float(CANARY_NUMBERS[0]),
        "age": float(CANARY_NUMBERS[1]),
    }
    trace_ids = []
    bodies = [
        {"record": record},  # valid: predicted, logged, traced
        {"records": [record, record]},
        {"record": {**record, "contract": CANARY_CATEGORY}},  # 422 naming the value
        {"record": {**record, "age": CANARY_CATEGORY}},
    ]
    for body in bodies:
        trace_id = secrets.token_hex(16)
        headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        response = httpx.post(
            f"{e2e.slow_gateway_url}/v1/predict", json=body, headers=headers, timeout=10
        )
        assert response.status_code in (200, 422), response.text
        trace_ids.append(trace_id)
    # Every trace (slow: always kept) and the logs of each request are exported.
    wait_until(
        lambda: all(t in _exported_texts(e2e, "traces.jsonl") for t in trace_ids),
        "the traces in traces.jsonl",
        timeout_s=60,
        poll_s=0.5,
    )
    wait_until(
        lambda: all(t in _exported_texts(e2e, "logs.jsonl") for t in trace_ids),
        "the log records in logs.jsonl",
        timeout_s=60,
        poll_s=0.5,
    )
    for name in ("traces.jsonl", "logs.jsonl"):
        text = _exported_texts(e2e, name)
        for canary in (CANARY_CATEGORY, *CANARY_NUMBERS):
            assert canary not in text, f"{canary} exported in {name}"


# ---------------------------------------------------------------------- cardinality


def _random_requests(rng: random.Random, base: str, count: int) -> Iterator[dict]:
    """Requests of every kind, each with fresh random paths, ids and headers."""
    hostile = [(row, "/v1/predict") for row in table("predict")] + [
        (row, "/v1/feedback") for row in table("feedback")
    ]
    hostile = [(r, p) for r, p in hostile if len(r.body) < 200_000]  # keep it quick
    for _ in range(count):
        token = f"{MARK}{rng.getrandbits(48):012x}"
        headers = {
            "x-request-id": token,
            "user-agent": f"agent-{token}",
            "idempotency-key": token,
            "x-tenant": token,
            "traceparent": f"00-{rng.getrandbits(128):032x}-{rng.getrandbits(64):016x}-01",
        }
        kind = rng.randrange(6)
        if kind == 0:
            yield {
                "method": "GET",
                "url": f"{base}/{token}/{rng.randrange(10**6)}",
                "headers": headers,
            }
        elif kind == 1:
            yield {"method": "POST", "url": f"{base}/v1/predict/{token}", "headers": headers}
        elif kind == 2:
            yield {
                "method": "GET",
                "url": f"{base}/v1/predict?id={token}&{token}=1",
                "headers": headers,
            }
        elif kind == 3:
            row, path = rng.choice(hostile)
            yield {
                "method": "POST",
                "url": base + path,
                "content": row.body,
                "headers": {**headers, **row.headers},
            }
        elif kind == 4:
            yield {
                "method": "POST",
                "url": f"{base}/v1/feedback",
                "headers": headers,
                "json": {"prediction_id": token, "label": rng.choice(["churn", "stay", token])},
            }
        else:
            yield {
                "method": "POST",
                "url": f"{base}/v1/predict?debug={token}",
                "headers": headers,
                "json": {"record": EXAMPLE_RECORD},
            }


def _send_all(requests: list[dict]) -> dict[int, int]:
    statuses: dict[int, int] = {}

    def send(chunk: list[dict]) -> list[int]:
        with httpx.Client(timeout=30) as client:
            return [client.request(**request).status_code for request in chunk]

    chunks = [requests[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        for codes in pool.map(send, chunks):
            for code in codes:
                statuses[code] = statuses.get(code, 0) + 1
    return statuses


def _series(e2e: E2EStack) -> list[dict]:
    """The services' series as ingested: rule results (alerts, recording rules) come and go
    with the services' health, not with what callers send, and are left out."""
    response = httpx.get(
        f"{e2e.prom_url}/api/v1/series",
        params={"match[]": f"{{{SERVICES}}}", "start": str(time.time() - 60)},
        timeout=30,
    )
    response.raise_for_status()
    return [
        s
        for s in response.json()["data"]
        if not s["__name__"].startswith("ALERTS") and ":" not in s["__name__"]
    ]


def _drained(e2e: E2EStack) -> None:
    """A request sent after the burst has its logs exported under its own trace id (before
    request tasks started in a fresh context, every request after the burst was logged under
    one stale trace id, and this waited in vain)."""
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
    response = httpx.post(
        f"{e2e.gateway_url}/v1/predict",
        json={"record": EXAMPLE_RECORD},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    wait_until(
        lambda: trace_id in _exported_texts(e2e, "logs.jsonl"),
        "the next request's logs under its own trace id",
        timeout_s=120,
        poll_s=0.5,
    )


def _requests_seen(e2e: E2EStack) -> float:
    result = prom(e2e, 'sum(http_server_request_duration_seconds_count{service_name="gateway"})')
    return float(result[0]["value"][1]) if result else 0.0


def _settled(e2e: E2EStack, at_least: float) -> list[dict]:
    """The services' series once Prometheus has counted ``at_least`` gateway requests and
    one more scrape has passed (its series list is then complete for them)."""
    wait_until(
        lambda: _requests_seen(e2e) >= at_least, "the requests counted in Prometheus", 90, 0.5
    )
    target = _requests_seen(e2e) + 1  # the steady load moves it on within a scrape or two
    wait_until(lambda: _requests_seen(e2e) >= target, "one more scrape", 60, 0.5)
    return _series(e2e)


def test_series_do_not_grow_with_random_paths_ids_headers_and_bad_inputs(e2e: E2EStack) -> None:
    rng = random.Random(20261127)
    requests = list(_random_requests(rng, e2e.gateway_url, 10_000))
    before = _requests_seen(e2e)
    first = _send_all(requests[:2_000])
    assert not [code for code in first if code >= 500], first
    series_after_first = _settled(e2e, before + 2_000)
    rest = _send_all(requests[2_000:])
    assert not [code for code in rest if code >= 500], rest
    series_after_all = _settled(e2e, before + 10_000)
    _drained(e2e)

    names = lambda series: {json.dumps(s, sort_keys=True) for s in series}  # noqa: E731
    grown = names(series_after_all) - names(series_after_first)
    statuses = {code: first.get(code, 0) + rest.get(code, 0) for code in {*first, *rest}}
    print(
        f"\ncardinality: 10000 random requests, answers {dict(sorted(statuses.items()))}; "
        f"the services' series after 2000: {len(series_after_first)}, "
        f"after 10000: {len(series_after_all)}"
    )
    assert not grown, f"{len(grown)} new series, e.g. {sorted(grown)[:3]}"
    leaked = [s for s in series_after_all if any(MARK in str(v) for v in s.values())]
    assert not leaked, f"random values in labels: {leaked[:3]}"
