"""Error answers of both apps: one exception, one JSON shape, one counter, one log line.

Every rejection names the field and the problem, carries a reason from a closed set (safe
as a metric label), and is answered with a 4xx, never a 500; a failure of ours is a logged
500 in the same shape, which names no exception, path or internal name. The rejection's
message may echo the caller's values, so it goes into the answer only: logs get the field
and the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from loguru import logger
from opentelemetry import metrics, trace
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..telemetry import Telemetry

T = TypeVar("T")


class Reason(StrEnum):
    """The closed set of rejection reasons (the `validation.reason` metric attribute)."""

    MISSING_FIELD = "missing_field"
    EXTRA_FIELD = "extra_field"
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    UNKNOWN_CATEGORY = "unknown_category"
    EMPTY_BATCH = "empty_batch"
    BATCH_TOO_LARGE = "batch_too_large"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    MALFORMED_JSON = "malformed_json"
    INVALID_SHAPE = "invalid_shape"
    UNAUTHORIZED = "unauthorized"
    REQUEST_TIMEOUT = "request_timeout"


STATUS_BY_REASON: dict[Reason, int] = {
    Reason.BODY_TOO_LARGE: 413,
    Reason.UNSUPPORTED_MEDIA_TYPE: 415,
    Reason.MALFORMED_JSON: 400,
    Reason.UNAUTHORIZED: 401,
    Reason.REQUEST_TIMEOUT: 408,
}


class Rejection(Exception):
    """A request we refuse, with the field at fault (a JSON path such as ``records[2].age``)."""

    def __init__(self, reason: Reason, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.reason = reason
        self.field = field
        self.message = message

    @property
    def status_code(self) -> int:
        return STATUS_BY_REASON.get(self.reason, 422)

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {"reason": self.reason.value, "field": self.field, "message": self.message}
        }


def error_body(reason: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The same JSON shape for errors that are not rejections (upstream failures, 404s)."""
    error: dict[str, Any] = {"reason": reason, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}


def internal_error(exc: BaseException, what: str) -> JSONResponse:
    """A 500 for a failure of ours, logged and recorded on the span where it happened."""
    span = trace.get_current_span()
    span.record_exception(exc)
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
    span.set_attribute("error.type", type(exc).__qualname__)
    logger.opt(exception=exc).bind(event="internal_error", error_type=type(exc).__qualname__).error(
        "{}: {}", what, type(exc).__name__
    )
    return JSONResponse(
        error_body("internal_error", f"{what}; see the service logs"), status_code=500
    )


async def guarded(work: Callable[[], Awaitable[T]], what: str) -> T | JSONResponse:
    """Rejections go to their handler; anything else is a logged 500 on the current span."""
    try:
        return await work()
    except Rejection:
        raise
    except Exception as exc:
        return internal_error(exc, what)


def install_error_handlers(app: FastAPI, telemetry: Telemetry) -> None:
    """Rejections become 4xx JSON, counted and logged; anything unexpected a logged 500."""
    failures: metrics.Counter = telemetry.meter.create_counter(
        "modelobs.validation.failures",
        unit="{failure}",
        description="Requests rejected, by reason",
    )
    for reason in Reason:  # every reason has a series from the start, at 0
        failures.add(0, {"validation.reason": reason.value})

    @app.exception_handler(Rejection)
    async def on_rejection(request: Request, exc: Rejection) -> JSONResponse:
        failures.add(1, {"validation.reason": exc.reason.value})
        span = trace.get_current_span()
        span.set_attribute("modelobs.rejection.reason", exc.reason.value)
        logger.bind(
            event="request_rejected",
            reason=exc.reason.value,
            field=exc.field,
            **{"url.path": request.url.path},
            status_code=exc.status_code,
        ).warning("rejected request: {}: {}", exc.field, exc.reason.value)
        # The message (which may echo the caller's values) goes to the caller only, never
        # to logs or spans. A timed-out body is not read to its end: close the connection.
        headers = {"connection": "close"} if exc.reason is Reason.REQUEST_TIMEOUT else None
        return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_parameter_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI-validated parameters (query strings) answer in the same shape."""
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ("request",))]
        field = ".".join(location[1:]) or location[0]
        reason = Reason.MISSING_FIELD if first.get("type") == "missing" else Reason.WRONG_TYPE
        message = str(first.get("msg", "invalid value"))
        return await on_rejection(request, Rejection(reason, field, message))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(reason, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.opt(exception=exc).bind(
            event="internal_error", **{"url.path": request.url.path}
        ).error("unexpected error: {}", type(exc).__name__)
        return JSONResponse(
            error_body("internal_error", "internal error; see the service logs"), status_code=500
        )
