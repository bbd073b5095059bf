"""Bounds on slow clients: a connection that never finishes its request head, and a request
whose body stalls, are cut off by deadlines, counted and logged.

uvicorn (h11, 0.54) has no such deadline: its keep-alive timer only runs between requests
and restarts on every byte, so a client sending its headers a byte at a time, or nothing at
all, holds a connection forever, and an app waiting for a stalled body waits forever.

* ``GuardedH11Protocol`` (the server's HTTP protocol, see ``server_options``): from the moment
  a connection opens, and again after each answer on a kept-alive connection, the whole
  request head must arrive within MODELOBS_HEADER_TIMEOUT_S. A connection that sent nothing
  is closed (phase ``idle``); one that sent part of a head gets a 408 and is closed
  (phase ``headers``). Counted in ``modelobs.http.client_timeouts``.
* ``BodyDeadline`` (ASGI middleware): the body must arrive within MODELOBS_BODY_TIMEOUT_S of
  the head; past that the read raises a Rejection (408, reason ``request_timeout``, counted
  and logged as every rejection) and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from enum import StrEnum
from typing import Any

import h11
from fastapi import FastAPI
from loguru import logger
from opentelemetry import metrics
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..settings import Settings, get_settings
from ..telemetry import Telemetry
from .errors import Reason, Rejection, error_body
from .nodelay import set_nodelay

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
ASGIApp = Callable[[Scope, Receive, Any], Awaitable[None]]


class Phase(StrEnum):
    """Where a connection was cut off (the ``http.client_timeout.phase`` attribute)."""

    IDLE = "idle"
    HEADERS = "headers"


# The counter of the app this process serves (one per process outside tests).
_timeouts: list[metrics.Counter] = []


def _count(phase: Phase) -> None:
    if _timeouts:
        _timeouts[0].add(1, {"http.client_timeout.phase": phase.value})


def _timeout_answer(timeout_s: float) -> bytes:
    body = json.dumps(
        error_body(
            Reason.REQUEST_TIMEOUT.value,
            f"request headers not received within {timeout_s:g} s",
            "headers",
        )
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "x-content-type-options: nosniff\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = get_settings().header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        set_nodelay(transport)  # also the server's protocol: see nodelay.py
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the head is in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # kept alive: the next head has the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial = bool(self.conn.trailing_data[0])
        phase = Phase.HEADERS if partial else Phase.IDLE
        _count(phase)
        logger.bind(event="client_timeout", phase=phase.value).warning(
            "closed a connection: no complete request head within {:g} s", self.header_timeout_s
        )
        if partial:
            self.transport.write(_timeout_answer(self.header_timeout_s))
        self.transport.close()


class BodyDeadline:
    """Each request's body must be in within ``timeout_s`` of its head (module docstring).

    Each receive runs under ``asyncio.timeout_at`` (wait_for would start a task per receive).
    Measured, CPU time per request around a bare ASGI app (20,000 calls, 2 shared cores):
    7 us with timeout_at, 17 us with wait_for (SecurityHeaders: 2 us).
    """

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        body_done = False

        async def receive_in_time() -> Message:
            nonlocal body_done
            if body_done:  # afterwards only a disconnect can come: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise Rejection(
                    Reason.REQUEST_TIMEOUT,
                    "body",
                    f"request body not received within {self.timeout_s:g} s",
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, receive_in_time, send)


def install_slow_client_guards(app: FastAPI, telemetry: Telemetry, settings: Settings) -> None:
    """The body deadline on ``app``, and the counter the server's protocol reports to."""
    app.add_middleware(BodyDeadline, timeout_s=settings.body_timeout_s)
    counter = telemetry.meter.create_counter(
        "modelobs.http.client_timeouts",
        unit="{connection}",
        description="Connections closed for not sending a complete request head in time",
    )
    for phase in Phase:
        counter.add(0, {"http.client_timeout.phase": phase.value})
    _timeouts[:] = [counter]


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for a served app: the guarded protocol, the keep-alive timeout,
    no ``server`` header (it names our server software), and each request task started in
    a fresh context: a request handled from inside the previous one's task (a kept-alive
    connection whose next request was already buffered) otherwise inherits that request's
    trace context (uvicorn's opt-in for CPython issue 140947; seen after a 10,000-request
    burst: every later request logged under one stale trace id)."""
    return {
        "reset_contextvars": True,
        "http": GuardedH11Protocol,
        "timeout_keep_alive": settings.keepalive_timeout_s,
        "server_header": False,
    }
