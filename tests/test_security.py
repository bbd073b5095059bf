"""Security at the edge, both apps on real sockets: API keys (gateway routes and the model
service's feedback, compared in constant time), error bodies that name no exception, path or
internal name, CORS off by default, security headers on every answer, rejection messages
(which echo the caller's values) kept out of logs and spans. Cost: about 3 s."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelobs.apps import security
from modelobs.apps.slow_clients import server_options
from modelobs.flags import store as flag_store
from modelobs.settings import Settings

from .conftest import VALID_RECORD, Stack, running_stack
from .hostile_payloads import table

KEY = "k3y-for-tests-only"
CANARY = "CANARY-7f3a9"  # a caller's value that must reach no log or span


@pytest.fixture
def apps(request: pytest.FixtureRequest, model_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    """Both apps; ``request.param`` (if any) overrides settings of both, and its
    ``failing_share`` switches the inference-errors flag on for that share of predictions."""
    overrides = dict(getattr(request, "param", {}))
    share = overrides.pop("failing_share", None)
    if share is not None:
        flags_file = tmp_path / "flags.json"
        flag_store.ensure(flags_file)
        flag_store.switch(flags_file, "inference-errors", "on", {"share": share})
        overrides["flags_file"] = flags_file
    with running_stack(model_dir, tmp_path, **overrides) as both:
        yield both


PREDICT = {"record": VALID_RECORD}
FEEDBACK = {"prediction_id": "no-such-prediction", "label": "churn"}


@pytest.mark.parametrize("apps", [{"api_key": KEY}], indirect=True)
def test_api_key_guards_the_gateway_and_feedback(
    apps: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[bytes] = []
    real_compare = security.hmac.compare_digest

    def spy(given: bytes, expected: bytes) -> bool:
        compared.append(given)
        return real_compare(given, expected)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    gw, model = apps.gateway_url, apps.model_url
    guarded = [
        (gw, "/v1/predict", PREDICT),
        (gw, "/v1/feedback", FEEDBACK),
        (model, "/feedback", FEEDBACK),
    ]
    for base, path, body in guarded:
        missing = httpx.post(base + path, json=body)
        wrong = httpx.post(base + path, json=body, headers={"x-api-key": KEY + "x"})
        assert (missing.status_code, wrong.status_code) == (401, 401), path
        assert missing.json()["error"] == {
            "reason": "unauthorized",
            "field": "x-api-key",
            "message": "missing API key",
        }
        assert wrong.json()["error"]["message"] == "invalid API key"
        assert KEY not in wrong.text
    # Every comparison went through hmac.compare_digest (constant time).
    assert compared.count((KEY + "x").encode()) == len(guarded)
    # With the key: the gateway passes, and hands the key on to the model service's feedback.
    ok = httpx.post(gw + "/v1/predict", json=PREDICT, headers={"x-api-key": KEY})
    assert ok.status_code == 200
    prediction_id = ok.json()["predictions"][0]["prediction_id"]
    labelled = httpx.post(
        gw + "/v1/feedback",
        json={"prediction_id": prediction_id, "label": "churn"},
        headers={"x-api-key": KEY},
    )
    assert labelled.status_code == 200, labelled.text
    # The model service's /predict stays open to its gateway without a key.
    assert httpx.post(model + "/predict", json=PREDICT).status_code == 200
    # The key is never logged.
    for service in (apps.model, apps.gateway):
        assert not [r for r in service.log_records() if KEY in str(r.body) + str(r.attributes)]


# A traceback, a source path, a module or an exception class name (FooError, FooException).
INTERNALS = re.compile(
    r"Traceback|File \\?\"|\.py\b|/work/|/usr/|/tmp/|site-packages|modelobs\.|"
    r"[A-Z]\w*(Error|Exception|Fault)\b|uvicorn|starlette|pydantic|sqlite|line \d+, in"
)


@pytest.mark.parametrize("apps", [{"failing_share": 1.0}], indirect=True)
def test_error_bodies_name_no_exception_path_or_internal_name(apps: Stack) -> None:
    answers = {
        "500 of ours": httpx.post(apps.model_url + "/predict", json=PREDICT),
        "502 at the gateway": httpx.post(apps.gateway_url + "/v1/predict", json=PREDICT),
        "404": httpx.get(apps.model_url + "/no/such/path"),
        "405": httpx.get(apps.gateway_url + "/v1/predict"),
        "query 422": httpx.get(apps.model_url + "/predictions", params={"start": "x", "end": 1}),
    }
    for row in table("predict") + table("feedback"):
        path = "/predict" if "record" in row.body[:12].decode(errors="replace") else "/feedback"
        answers[row.case] = httpx.post(apps.model_url + path, content=row.body, headers=row.headers)
    assert answers["500 of ours"].status_code == 500
    assert answers["502 at the gateway"].status_code == 502
    leaks = {case: r.text[:300] for case, r in answers.items() if INTERNALS.search(r.text)}
    assert not leaks, leaks
    assert all(set(r.json()) == {"error"} for r in answers.values())


def test_security_headers_on_every_answer(apps: Stack) -> None:
    answers = [
        httpx.post(apps.model_url + "/predict", json=PREDICT),
        httpx.post(apps.gateway_url + "/v1/predict", json=PREDICT),
        httpx.post(
            apps.gateway_url + "/v1/predict",
            content=b"{",
            headers={"content-type": "application/json"},
        ),
        httpx.get(apps.model_url + "/nope"),
        httpx.get(apps.gateway_url + "/healthz"),
        httpx.get(apps.model_url + "/openapi.json"),
    ]
    for response in answers:
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", response.url
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    # The interactive docs page keeps its scripts (no deny-all CSP), still not sniffable.
    docs = httpx.get(apps.model_url + "/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers
    assert docs.headers["x-content-type-options"] == "nosniff"
    # The served process names no server software (checked on a real one: test_slow_clients).
    assert server_options(Settings())["server_header"] is False


def _preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        url,
        headers={"origin": origin, "access-control-request-method": "POST"},
    )


def test_cors_is_off_by_default(apps: Stack) -> None:
    origin = "https://evil.example"
    for url in (apps.gateway_url + "/v1/predict", apps.model_url + "/predict"):
        assert "access-control-allow-origin" not in _preflight(url, origin).headers
        simple = httpx.post(url, json=PREDICT, headers={"origin": origin})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers


@pytest.mark.parametrize("apps", [{"cors_origins": ["https://ui.example"]}], indirect=True)
def test_cors_allows_only_the_configured_origins(apps: Stack) -> None:
    url = apps.gateway_url + "/v1/predict"
    allowed = _preflight(url, "https://ui.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
    assert "access-control-allow-origin" not in _preflight(url, "https://evil.example").headers


def test_rejection_messages_stay_out_of_logs_and_spans(apps: Stack) -> None:
    """The answer echoes the bad value to its sender; the telemetry does not."""
    sent = [
        {"record": {**VALID_RECORD, "contract": CANARY}},
        {"records": [VALID_RECORD, {**VALID_RECORD, "payment_method": CANARY}]},
        {"record": {**VALID_RECORD, "age": CANARY}},
    ]
    for body in sent:
        for url in (apps.model_url + "/predict", apps.gateway_url + "/v1/predict"):
            response = httpx.post(url, json=body)
            assert response.status_code == 422
    echoed = httpx.post(apps.model_url + "/predict", json=sent[0]).json()["error"]["message"]
    assert CANARY in echoed  # the caller is told what was wrong
    apps.model.finished_spans(servers=7)
    for service in (apps.model, apps.gateway):
        for record in service.log_records():
            assert CANARY not in f"{record.body} {dict(record.attributes)}", record.body
        for span in service.spans.get_finished_spans():
            texts = [str(dict(span.attributes)), str(span.status.description)]
            texts += [f"{e.name} {dict(e.attributes)}" for e in span.events]
            assert not [t for t in texts if CANARY in t], span.name
