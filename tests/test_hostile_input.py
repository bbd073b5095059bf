"""The hostile payload table (tests/hostile_payloads.py) against every POST endpoint of both
apps on real sockets: each payload gets its exact 4xx and error body, never a 5xx (the gateway
forwards the model service's 4xx as they are), is counted by reason and logged at the app that
refused it, and both apps keep answering correctly afterwards. Cost: about 3 s."""

from __future__ import annotations

import re

import httpx
import pytest

from .conftest import VALID_RECORD, Stack
from .hostile_payloads import table

ENDPOINTS = {
    "model /predict": ("model", "/predict", "predict"),
    "model /feedback": ("model", "/feedback", "feedback"),
    "gateway /v1/predict": ("gateway", "/v1/predict", "predict"),
    "gateway /v1/feedback": ("gateway", "/v1/feedback", "feedback"),
}


def rejected(stack: Stack) -> tuple[dict[str, float], int]:
    """Rejections counted by reason, and the request_rejected log records, of both apps."""
    counted: dict[str, float] = {}
    logged = 0
    for service in (stack.model, stack.gateway):
        _, points = service.metric_points()["modelobs.validation.failures"]
        for point in points:
            reason = point.attributes["validation.reason"]
            counted[reason] = counted.get(reason, 0) + point.value
        logged += sum(
            1 for r in service.log_records() if r.attributes.get("event") == "request_rejected"
        )
    return counted, logged


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_hostile_payload_gets_its_4xx(stack: Stack, endpoint: str) -> None:
    app, path, kind = ENDPOINTS[endpoint]
    base = stack.model_url if app == "model" else stack.gateway_url
    rows = table(kind)
    wrong: list[str] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for row in rows:
            response = client.post(path, content=row.body, headers=row.headers)
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {"unparsed": response.text[:200]}
            ok = (
                response.status_code == row.status
                and error.get("reason") == row.reason
                and error.get("field") == row.field
                and re.fullmatch(row.message, str(error.get("message"))) is not None
            )
            if not ok:
                wrong.append(f"{row.case}: {response.status_code} {str(error)[:300]}")
        assert not wrong, "\n".join(wrong)
        # Still answering, correctly.
        good = client.post(path.replace("feedback", "predict"), json={"record": VALID_RECORD})
        assert good.status_code == 200
        assert good.json()["predictions"][0]["prediction"] == "churn"

    counted, logged = rejected(stack)
    by_reason: dict[str, int] = {}
    for row in rows:
        by_reason[row.reason] = by_reason.get(row.reason, 0) + 1
    assert {r: n for r, n in counted.items() if n} == by_reason
    assert logged == len(rows)
