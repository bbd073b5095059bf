"""Every bad input gets its exact 4xx and message, is counted by reason, and is logged;
the services keep answering correctly afterwards."""

from __future__ import annotations

import json

import httpx
import pytest

from .conftest import VALID_RECORD, Stack

JSON = "application/json"


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def with_(**changes: object) -> dict[str, object]:
    return {"record": {**VALID_RECORD, **changes}}


def without(name: str) -> dict[str, object]:
    return {"record": {k: v for k, v in VALID_RECORD.items() if k != name}}


EXPECTED_FEATURES = (
    "tenure_months, monthly_charges, support_calls, age, data_usage_gb, contract, payment_method"
)

# (id, raw body, content type, status, reason, field, message)
CASES: list[tuple[str, bytes, str | None, int, str, str, str]] = [
    (
        "missing feature",
        body(without("age")),
        JSON,
        422,
        "missing_field",
        "record.age",
        "required feature is missing",
    ),
    (
        "extra feature",
        body(with_(colour="red")),
        JSON,
        422,
        "extra_field",
        "record.colour",
        f"unknown feature (expected: {EXPECTED_FEATURES})",
    ),
    (
        "unknown feature reported before a wrong type",
        body(with_(age="x", colour="red")),
        JSON,
        422,
        "extra_field",
        "record.colour",
        f"unknown feature (expected: {EXPECTED_FEATURES})",
    ),
    (
        "unknown feature name shortened",
        body(with_(**{"f" * 60: 1})),
        JSON,
        422,
        "extra_field",
        "record." + "f" * 40,
        f"unknown feature (expected: {EXPECTED_FEATURES})",
    ),
    (
        "string for number",
        body(with_(age="thirty")),
        JSON,
        422,
        "wrong_type",
        "record.age",
        "expected a number, got string",
    ),
    (
        "boolean for number",
        body(with_(monthly_charges=True)),
        JSON,
        422,
        "wrong_type",
        "record.monthly_charges",
        "expected a number, got boolean",
    ),
    (
        "null for number",
        body(with_(tenure_months=None)),
        JSON,
        422,
        "wrong_type",
        "record.tenure_months",
        "expected a number, got null",
    ),
    (
        "fraction for integer",
        body(with_(support_calls=2.5)),
        JSON,
        422,
        "wrong_type",
        "record.support_calls",
        "expected an integer, got 2.5",
    ),
    (
        "number for category",
        body(with_(contract=2)),
        JSON,
        422,
        "wrong_type",
        "record.contract",
        "expected a string, got number",
    ),
    (
        "NaN",
        b'{"record": {"tenure_months": 3, "monthly_charges": NaN, "support_calls": 1, "age": 30, "data_usage_gb": 1, "contract": "one-year", "payment_method": "card"}}',
        JSON,
        422,
        "not_finite",
        "record.monthly_charges",
        "must be a finite number, got nan",
    ),
    (
        "Infinity",
        b'{"record": {"tenure_months": 3, "monthly_charges": 5, "support_calls": 1, "age": 30, "data_usage_gb": -Infinity, "contract": "one-year", "payment_method": "card"}}',
        JSON,
        422,
        "not_finite",
        "record.data_usage_gb",
        "must be a finite number, got -inf",
    ),
    (
        "overflow to infinity",
        b'{"record": {"tenure_months": 3, "monthly_charges": 5, "support_calls": 1, "age": 1e400, "data_usage_gb": 1, "contract": "one-year", "payment_method": "card"}}',
        JSON,
        422,
        "not_finite",
        "record.age",
        "must be a finite number, got inf",
    ),
    (
        "integer too large for a float",
        b'{"record": {"tenure_months": 3, "monthly_charges": 5, "support_calls": 1, "age": 1'
        + b"0" * 400
        + b', "data_usage_gb": 1, "contract": "one-year", "payment_method": "card"}}',
        JSON,
        422,
        "not_finite",
        "record.age",
        "must be a finite number, got inf",
    ),
    (
        "unknown category",
        body(with_(contract="lifetime")),
        JSON,
        422,
        "unknown_category",
        "record.contract",
        "unknown category 'lifetime' (allowed: month-to-month, one-year, two-year)",
    ),
    ("empty batch", body({"records": []}), JSON, 422, "empty_batch", "records", "batch is empty"),
    (
        "oversize batch",
        body({"records": [VALID_RECORD] * 257}),
        JSON,
        422,
        "batch_too_large",
        "records",
        "batch of 257 records exceeds the limit of 256",
    ),
    (
        "bad record in batch",
        body({"records": [VALID_RECORD, {**VALID_RECORD, "age": "x"}]}),
        JSON,
        422,
        "wrong_type",
        "records[1].age",
        "expected a number, got string",
    ),
    (
        "first bad record reported",
        body({"records": [VALID_RECORD, {**VALID_RECORD, "age": None}, {**VALID_RECORD, "x": 1}]}),
        JSON,
        422,
        "wrong_type",
        "records[1].age",
        "expected a number, got null",
    ),
    (
        "unknown top-level field reported before a bad record",
        body({"record": {**VALID_RECORD, "age": "x"}, "debug": True}),
        JSON,
        422,
        "extra_field",
        "debug",
        "unknown top-level field (expected exactly one of 'record' or 'records')",
    ),
    (
        "records not an array",
        body({"records": {"a": 1}}),
        JSON,
        422,
        "invalid_shape",
        "records",
        "expected an array, got object",
    ),
    (
        "record not an object",
        body({"record": [1, 2]}),
        JSON,
        422,
        "invalid_shape",
        "record",
        "expected an object, got array",
    ),
    (
        "body is an array",
        body([VALID_RECORD]),
        JSON,
        422,
        "invalid_shape",
        "body",
        "expected a JSON object with 'record' or 'records', got array",
    ),
    (
        "neither key",
        body({}),
        JSON,
        422,
        "invalid_shape",
        "body",
        "expected exactly one of 'record' or 'records'",
    ),
    (
        "unknown top-level key",
        body({"record": VALID_RECORD, "debug": True}),
        JSON,
        422,
        "extra_field",
        "debug",
        "unknown top-level field (expected exactly one of 'record' or 'records')",
    ),
    (
        "malformed JSON",
        b'{"record": {"age": 3',
        JSON,
        400,
        "malformed_json",
        "body",
        "invalid JSON at line 1 column 21: Expecting ',' delimiter",
    ),
    (
        "number past the digit limit",
        b'{"record": {"age": ' + b"9" * 5000 + b"}}",
        JSON,
        400,
        "malformed_json",
        "body",
        "invalid JSON: number out of range at line 1 column 4321",
    ),
    ("empty body", b"", JSON, 400, "malformed_json", "body", "request body is empty"),
    (
        "not UTF-8",
        b'{"record": "\xff\xfe"}',
        JSON,
        400,
        "malformed_json",
        "body",
        "request body is not valid UTF-8",
    ),
    (
        "wrong content type",
        body(with_()),
        "text/plain",
        415,
        "unsupported_media_type",
        "content-type",
        "expected application/json, got text/plain",
    ),
    (
        "no content type",
        body(with_()),
        None,
        415,
        "unsupported_media_type",
        "content-type",
        "expected application/json, got none",
    ),
    (
        "oversize body",
        b'{"record": "' + b"x" * 1_100_000 + b'"}',
        JSON,
        413,
        "body_too_large",
        "body",
        "request body exceeds the limit of 1048576 bytes",
    ),
]


