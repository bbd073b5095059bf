"""What the apps' routes declare for /openapi.json: request bodies, answers and error shapes.

The request bodies are read and validated by hand (the size limit is enforced before any
parsing), so FastAPI cannot see them: each POST names its body's component here, and the
document gets the components from the ApiContract in force, built at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from .api_models import REF_TEMPLATE, ApiContract, ErrorBody, RejectionBody

_WHY = {
    400: "Malformed JSON",
    401: "Missing or wrong x-api-key",
    404: "Not found",
    409: "Conflicts with what is recorded",
    413: "Body over the size limit",
    415: "Not application/json",
    422: "Invalid body or parameter",
    502: "The model service failed",
    503: "The model service is unreachable",
    504: "The model service did not answer in time",
}
_EXAMPLES: dict[int, dict[str, str]] = {
    400: {
        "reason": "malformed_json",
        "field": "body",
        "message": "invalid JSON at line 1 column 21: Expecting ',' delimiter",
    },
    401: {"reason": "unauthorized", "field": "x-api-key", "message": "missing API key"},
    404: {
        "reason": "unknown_prediction",
        "field": "prediction_id",
        "message": "no prediction with this id",
    },
    409: {
        "reason": "label_conflict",
        "field": "label",
        "message": "prediction already labelled 'stay'",
    },
    413: {
        "reason": "body_too_large",
        "field": "body",
        "message": "request body exceeds the limit of 1048576 bytes",
    },
    415: {
        "reason": "unsupported_media_type",
        "field": "content-type",
        "message": "expected application/json, got text/plain",
    },
    422: {
        "reason": "unknown_category",
        "field": "records[2].contract",
        "message": "unknown category 'lifetime' (allowed: month-to-month, one-year, two-year)",
    },
    502: {"reason": "upstream_error", "message": "model service failed with status 500"},
    503: {
        "reason": "upstream_unavailable",
        "message": "model service unreachable after 3 attempts",
    },
    504: {"reason": "upstream_timeout", "message": "model service did not answer in time"},
}
REJECTION_STATUSES = frozenset({400, 401, 413, 415, 422})


def answers(ok: type[BaseModel] | None, *errors: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: its 200 body and each error status with its shape."""
    declared: dict[int | str, dict[str, Any]] = {}
    if ok is not None:
        declared[200] = {"model": ok}
    for status in errors:
        declared[status] = {
            "model": RejectionBody if status in REJECTION_STATUSES else ErrorBody,
            "description": _WHY[status],
            "content": {"application/json": {"example": {"error": _EXAMPLES[status]}}},
        }
    return declared


def json_body(component: str) -> dict[str, Any]:
    """``openapi_extra=`` declaring a required JSON body of the named component."""
    schema = {"$ref": REF_TEMPLATE.format(model=component)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def document_contract(app: FastAPI, contract: Callable[[], ApiContract]) -> None:
    """The app's document gets the request components of ``contract()``: FastAPI builds (and
    caches) the rest, the components are set on each call, so the document follows the
    contract in force."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        document.setdefault("components", {}).setdefault("schemas", {}).update(
            contract().components
        )
        return document

    app.openapi = openapi  # type: ignore[method-assign]
