"""Idempotency-Key on the predict path: a repeated key gets the first answer, never a second
prediction.

The gateway sends one key per incoming request on every attempt, so it may retry after any
transport failure, including the ambiguous ones (the connection broke after the model
service had read the request), without a prediction being made twice. A client may send its
own key to retry safely across gateway answers (a 504, a lost response). Practice from the
IETF draft "The Idempotency-Key HTTP Header Field": the key is opaque; the same key with a
different body is refused (422); a repeat while the first request still runs waits for it.

Only successful answers (2xx) are kept: a prediction is recorded only when the request
succeeds, so after a rejection or a failure a repeat runs again and cannot predict twice.

Bounds: a stored answer is kept ``window_s`` seconds from the moment it was made, and at most
``max_entries`` answers and ``max_bytes`` (keys, bodies and a measured per-entry overhead, see
``ENTRY_OVERHEAD_BYTES``) are kept; the oldest go first, counted in
``modelobs.idempotency.evictions``. Requests in flight are not evicted (there are no more of
them than concurrent requests).

The map is per process: a retry must reach the same process to be answered from it. With
several replicas the gateway sends every attempt of a key to the same replica
(apps/replicas.py ranks them by the key) and moves on only when a connection was refused;
what that leaves uncovered is in docs/contract.md ("Several replicas"). Under uvicorn
workers the kernel hands each connection to any worker, so a caller's own retry may reach
another worker of the same replica: run one worker per replica where that matters.

Hand-written rather than one of the ecosystem's ASGI idempotency middlewares: the in-memory
backend of asgi-idempotency-header 0.2 (read for this) grows without bound, answers a repeat
of an in-flight key with 409 (which our gateway would pass on to the caller), does not compare
request bodies (a reused key with another body replays the wrong answer) and keeps 5xx
answers. Measured cost on the request path: bench/idempotency.py, figures in bench/README.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from loguru import logger
from opentelemetry import metrics, trace
from starlette.types import Message

from .errors import Reason, Rejection, error_body
from .request_body import read_limited

IDEMPOTENCY_HEADER = "idempotency-key"
REPLAYED_HEADER = "idempotent-replayed"
MAX_KEY_LENGTH = 255
# Measured with tracemalloc (bench/idempotency.py): what one stored answer costs beyond its
# key and body (entry object, map slot, bytes headers, fingerprint).
ENTRY_OVERHEAD_BYTES = 256


class Outcome(StrEnum):
    """What a request with an already seen key got (the `idempotency.outcome` attribute)."""

    REPLAYED = "replayed"  # the stored first answer
    AWAITED = "awaited"  # the first answer, after waiting for the first request to finish
    KEY_REUSED = "key_reused"  # refused: the key came with a different body


def parse_key(value: str | None) -> str | None:
    """The key of an ``Idempotency-Key`` header, None when absent; a Rejection when it is not
    1 to 255 printable ASCII characters (the bound keeps the map's memory bounded)."""
    if value is None:
        return None
    if not (0 < len(value) <= MAX_KEY_LENGTH and value.isascii() and value.isprintable()):
        raise Rejection(
            Reason.INVALID_SHAPE,
            IDEMPOTENCY_HEADER,
            f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters",
        )
    return value


@dataclass(frozen=True, slots=True)
class _Stored:
    """A kept answer: only what a replay needs, so an entry stays small."""

    fingerprint: bytes
    status_code: int
    body: bytes
    media_type: str
    expires_at: float
    size: int

    def response(self) -> Response:
        return Response(
            self.body,
            status_code=self.status_code,
            media_type=self.media_type,
            headers={REPLAYED_HEADER: "true"},
        )


@dataclass(slots=True)
class _InFlight:
    fingerprint: bytes
    done: asyncio.Event = field(default_factory=asyncio.Event)
    stored: _Stored | None = None


class IdempotentAnswers:
    """Key → first successful answer, bounded by a time window, an entry count and bytes."""

    def __init__(
        self,
        meter: metrics.Meter,
        window_s: float,
        max_entries: int,
        max_bytes: int,
        max_body_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._in_flight: dict[str, _InFlight] = {}
        self._stored: OrderedDict[str, _Stored] = OrderedDict()  # oldest first
        self.stored_bytes = 0
        self._repeats = meter.create_counter(
            "modelobs.idempotency.repeats",
            unit="{request}",
            description="Requests whose Idempotency-Key was seen before, by outcome",
        )
        self._evictions = meter.create_counter(
            "modelobs.idempotency.evictions",
            unit="{answer}",
            description="Stored answers dropped before their window ended, to stay in bounds",
        )
        for outcome in Outcome:  # a series at 0 for every outcome from the start
            self._repeats.add(0, {"idempotency.outcome": outcome.value})
        self._evictions.add(0)

    def __len__(self) -> int:
        return len(self._stored)

    async def answer(
        self, request: Request, work: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """``work(request)``'s response, or the first response to this request's key."""
        key = parse_key(request.headers.get(IDEMPOTENCY_HEADER))
        if key is None:
            return await work(request)
        body = await read_limited(request, self.max_body_bytes)
        fingerprint = hashlib.blake2b(body, digest_size=16).digest()
        return await self.once(key, fingerprint, lambda: work(_replaying(request, body)))

    async def once(
        self, key: str, fingerprint: bytes, work: Callable[[], Awaitable[Response]]
    ) -> Response:
        while (seen := self._lookup(key)) is not None:
            if seen.fingerprint != fingerprint:
                return self._refuse_reused(key)
            if isinstance(seen, _Stored):
                return self._replay(key, seen, Outcome.REPLAYED)
            await seen.done.wait()
            if seen.stored is not None:
                return self._replay(key, seen.stored, Outcome.AWAITED)
            # The first failed and released its key: run it (or wait for whoever did).
        running = _InFlight(fingerprint)
        self._in_flight[key] = running
        try:
            response = await work()
            if 200 <= response.status_code < 300:
                running.stored = self._store(key, fingerprint, response)
        finally:
            del self._in_flight[key]
            running.done.set()
        return response

    def _lookup(self, key: str) -> _Stored | _InFlight | None:
        self._expire()
        return self._stored.get(key) or self._in_flight.get(key)

    def _store(self, key: str, fingerprint: bytes, response: Response) -> _Stored:
        body = bytes(response.body)
        stored = _Stored(
            fingerprint,
            response.status_code,
            body,
            response.media_type or "",
            expires_at=self._clock() + self.window_s,
            size=len(key) + len(body) + ENTRY_OVERHEAD_BYTES,
        )
        self._stored[key] = stored
        self.stored_bytes += stored.size
        while len(self._stored) > self.max_entries or self.stored_bytes > self.max_bytes:
            self._drop_oldest()
            self._evictions.add(1)
        return stored

    def _expire(self) -> None:
        """Answers are stored in the order they were made, so expired ones are at the front."""
        now = self._clock()
        while self._stored and next(iter(self._stored.values())).expires_at <= now:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, stored = self._stored.popitem(last=False)
        self.stored_bytes -= stored.size

    def _replay(self, key: str, answer: _Stored, outcome: Outcome) -> Response:
        self._repeats.add(1, {"idempotency.outcome": outcome.value})
        trace.get_current_span().set_attribute("modelobs.idempotency.outcome", outcome.value)
        logger.bind(
            event="idempotent_replay",
            outcome=outcome.value,
            status_code=answer.status_code,
            **{"idempotency.key": key},
        ).info("repeated Idempotency-Key answered with the first answer")
        return answer.response()

    def _refuse_reused(self, key: str) -> JSONResponse:
        outcome = Outcome.KEY_REUSED
        self._repeats.add(1, {"idempotency.outcome": outcome.value})
        trace.get_current_span().set_attribute("modelobs.idempotency.outcome", outcome.value)
        logger.bind(event="idempotency_key_reused", **{"idempotency.key": key}).warning(
            "Idempotency-Key reused with a different request body"
        )
        return JSONResponse(
            error_body(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request body",
                IDEMPOTENCY_HEADER,
            ),
            status_code=422,
        )


def _replaying(request: Request, body: bytes) -> Request:
    """The same request with its (already read) body readable again."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)
