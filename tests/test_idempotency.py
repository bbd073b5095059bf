"""Idempotency-Key: a repeat gets the first answer (waiting for it while it runs), a reused key
with another body is refused, failures are not kept, and the map stays within its bounds."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import Response
from fastapi.responses import JSONResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from modelobs.apps.errors import Rejection
from modelobs.apps.idempotency import (
    ENTRY_OVERHEAD_BYTES,
    MAX_KEY_LENGTH,
    IdempotentAnswers,
    parse_key,
)

from .conftest import VALID_RECORD, Stack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_answers(**bounds: float) -> tuple[IdempotentAnswers, InMemoryMetricReader, Clock]:
    reader = InMemoryMetricReader()
    clock = Clock()
    values = {"window_s": 60.0, "max_entries": 100, "max_bytes": 1 << 20, **bounds}
    answers = IdempotentAnswers(
        MeterProvider(metric_readers=[reader]).get_meter("t"),
        window_s=values["window_s"],
        max_entries=int(values["max_entries"]),
        max_bytes=int(values["max_bytes"]),
        max_body_bytes=4096,
        clock=clock,
    )
    return answers, reader, clock


def counted(reader: InMemoryMetricReader) -> dict[str, dict]:
    data = reader.get_metrics_data()
    out: dict[str, dict] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out[m.name] = {
                    p.attributes.get("idempotency.outcome"): p.value for p in m.data.data_points
                }
    return out


class Work:
    """Counts its calls; each answers a new numbered body (a new "prediction")."""

    def __init__(self, status: int = 200) -> None:
        self.calls = 0
        self.status = status
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Response:
        self.calls += 1
        number = self.calls
        if self.gate is not None:
            await self.gate.wait()
        return JSONResponse({"prediction": number}, status_code=self.status)


def body(response: Response) -> dict:
    return json.loads(bytes(response.body))


def test_repeat_gets_the_first_answer_marked_replayed() -> None:
    answers, reader, _ = make_answers()
    work = Work()

    async def run() -> tuple[Response, Response]:
        return await answers.once("k", b"fp", work), await answers.once("k", b"fp", work)

    first, again = asyncio.run(run())
    assert work.calls == 1
    assert body(first) == body(again) == {"prediction": 1}
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert counted(reader)["modelobs.idempotency.repeats"] == {
        "replayed": 1,
        "awaited": 0,
        "key_reused": 0,
    }


def test_repeat_while_the_first_runs_waits_for_its_answer() -> None:
    answers, reader, _ = make_answers()
    work = Work()
    work.gate = asyncio.Event()

    async def run() -> list[Response]:
        first = asyncio.create_task(answers.once("k", b"fp", work))
        repeats = [asyncio.create_task(answers.once("k", b"fp", work)) for _ in range(3)]
        while work.calls == 0:  # the first is inside its work, the repeats waiting on it
            await asyncio.sleep(0)  # hands the loop to those tasks: no time passes
        assert work.gate is not None
        work.gate.set()
        return await asyncio.gather(first, *repeats)

    results = asyncio.run(run())
    assert work.calls == 1
    assert [body(r) for r in results] == [{"prediction": 1}] * 4
    assert counted(reader)["modelobs.idempotency.repeats"]["awaited"] == 3


def test_key_reused_with_another_body_is_refused() -> None:
    answers, reader, _ = make_answers()
    work = Work()

    async def run() -> Response:
        await answers.once("k", b"body-a", work)
        return await answers.once("k", b"body-b", work)

    refused = asyncio.run(run())
    assert work.calls == 1
    assert refused.status_code == 422
    assert body(refused)["error"] == {
        "reason": "idempotency_key_reused",
        "field": "idempotency-key",
        "message": "this Idempotency-Key was used with a different request body",
    }
    assert counted(reader)["modelobs.idempotency.repeats"]["key_reused"] == 1


@pytest.mark.parametrize("failure", ["status", "exception"])
def test_a_failed_first_attempt_is_not_kept(failure: str) -> None:
    """No prediction is recorded when a request fails, so running the repeat cannot predict
    twice, and it gets a fresh chance instead of the failure."""
    answers, _, _ = make_answers()
    failing = Work(status=500)

    async def broken() -> Response:
        raise RuntimeError("prediction failed")

    async def run() -> Response:
        if failure == "status":
            assert (await answers.once("k", b"fp", failing)).status_code == 500
        else:
            with pytest.raises(RuntimeError):
                await answers.once("k", b"fp", broken)
        return await answers.once("k", b"fp", Work())

    assert asyncio.run(run()).status_code == 200
    assert len(answers) == 1


def test_waiters_of_a_failed_first_run_it_once_more() -> None:
    answers, _, _ = make_answers()
    gate = asyncio.Event()
    failing, retried = Work(status=503), Work()
    failing.gate = gate

    async def run() -> list[Response]:
        first = asyncio.create_task(answers.once("k", b"fp", failing))
        waiters = [asyncio.create_task(answers.once("k", b"fp", retried)) for _ in range(3)]
        while failing.calls == 0:
            await asyncio.sleep(0)  # hands the loop to the tasks above: no time passes
        gate.set()
        return await asyncio.gather(first, *waiters)

    results = asyncio.run(run())
    assert [r.status_code for r in results] == [503, 200, 200, 200]
    assert retried.calls == 1  # one waiter ran it; the others waited for that one


def test_answers_expire_after_the_window() -> None:
    answers, _, clock = make_answers(window_s=60)
    work = Work()

    async def once() -> Response:
        return await answers.once("k", b"fp", work)

    asyncio.run(once())
    clock.now += 59.9
    assert body(asyncio.run(once())) == {"prediction": 1}
    clock.now += 0.2
    assert body(asyncio.run(once())) == {"prediction": 2}
    assert work.calls == 2


def test_entry_and_byte_bounds_evict_the_oldest_and_count_it() -> None:
    answers, reader, _ = make_answers(max_entries=3)
    work = Work()

    async def fill(store: IdempotentAnswers, keys: list[str]) -> None:
        for key in keys:
            await store.once(key, b"fp", work)

    asyncio.run(fill(answers, [f"k{i}" for i in range(5)]))
    assert len(answers) == 3
    assert counted(reader)["modelobs.idempotency.evictions"] == {None: 2}
    asyncio.run(fill(answers, ["k0", "k4"]))  # k0 was evicted: runs again; k4 is kept
    assert work.calls == 6

    entry_size = len("k0") + len(b'{"prediction":1}') + ENTRY_OVERHEAD_BYTES
    by_bytes, _, _ = make_answers(max_bytes=2 * entry_size + 10)
    asyncio.run(fill(by_bytes, [f"k{i}" for i in range(4)]))
    assert len(by_bytes) == 2
    assert 0 < by_bytes.stored_bytes <= by_bytes.max_bytes


@pytest.mark.parametrize(
    "value",
    ["", "x" * (MAX_KEY_LENGTH + 1), "tab\there", "caf\u00e9", "new\nline"],
    ids=["empty", "too-long", "tab", "non-ascii", "newline"],
)
def test_invalid_keys_are_rejected_naming_the_header(value: str) -> None:
    with pytest.raises(Rejection) as caught:
        parse_key(value)
    assert caught.value.field == "idempotency-key"
    assert caught.value.status_code == 422


def test_valid_keys_are_taken_as_they_are() -> None:
    assert parse_key(None) is None
    assert parse_key("x" * MAX_KEY_LENGTH) == "x" * MAX_KEY_LENGTH
    assert parse_key('"8e03978e-40d5-43e8-bc93-6894a57f9324"').startswith('"8e03')


def test_a_callers_key_makes_its_retries_safe_through_the_gateway(stack: Stack) -> None:
    url = f"{stack.gateway_url}/v1/predict"
    headers = {"Idempotency-Key": "order-42"}
    first = httpx.post(url, json={"record": VALID_RECORD}, headers=headers)
    again = httpx.post(url, json={"record": VALID_RECORD}, headers=headers)
    other = httpx.post(url, json={"record": {**VALID_RECORD, "age": 70}}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert first.headers["idempotency-key"] == again.headers["idempotency-key"] == "order-42"
    assert other.status_code == 422
    assert other.json()["error"]["reason"] == "idempotency_key_reused"
    _, predicted = stack.model.metric_points()["modelobs.predictions"]
    assert sum(p.value for p in predicted) == 1


def test_gateway_makes_a_key_per_request(stack: Stack) -> None:
    url = f"{stack.gateway_url}/v1/predict"
    answers = [httpx.post(url, json={"record": VALID_RECORD}) for _ in range(2)]
    keys = {a.headers["idempotency-key"] for a in answers}
    assert len(keys) == 2
    assert len({a.json()["predictions"][0]["prediction_id"] for a in answers}) == 2


@pytest.mark.parametrize("target", ["gateway", "model"])
def test_an_invalid_key_is_a_counted_422(stack: Stack, target: str) -> None:
    base, path, cap = {
        "gateway": (stack.gateway_url, "/v1/predict", stack.gateway),
        "model": (stack.model_url, "/predict", stack.model),
    }[target]
    response = httpx.post(
        f"{base}{path}", json={"record": VALID_RECORD}, headers={"Idempotency-Key": "k" * 256}
    )
    assert response.status_code == 422
    assert response.json()["error"] == {
        "reason": "invalid_shape",
        "field": "idempotency-key",
        "message": f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
    }
    _, points = cap.metric_points()["modelobs.validation.failures"]
    assert {p.attributes["validation.reason"]: p.value for p in points}["invalid_shape"] == 1
