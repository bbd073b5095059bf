"""/openapi.json of both apps: every POST has its JSON body, the record schema is the loaded
model's, every error status has the error shape, examples are accepted, /docs renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from modelobs.apps import gateway
from modelobs.apps.errors import Reason
from modelobs.model.store import ModelBundle

from .conftest import Stack, make_settings
from .servers import captured

REF = "#/components/schemas/"
BODIES = {"/predict": "PredictRequest", "/feedback": "FeedbackRequest"}
OK = {"/predict": "PredictResponse", "/feedback": "FeedbackResponse"}
ERRORS = {"/predict": {400, 413, 415, 422}, "/feedback": {400, 404, 409, 413, 415, 422}}
UPSTREAM_ERRORS = {502, 503, 504}
REJECTIONS = {400, 401, 413, 415, 422}


def documents(stack: Stack) -> dict[str, dict[str, Any]]:
    return {
        "model": httpx.get(f"{stack.model_url}/openapi.json").json(),
        "gateway": httpx.get(f"{stack.gateway_url}/openapi.json").json(),
    }


def component(document: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith(REF), ref
    return document["components"]["schemas"][ref.removeprefix(REF)]  # type: ignore[no-any-return]


def response_ref(operation: dict[str, Any], status: int) -> str:
    return operation["responses"][str(status)]["content"]["application/json"]["schema"]["$ref"]  # type: ignore[no-any-return]


def test_every_post_declares_its_body_answer_and_errors(stack: Stack) -> None:
    for app, document in documents(stack).items():
        prefix = "/v1" if app == "gateway" else ""
        posts = {path for path, item in document["paths"].items() if "post" in item}
        assert posts == {prefix + path for path in BODIES}, app
        for path, body in BODIES.items():
            operation = document["paths"][prefix + path]["post"]
            request = operation["requestBody"]
            assert request["required"] is True
            assert request["content"]["application/json"]["schema"] == {"$ref": REF + body}
            assert component(document, REF + body)  # the reference resolves
            assert response_ref(operation, 200) == REF + OK[path]
            expected = ERRORS[path] | (UPSTREAM_ERRORS if app == "gateway" else set())
            errors = {int(s) for s in operation["responses"] if int(s) >= 400}
            assert errors == expected, (app, path)
            for status in errors:
                shape = "RejectionBody" if status in REJECTIONS else "ErrorBody"
                assert response_ref(operation, status) == REF + shape, (app, path, status)
                example = operation["responses"][str(status)]["content"]["application/json"]
                assert example["example"]["error"]["reason"]
        # The closed set of reasons is what the document promises; FastAPI's own 422 shape,
        # which the apps never answer, is nowhere.
        assert set(document["components"]["schemas"]["Reason"]["enum"]) == set(Reason)
        assert "HTTPValidationError" not in document["components"]["schemas"], app


def test_the_documented_record_is_the_loaded_models_schema(
    stack: Stack, bundle: ModelBundle
) -> None:
    document = documents(stack)["model"]
    schemas = document["components"]["schemas"]
    record = schemas["Record"]
    features = {f.name: f for f in bundle.schema.features}
    assert list(record["properties"]) == list(features)
    assert set(record["required"]) == set(features)
    assert record["additionalProperties"] is False
    for name, feature in features.items():
        documented = record["properties"][name]
        if feature.kind == "categorical":
            assert documented["enum"] == list(feature.categories), name
        else:
            assert documented["type"] == "number", name
            assert documented.get("multipleOf") == (1 if feature.integer else None), name
    batch = schemas["RecordBatch"]["properties"]["records"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 256)
    assert batch["items"] == {"$ref": REF + "Record"}
    assert schemas["SingleRecord"]["properties"]["record"] == {"$ref": REF + "Record"}
    feedback = schemas["FeedbackRequest"]
    assert feedback["properties"]["label"]["enum"] == list(bundle.schema.classes)
    prediction_id = feedback["properties"]["prediction_id"]
    assert (prediction_id["minLength"], prediction_id["maxLength"]) == (1, 64)
    # The gateway forwards unparsed bytes: same envelopes, a generic record.
    generic = documents(stack)["gateway"]["components"]["schemas"]
    assert "Record" not in generic
    assert generic["SingleRecord"]["properties"]["record"]["type"] == "object"


def test_documented_examples_are_accepted(stack: Stack) -> None:
    for app, document in documents(stack).items():
        base, prefix = (stack.gateway_url, "/v1") if app == "gateway" else (stack.model_url, "")
        schemas = document["components"]["schemas"]
        examples = schemas["PredictRequest"]["examples"]
        assert [set(e) for e in examples] == [{"record"}, {"records"}]
        for example in examples:
            answer = httpx.post(f"{base}{prefix}/predict", json=example)
            assert answer.status_code == 200, (app, answer.text)
            assert len(answer.json()["predictions"]) == len(example.get("records", [1]))
        (feedback,) = schemas["FeedbackRequest"]["examples"]
        answer = httpx.post(f"{base}{prefix}/feedback", json=feedback)
        assert answer.status_code == 404, answer.text  # well-formed; the id is made up
        assert answer.json()["error"]["reason"] == "unknown_prediction"


def test_docs_page_renders_the_document(stack: Stack) -> None:
    for base in (stack.model_url, stack.gateway_url):
        page = httpx.get(f"{base}/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "swagger-ui" in page.text and "/openapi.json" in page.text


@pytest.mark.parametrize("api_key", [None, "s3cret-key"])
def test_api_key_is_documented_when_required(
    model_dir: Path, tmp_path: Path, api_key: str | None
) -> None:
    telemetry = captured("gateway")
    settings = make_settings(model_dir, tmp_path, api_key=api_key)
    document = gateway.create_app(settings, telemetry.telemetry).openapi()
    telemetry.telemetry.shutdown()
    for path in ("/v1/predict", "/v1/feedback"):
        operation = document["paths"][path]["post"]
        if api_key is None:
            assert "security" not in operation and "401" not in operation["responses"]
        else:
            assert operation["security"] == [{"APIKeyHeader": []}]
            assert response_ref(operation, 401) == REF + "RejectionBody"
    schemes = document.get("components", {}).get("securitySchemes", {})
    if api_key is None:
        assert schemes == {}
    else:
        assert schemes["APIKeyHeader"] == {
            "type": "apiKey",
            "in": "header",
            "name": "x-api-key",
            "description": "The service's API key (MODELOBS_API_KEY)",
        }
