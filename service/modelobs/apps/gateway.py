"""The gateway: authenticates, bounds, and forwards to the model service with trace context.

Every forwarded request carries an ``Idempotency-Key`` (the caller's, or one made here), the
same on every attempt, and the model service answers a repeated key with its first answer
(apps/idempotency.py). So the gateway retries every transport failure, even one after the
model service may have read the request (a connection dropped before the answer, a stale
keep-alive connection), and a prediction is still never made twice.

A timeout is answered 504 at once, not retried: a slow model service gets no extra load. The
504 carries the key, so the caller can retry it safely within the model service's window.
"""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from loguru import logger
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from ..flags.client import FaultFlags
from ..flags.faults import FaultyHopTransport
from ..flags.metrics import register_active_gauge
from ..settings import Settings, get_settings
from ..telemetry import Telemetry
from .api_docs import answers, document_contract, json_body
from .api_models import ApiContract, FeedbackResponse, PredictResponse
from .errors import Reason, Rejection, error_body, guarded
from .idempotency import IDEMPOTENCY_HEADER, parse_key
from .request_body import read_limited
from .service_app import create_service_app, start_telemetry

SERVICE_NAME = "gateway"
RETRY_BACKOFF_S = 0.05
# Headers worth passing on; hop-by-hop and auth headers stay at the gateway.
FORWARDED_HEADERS = ("content-type", "accept")


class Upstream:
    """The model service, reached through one pooled, instrumented client."""

    def __init__(
        self,
        settings: Settings,
        telemetry: Telemetry,
        transport: Any = None,
        flags: FaultFlags | None = None,
    ) -> None:
        self.settings = settings
        inner = transport or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
        )
        self.client = httpx.AsyncClient(
            base_url=settings.model_url,
            timeout=httpx.Timeout(settings.upstream_timeout_s),
            # The model-hop fault flag acts inside each attempt's client span.
            transport=FaultyHopTransport(inner, flags or FaultFlags(None)),
        )
        if telemetry.enabled:
            HTTPXClientInstrumentor().instrument_client(
                self.client,
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
            )

    async def forward(self, path: str, request: Request) -> Response:
        key = parse_key(request.headers.get(IDEMPOTENCY_HEADER)) or str(uuid.uuid4())
        body = await read_limited(request, self.settings.max_body_bytes)
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        headers[IDEMPOTENCY_HEADER] = key
        answer_headers = {IDEMPOTENCY_HEADER: key}
        attempts = self.settings.upstream_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                upstream = await self.client.post(path, content=body, headers=headers)
            except httpx.TimeoutException:
                return self._fail(
                    504, "upstream_timeout", "model service did not answer in time", key
                )
            except httpx.TransportError as exc:
                # Safe to retry whether or not the model service read the request: same key.
                if attempt < attempts:
                    logger.bind(
                        event="upstream_retry",
                        attempt=attempt,
                        **{"error.type": type(exc).__name__, "idempotency.key": key},
                    ).warning("no answer from the model service ({}), retrying", type(exc).__name__)
                    await asyncio.sleep(RETRY_BACKOFF_S * attempt)
                    continue
                return self._fail(
                    503,
                    "upstream_unavailable",
                    f"model service unreachable after {attempts} attempts",
                    key,
                )
            if upstream.status_code >= 500:
                return self._fail(
                    502,
                    "upstream_error",
                    f"model service failed with status {upstream.status_code}",
                    key,
                )
            return Response(
                upstream.content,
                status_code=upstream.status_code,
                media_type=upstream.headers.get("content-type", "application/json"),
                headers=answer_headers,
            )
        raise AssertionError("unreachable")

    def _fail(self, status: int, reason: str, message: str, key: str) -> JSONResponse:
        logger.bind(
            event="upstream_failed",
            reason=reason,
            status_code=status,
            **{"idempotency.key": key},
        ).error(message)
        return JSONResponse(
            error_body(reason, message), status_code=status, headers={IDEMPOTENCY_HEADER: key}
        )

    async def ready(self) -> bool:
        """Probes are not traced (the model service does not trace its own /readyz either):
        a one-span trace per probe would bury the real ones."""
        try:
            with suppress_http_instrumentation():
                return (await self.client.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


API_KEY_HEADER = APIKeyHeader(
    name="x-api-key", auto_error=False, description="The gateway's API key (MODELOBS_API_KEY)"
)


def api_key_check(settings: Settings) -> list[Any]:
    """The routes' dependencies: none without a key, else a constant-time comparison (the
    key itself is never logged) declared as the document's security scheme."""
    if settings.api_key is None:
        return []
    expected = settings.api_key.get_secret_value().encode()

    async def check(given: str | None = Security(API_KEY_HEADER)) -> None:
        if not hmac.compare_digest((given or "").encode(), expected):
            message = "missing API key" if not given else "invalid API key"
            raise Rejection(Reason.UNAUTHORIZED, "x-api-key", message)

    return [Depends(check)]


def create_app(
    settings: Settings | None = None,
    telemetry: Telemetry | None = None,
    transport: Any = None,
) -> FastAPI:
    """App factory; ``transport`` lets tests wire the gateway to an in-process model service."""
    settings = settings or get_settings()
    telemetry, owns_telemetry = start_telemetry(SERVICE_NAME, settings, telemetry)
    state: dict[str, Upstream] = {}

    @asynccontextmanager
    async def upstream() -> AsyncIterator[None]:
        flags = FaultFlags(settings.flags_file, settings.flags_poll_ms)
        register_active_gauge(telemetry.meter, flags)
        state["upstream"] = Upstream(settings, telemetry, transport, flags)
        logger.bind(event="gateway_started", model_url=settings.model_url).info(
            "forwarding to {}", settings.model_url
        )
        try:
            yield
        finally:
            await state.pop("upstream").client.aclose()
            flags.close()

    app = create_service_app(
        "modelobs gateway",
        telemetry,
        owns_telemetry,
        upstream,
        http_instrumentation=settings.http_instrumentation,
    )

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        upstream_ready = "upstream" in state and await state["upstream"].ready()
        status = "ready" if upstream_ready else "model service not ready"
        return JSONResponse({"status": status}, status_code=200 if upstream_ready else 503)

    def forwarding(path: str) -> Callable[[Request], Awaitable[Response]]:
        async def forward(request: Request) -> Response:
            return await guarded(
                lambda: state["upstream"].forward(path, request), "forwarding failed"
            )

        return forward

    # The gateway forwards the body's bytes unparsed, and its document shows the model
    # service's envelopes around a generic record: fetching the model's schema at start-up
    # would tie the gateway's start to the model service's, and go stale when it changes.
    contract = ApiContract(None, settings.max_batch_size)
    document_contract(app, lambda: contract)
    authenticated = api_key_check(settings)
    forwarded_errors = (400, 413, 415, 422, 502, 503, 504)
    if authenticated:
        forwarded_errors = (401, *forwarded_errors)
    app.post(
        "/v1/predict",
        summary="Predict one record or a batch (forwarded to the model service)",
        dependencies=authenticated,
        openapi_extra=json_body("PredictRequest"),
        responses=answers(PredictResponse, *forwarded_errors),
    )(forwarding("/predict"))
    app.post(
        "/v1/feedback",
        summary="Attach the true label to a prediction (forwarded to the model service)",
        dependencies=authenticated,
        openapi_extra=json_body("FeedbackRequest"),
        responses=answers(FeedbackResponse, 404, 409, *forwarded_errors),
    )(forwarding("/feedback"))
    return app