@pytest.mark.parametrize("url_key", ["model", "gateway"])
def test_bad_input_table(stack: Stack, url_key: str) -> None:
    base, path = (
        (stack.model_url, "/predict") if url_key == "model" else (stack.gateway_url, "/v1/predict")
    )
    with httpx.Client(base_url=base) as client:
        for case_id, raw, content_type, status, reason, field, message in CASES:
            headers = {"content-type": content_type} if content_type else {}
            response = client.post(path, content=raw, headers=headers)
            assert response.status_code == status, case_id
            assert response.json() == {
                "error": {"reason": reason, "field": field, "message": message}
            }, case_id
        # Still healthy and correct afterwards.
        good = client.post(path, json={"record": VALID_RECORD})
        assert good.status_code == 200
        assert good.json()["predictions"][0]["prediction"] == "churn"

    # Counted by reason on the service that rejected them, and logged with the field.
    service = stack.model if url_key == "model" else stack.gateway
    stack.model.finished_spans(servers=len(CASES) + 1)
    _, points = stack.model.metric_points()["modelobs.validation.failures"]
    counted = {p.attributes["validation.reason"]: p.value for p in points if p.value}
    assert {p.attributes["validation.reason"] for p in points} >= set(counted)
    rejected_at_model = [
        c for c in CASES if not (url_key == "gateway" and c[4] == "body_too_large")
    ]
    expected: dict[str, int] = {}
    for case in rejected_at_model:
        expected[case[4]] = expected.get(case[4], 0) + 1
    assert counted == expected
    logs = [r for r in stack.model.log_records() if r.attributes.get("event") == "request_rejected"]
    assert {(r.attributes["reason"], r.attributes["field"]) for r in logs} == {
        (c[4], c[5]) for c in rejected_at_model
    }
    assert all(r.severity_text == "WARN" for r in logs)
    if url_key == "gateway":
        _, points = service.metric_points()["modelobs.validation.failures"]
        assert {p.attributes["validation.reason"]: p.value for p in points if p.value} == {
            "body_too_large": 1
        }


def test_unknown_route_and_method_are_json_4xx(stack: Stack) -> None:
    missing = httpx.get(f"{stack.model_url}/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["reason"] == "not_found"
    wrong_method = httpx.get(f"{stack.model_url}/predict")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["reason"] == "method_not_allowed"


def test_query_parameter_errors_use_the_same_shape(stack: Stack) -> None:
    bad = httpx.get(f"{stack.model_url}/predictions", params={"start": "yesterday", "end": 5})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["reason"] == "wrong_type" and error["field"] == "start"
    missing = httpx.get(f"{stack.model_url}/predictions", params={"start": 1})
    assert missing.status_code == 422
    assert missing.json()["error"] == {
        "reason": "missing_field",
        "field": "end",
        "message": "Field required",
    }
