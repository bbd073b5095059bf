"""The gateway: authenticates, bounds, and forwards to the model service with trace context.

Every forwarded request carries an ``Idempotency-Key`` (the caller's, or one made here), the
same on every attempt, and the model service answers a repeated key with its first answer
(apps/idempotency.py). So the gateway retries every transport failure, even one after the
model service may have read the request (a connection dropped before the answer, a stale
keep-alive connection), and a prediction is still never made twice.

A timeout is answered 504 at once, not retried: a slow model service gets no extra load. The
504 carries the key, so the caller can retry it safely within the model service's window.

Several replicas (``MODELOBS_MODEL_URLS``, apps/replicas.py): the key ranks them, so a
request and every retry of its key go to the same replica while it accepts connections.
The exactly-once rule: a request moves to the next replica only when the connection was
refused or never established (it cannot have reached the first); after any other transport
failure it is retried on the same replica, whose idempotency map replays the first answer.
What it cannot cover: a replica that stops (its map is gone), or a key's first replica that
refused while a later retry finds it back, predicts again (docs/contract.md).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from loguru import logger
from opentelemetry import metrics
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from ..flags.client import FaultFlags
from ..flags.faults import FaultyHopTransport
from ..flags.metrics import register_active_gauge
from ..settings import Settings, get_settings
from ..telemetry import Telemetry
from ..telemetry.http_client import instrument_client
from .api_docs import answers, document_contract, json_body
from .api_models import ApiContract, FeedbackResponse, PredictResponse
from .errors import error_body, guarded
from .idempotency import IDEMPOTENCY_HEADER, parse_key
from .replicas import ReplicaSet, parse_urls
from .request_body import check_content_encoding, read_limited
from .security import API_KEY, api_key_check, install_security
from .service_app import create_service_app, start_telemetry
from .slow_clients import install_slow_client_guards

SERVICE_NAME = "gateway"
RETRY_BACKOFF_S = 0.05
# Headers worth passing on; hop-by-hop and auth headers stay at the gateway.
FORWARDED_HEADERS = ("content-type", "accept")


# Failures where the request never left the gateway: another replica may take it.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


def upstream_keepalive_expiry_s(settings: Settings) -> float:
    """How long the gateway keeps an idle connection to a model replica: a second less than
    the replica's keep-alive timeout (``MODELOBS_KEEPALIVE_TIMEOUT_S``, the same setting on
    both sides by default). With httpx's default 5 s against uvicorn's 5 s, the two closed
    idle connections together, and a prediction sent just as the replica closed one was
    reset (a load test at 532 requests/s met one in 10,640); the gateway cannot resend a
    POST that may have arrived."""
    return max(0.5, settings.keepalive_timeout_s - 1.0)


class Upstream:
    """The model-service replicas, each reached through one pooled, instrumented client."""

    def __init__(
        self,
        settings: Settings,
        telemetry: Telemetry,
        transport: Any = None,
        flags: FaultFlags | None = None,
    ) -> None:
        self.settings = settings
        self.replicas = ReplicaSet(
            parse_urls(settings.model_urls, settings.model_url), settings.upstream_skip_s
        )
        hop_flags = flags or FaultFlags(None)
        self.clients = {
            r.url: self._client(r.url, settings, telemetry, transport, hop_flags)
            for r in self.replicas.replicas
        }
        self._register_metrics(telemetry)

    @staticmethod
    def _client(
        url: str, settings: Settings, telemetry: Telemetry, transport: Any, flags: FaultFlags
    ) -> httpx.AsyncClient:
        inner = transport or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=200,
                max_keepalive_connections=50,
                keepalive_expiry=upstream_keepalive_expiry_s(settings),
            )
        )
        client = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(settings.upstream_timeout_s),
            # The model-hop fault flag acts inside each attempt's client span.
            transport=FaultyHopTransport(inner, flags),
        )
        if telemetry.enabled:
            instrument_client(
                client,
                settings.http_instrumentation,
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
            )
        return client

    def _register_metrics(self, telemetry: Telemetry) -> None:
        meter = telemetry.meter
        replicas = self.replicas
        meter.create_observable_gauge(
            "modelobs.gateway.upstream.available",
            callbacks=[lambda _options: [metrics.Observation(replicas.available())]],
            unit="{replica}",
            description="Model-service replicas not being skipped after a refused connection",
        )
        meter.create_observable_gauge(
            "modelobs.gateway.upstream.configured",
            callbacks=[lambda _options: [metrics.Observation(len(replicas))]],
            unit="{replica}",
            description="Model-service replicas the gateway was configured with",
        )

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def forward(self, path: str, request: Request) -> Response:
        key = parse_key(request.headers.get(IDEMPOTENCY_HEADER)) or str(uuid.uuid4())
        check_content_encoding(request)  # the body is forwarded without its encoding header
        body = await read_limited(request, self.settings.max_body_bytes)
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        if self.settings.api_key is not None:  # the model service's /feedback asks for it
            headers[API_KEY] = self.settings.api_key.get_secret_value()
        headers[IDEMPOTENCY_HEADER] = key
        answer_headers = {IDEMPOTENCY_HEADER: key}
        ranked = self.replicas.ranked(key)
        # Every replica may be tried once after a refusal, plus the configured retries.
        attempts = self.settings.upstream_retries + len(ranked)
        position = 0
        for attempt in range(1, attempts + 1):
            replica = ranked[position % len(ranked)]
            try:
                upstream = await self.clients[replica.url].post(path, content=body, headers=headers)
            except NOT_SENT as exc:
                # Never reached this replica: the next one may take it without a second
                # prediction being possible.
                self.replicas.refused(replica)
                position += 1
                if attempt < attempts:
                    self._log_retry(attempt, exc, key, replica.url)
                    if position >= len(ranked):  # every replica tried: back off first
                        await asyncio.sleep(RETRY_BACKOFF_S * attempt)
                    continue
                return self._unavailable(attempts, key)
            except httpx.TimeoutException:
                return self._fail(
                    504, "upstream_timeout", "model service did not answer in time", key
                )
            except httpx.TransportError as exc:
                # It may have read the request: retry the same replica only, same key.
                if attempt < attempts:
                    self._log_retry(attempt, exc, key, replica.url)
                    await asyncio.sleep(RETRY_BACKOFF_S * attempt)
                    continue
                return self._unavailable(attempts, key)
            self.replicas.answered(replica)
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

    @staticmethod
    def _log_retry(attempt: int, exc: Exception, key: str, url: str) -> None:
        logger.bind(
            event="upstream_retry",
            attempt=attempt,
            **{"error.type": type(exc).__name__, "idempotency.key": key, "server.url": url},
        ).warning("no answer from the model service ({}), retrying", type(exc).__name__)

    def _unavailable(self, attempts: int, key: str) -> JSONResponse:
        return self._fail(
            503, "upstream_unavailable", f"model service unreachable after {attempts} attempts", key
        )

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
        """Ready when any replica is. Probes are not traced (the model service does not trace
        its own /readyz either): a one-span trace per probe would bury the real ones."""
        with suppress_http_instrumentation():
            answers = await asyncio.gather(*(self._ready(c) for c in self.clients.values()))
        return any(answers)

    @staticmethod
    async def _ready(client: httpx.AsyncClient) -> bool:
        try:
            return (await client.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


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
        state["upstream"] = forwarder = Upstream(settings, telemetry, transport, flags)
        urls = [r.url for r in forwarder.replicas.replicas]
        logger.bind(event="gateway_started", model_urls=urls).info(
            "forwarding to {}", ", ".join(urls)
        )
        try:
            yield
        finally:
            await state.pop("upstream").aclose()
            flags.close()

    app = create_service_app(
        "modelobs gateway",
        telemetry,
        owns_telemetry,
        upstream,
        http_instrumentation=settings.http_instrumentation,
    )
    install_security(app, settings)
    install_slow_client_guards(app, telemetry, settings)

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
