"""The gateway over several model-service replicas (MODELOBS_MODEL_URLS): requests spread over
them, a refused replica is skipped and tried again later, and a prediction is made once: a
key's retries reach the replica that holds its first answer, and only a request that cannot
have reached a replica moves to another one. Real apps on real sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import SpanKind

from modelobs.apps import gateway, model_service
from modelobs.apps.replicas import ReplicaSet, parse_urls

from .conftest import VALID_RECORD, make_settings
from .faulty_proxy import Arrival, Fault, Traffic, faulty_proxy
from .servers import Captured, captured, free_port, serve
from .waiting import poll_until


@dataclass
class Replicas:
    gateway_url: str
    urls: list[str]
    models: list[Captured]
    gateway: Captured


def predictions_served(cap: Captured) -> int:
    cap.flush()
    return sum(
        1
        for s in cap.spans.get_finished_spans()
        if s.kind == SpanKind.SERVER and s.name == "POST /predict"
    )


def served_by(models: list[Captured], expected_total: int) -> list[int]:
    """Predictions served by each replica, once ``expected_total`` server spans have ended
    (a server span ends just after its answer is sent) or a deadline passed."""
    served: list[int] = []

    def all_ended() -> bool:
        served[:] = [predictions_served(m) for m in models]
        return sum(served) >= expected_total

    poll_until(all_ended, timeout_s=10)
    return served


def gateway_events(cap: Captured, name: str) -> list[dict]:
    return [dict(r.attributes) for r in cap.log_records() if r.attributes.get("event") == name]


def start_model(
    stack: ExitStack, model_dir: Path, tmp_path: Path, name: str, port: int
) -> Captured:
    """One replica with its own prediction database (each replica's rows can be told apart)."""
    cap = captured("model-service")
    settings = make_settings(model_dir, tmp_path, prediction_db=tmp_path / f"{name}.db")
    stack.enter_context(serve(model_service.create_app(settings, cap.telemetry), port))
    stack.callback(cap.telemetry.shutdown)
    return cap


@contextmanager
def replicas(
    model_dir: Path, tmp_path: Path, live: int, urls_extra: tuple[str, ...] = (), **settings: object
) -> Iterator[Replicas]:
    """``live`` running replicas, then ``urls_extra``, behind one gateway."""
    with ExitStack() as stack:
        ports = [free_port() for _ in range(live)]
        models = [
            start_model(stack, model_dir, tmp_path, f"replica{i}", port)
            for i, port in enumerate(ports)
        ]
        urls = [f"http://127.0.0.1:{p}" for p in ports] + list(urls_extra)
        gw = captured("gateway")
        gw_settings = make_settings(model_dir, tmp_path, model_urls=",".join(urls), **settings)
        gateway_url = stack.enter_context(serve(gateway.create_app(gw_settings, gw.telemetry)))
        stack.callback(gw.telemetry.shutdown)
        yield Replicas(gateway_url, urls, models, gw)


def predict(url: str, key: str | None = None) -> httpx.Response:
    headers = {"idempotency-key": key} if key else {}
    return httpx.post(f"{url}/v1/predict", json={"record": VALID_RECORD}, headers=headers)


def test_urls_parsed_with_the_single_url_as_fallback() -> None:
    assert parse_urls(None, "http://a:1/") == ["http://a:1"]
    assert parse_urls(" , ", "http://a:1") == ["http://a:1"]
    assert parse_urls("http://b:2, http://c:3/", "http://a:1") == ["http://b:2", "http://c:3"]
    with pytest.raises(ValueError, match="listed twice"):
        parse_urls("http://b:2,http://b:2/", "http://a:1")
    with pytest.raises(ValueError, match="not an http"):
        parse_urls("b:2", "http://a:1")


def test_a_refused_replica_is_skipped_longer_each_time_and_cleared_by_an_answer() -> None:
    now = [100.0]
    replica_set = ReplicaSet(["http://a", "http://b"], first_skip_s=1.0, clock=lambda: now[0])
    a, b = replica_set.replicas
    key = next(k for k in map(str, range(100)) if replica_set.ranked(k)[0] is a)
    replica_set.refused(a)
    assert replica_set.ranked(key) == [b, a]  # skipped, yet still tried last
    assert replica_set.available() == 1
    now[0] += 1.0
    assert replica_set.ranked(key) == [a, b]  # tried again after its skip
    replica_set.refused(a)
    now[0] += 1.5
    assert replica_set.ranked(key)[0] is b  # second refusal in a row: 2 s
    now[0] += 0.5
    assert replica_set.ranked(key)[0] is a
    replica_set.answered(a)
    replica_set.refused(a)
    now[0] += 1.0
    assert replica_set.ranked(key)[0] is a  # an answer reset the doubling


def test_the_ranking_is_the_same_everywhere_and_even_over_keys() -> None:
    urls = ["http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.0.3:8000"]
    first, second = ReplicaSet(urls), ReplicaSet(list(reversed(urls)))
    keys = [f"key-{i}" for i in range(3000)]
    firsts = [first.ranked(k)[0].url for k in keys]
    assert firsts == [second.ranked(k)[0].url for k in keys]  # any gateway, any order
    shares = {url: firsts.count(url) / len(keys) for url in urls}
    assert all(0.29 < share < 0.38 for share in shares.values()), shares


def test_requests_spread_over_every_replica(model_dir: Path, tmp_path: Path) -> None:
    with replicas(model_dir, tmp_path, live=2) as stack:
        with httpx.Client() as client:
            answers = [
                client.post(f"{stack.gateway_url}/v1/predict", json={"record": VALID_RECORD})
                for _ in range(100)
            ]
        served = served_by(stack.models, 100)
    assert [a.status_code for a in answers] == [200] * 100
    assert sum(served) == 100  # each request predicted once, by one replica
    assert min(served) >= 25, served  # P(< 25 of 100 at p = 0.5) < 1e-6


def test_a_retried_key_is_replayed_by_the_replica_that_answered_it(
    model_dir: Path, tmp_path: Path
) -> None:
    with replicas(model_dir, tmp_path, live=2) as stack:
        keys = [f"client-key-{i}" for i in range(20)]
        first = [predict(stack.gateway_url, k) for k in keys]
        again = [predict(stack.gateway_url, k) for k in keys]
        served = served_by(stack.models, 40)
    assert all(a.status_code == 200 for a in first + again)
    ids = [a.json()["predictions"][0]["prediction_id"] for a in first]
    assert [a.json()["predictions"][0]["prediction_id"] for a in again] == ids
    assert sum(served) == 40 and min(served) > 0  # both replicas took keys; 20 replays


def test_a_refused_replica_is_skipped_and_every_request_answered(
    model_dir: Path, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    # A long skip: after its first refusal the dead replica is not tried again in this test.
    with replicas(model_dir, tmp_path, live=1, urls_extra=(dead,), upstream_skip_s=600) as stack:
        answers = [predict(stack.gateway_url) for _ in range(40)]
        ready = httpx.get(f"{stack.gateway_url}/readyz")
        [served] = served_by(stack.models, 40)
        retries = gateway_events(stack.gateway, "upstream_retry")
        _, [available] = stack.gateway.metric_points()["modelobs.gateway.upstream.available"]
    assert [a.status_code for a in answers] == [200] * 40
    assert served == 40
    assert ready.status_code == 200  # one replica ready is enough
    # Exactly one connection refused, on the dead replica; moved on at once.
    assert [(r["error.type"], r["server.url"]) for r in retries] == [("ConnectError", dead)]
    assert available.value == 1


def test_a_replica_back_after_refusing_gets_traffic_again(model_dir: Path, tmp_path: Path) -> None:
    back_port = free_port()
    back_url = f"http://127.0.0.1:{back_port}"
    with replicas(
        model_dir, tmp_path, live=1, urls_extra=(back_url,), upstream_skip_s=0.2
    ) as stack:
        assert all(predict(stack.gateway_url).status_code == 200 for _ in range(20))
        assert gateway_events(stack.gateway, "upstream_retry")  # it refused at first
        with ExitStack() as later:
            back = start_model(later, model_dir, tmp_path, "back", back_port)
            deadline = time.monotonic() + 30
            while predictions_served(back) == 0 and time.monotonic() < deadline:
                assert predict(stack.gateway_url).status_code == 200
            assert predictions_served(back) > 0


def test_a_request_that_may_have_arrived_is_retried_on_the_same_replica_only(
    model_dir: Path, tmp_path: Path
) -> None:
    """The first replica sits behind a proxy that loses its first answer after the
    prediction was made: the retry goes to that replica again and is replayed; the other
    replica never sees the request."""
    with ExitStack() as stack:
        port_a, port_b = free_port(), free_port()
        model_a = start_model(stack, model_dir, tmp_path, "a", port_a)
        model_b = start_model(stack, model_dir, tmp_path, "b", port_b)

        def plan(arrival: Arrival) -> Fault:
            return Fault.DROP_ANSWER if arrival.number == 1 else Fault.NONE

        proxy_url, traffic = stack.enter_context(faulty_proxy(port_a, plan))
        urls = [proxy_url, f"http://127.0.0.1:{port_b}"]
        ranking = ReplicaSet(urls)
        key = next(f"k{i}" for i in range(100) if ranking.ranked(f"k{i}")[0].url == proxy_url)
        gw = captured("gateway")
        settings = make_settings(model_dir, tmp_path, model_urls=",".join(urls))
        gateway_url = stack.enter_context(serve(gateway.create_app(settings, gw.telemetry)))
        response = predict(gateway_url, key)
        served = tuple(served_by([model_a, model_b], 2))
        retries = gateway_events(gw, "upstream_retry")
        gw.telemetry.shutdown()
    assert isinstance(traffic, Traffic) and traffic.faults == [Fault.DROP_ANSWER]
    assert response.status_code == 200
    assert served == (2, 0)  # the prediction and its replay, both on replica a
    assert [(r["error.type"], r["server.url"]) for r in retries] == [
        ("RemoteProtocolError", proxy_url)
    ]
