"""Server spans and ``http.server.request.duration`` (and, on request,
``http.server.active_requests``) for a FastAPI app: the FastAPI instrumentation's telemetry
at half its cost.

Why a copy of ``opentelemetry-instrumentation-fastapi`` (pinned, and one setting away:
``MODELOBS_HTTP_INSTRUMENTATION=library``): cost, measured (bench/README.md, "Server
instrumentation: ours or the library"). Per request, in process, this middleware costs
105 µs of CPU and the library configured lean (no receive/send spans, probes excluded,
stable HTTP conventions, unused instruments dropped by Views) 224 µs; in the model service
under load, exporting to the real collector, the lean library keeps 0.09-0.10 less of bare
throughput (0.05 for the gateway → model pair), beyond the 0.03 the project would pay for
using the library as is. Where its extra time goes (profile): its own helpers (+45 µs:
attribute collection, header lookups that decode every header each time), five metric
recordings where we make one (+22 µs: dropped instruments are still recorded, into a drop
aggregation), matching every route before the app runs (+16 µs), every span attribute
cleaned twice (+12 µs), a second context attach (+9 µs). Exemplars are not a reason: the
library also records the duration in the server span's context.

Equal to the library, checked by tests/test_http_conformance.py (same requests through
both, same span names, kinds, status, attributes, events, metric names, units and
attributes); the library's own helpers are used wherever the result must match
(method normalisation, status mapping, header capture and sanitising, URL exclusion, route
matching off the fast path). It honours what users set for the library:
``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` (else ``OTEL_PYTHON_EXCLUDED_URLS``; ours excludes
the probes when neither is set), ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST``
/ ``_RESPONSE`` / ``_SANITIZE_FIELDS``, ``OTEL_PYTHON_INSTRUMENTATION_HTTP_CAPTURE_ALL_METHODS``,
a ``server_request_hook``, a global response propagator and suppressed instrumentation.

Deliberate differences, each asserted by the conformance test:
* ``url.query``: sensitive parameters (the library's ``PARAMS_TO_REDACT``) are redacted with
  its ``redact_query_parameters``; the library redacts only the old ``http.url``, so under
  the stable conventions it exports them in clear.
* ``server.address`` is the host alone, as the conventions define it; the library appends
  ``:port`` (``server.port`` carries it in both).
* What ``http_views.UNUSED_HTTP_SERVER_INSTRUMENTS`` drops (body sizes, active requests)
  the library records and the Views drop; ours does not record it at all.
* Scope: the ``modelobs`` instrumentation scope, not the library's name.
Not covered (the apps have none): websockets pass through untraced; the span ends when the
app returns rather than at the last body chunk, which differs only with background tasks;
a sampler sees the method-only span name (the route is known once routing ran).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import (
    _decode_header_item,
    asgi_setter,
    collect_custom_headers_attributes,
)
from opentelemetry.instrumentation.fastapi import _get_route_details
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.utils import (
    http_status_to_status_code,
    is_http_instrumentation_enabled,
)
from opentelemetry.metrics import MeterProvider, get_meter
from opentelemetry.semconv._incubating.metrics.http_metrics import (
    create_http_server_active_requests,
)
from opentelemetry.semconv.metrics.http_metrics import HTTP_SERVER_REQUEST_DURATION
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST,
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE,
    PARAMS_TO_REDACT,
    ExcludeList,
    SanitizeValue,
    detect_synthetic_user_agent,
    get_custom_headers,
    normalise_request_header_name,
    normalise_response_header_name,
    parse_excluded_urls,
    redact_query_parameters,
    sanitize_method,
)

from .. import __version__
from .bound_instruments import BoundAttributeSets
from .providers import INSTRUMENTATION_SCOPE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ServerRequestHook = Callable[[trace.Span, Scope], None] | None

# Semantic-convention buckets for http.server.request.duration (seconds), as the library's.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
# Attributes the duration carries (the library's _server_duration_attrs_new).
DURATION_ATTRIBUTES = (
    "error.type",
    "http.request.method",
    "http.response.status_code",
    "http.route",
    "network.protocol.version",
    "url.scheme",
)


class _HeaderGetter:
    """Reads propagation headers straight from the ASGI header list (no dict copy)."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [_decode_header_item(v) for k, v in carrier if k == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [_decode_header_item(k) for k, _ in carrier]


_GETTER = _HeaderGetter()


def _redacted_query(query: str) -> str:
    """The query with the values of sensitive parameters replaced, as the library's
    ``redact_url`` does for ``http.url``; parsed only when one may be present."""
    if "%" not in query and not any(name in query for name in PARAMS_TO_REDACT):
        return query
    return redact_query_parameters(f"?{query}").removeprefix("?")


class ServerTelemetryMiddleware:
    """The outermost layer of an app (outside Starlette's error middleware, as the library
    puts its own, so exception handlers run inside the span): one server span, one duration
    and the active-request count per request. Arguments as ``instrument_app``'s, and
    ``active_requests=False`` to leave ``http.server.active_requests`` out."""

    def __init__(
        self,
        app: ASGIApp,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        excluded_urls: str | None = None,
        server_request_hook: ServerRequestHook = None,
        http_capture_headers_server_request: list[str] | None = None,
        http_capture_headers_server_response: list[str] | None = None,
        http_capture_headers_sanitize_fields: list[str] | None = None,
        active_requests: bool = True,
    ) -> None:
        self.app = app
        self.tracer = trace.get_tracer(INSTRUMENTATION_SCOPE, __version__, tracer_provider)
        meter = get_meter(INSTRUMENTATION_SCOPE, __version__, meter_provider)
        self.duration = meter.create_histogram(
            HTTP_SERVER_REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        # One bound recording per (method, route, status, ...) seen: bound_instruments.py.
        self.bound_duration = BoundAttributeSets(self.duration, DURATION_ATTRIBUTES)
        # Two UpDownCounter additions per request: skipped when nothing reads them.
        self.active_requests = (
            create_http_server_active_requests(meter) if active_requests else None
        )
        self.excluded: ExcludeList = parse_excluded_urls(excluded_urls or "")
        self.hook = server_request_hook
        self.capture_request = http_capture_headers_server_request or get_custom_headers(
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST
        )
        self.capture_response = http_capture_headers_server_response or get_custom_headers(
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE
        )
        self.sanitize = SanitizeValue(
            http_capture_headers_sanitize_fields
            or get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_http_instrumentation_enabled():
            await self.app(scope, receive, send)
            return
        host = user_agent = None
        for key, value in scope["headers"]:  # one pass for the two headers we read
            if key == b"host":
                host = host or value
            elif key == b"user-agent":
                user_agent = user_agent or value
        scheme = scope.get("scheme")
        server_host, port = scope.get("server") or ("0.0.0.0", 80)
        port_suffix = f":{port}" if str(port) != "80" else ""
        path = scope.get("path", "")
        url_host = _decode_header_item(host) if host else server_host + port_suffix
        if self.excluded.url_disabled(f"{scheme or 'http'}://{url_host}{path}"):
            await self.app(scope, receive, send)
            return
        await self._traced(scope, receive, send, scheme, server_host, port, path, user_agent)

    async def _traced(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        scheme: str | None,
        server_host: str,
        port: Any,
        path: str,
        user_agent: bytes | None,
    ) -> None:
        start = time.perf_counter()
        raw_method = scope.get("method", "").strip()
        method = sanitize_method(raw_method)
        attributes = self._request_attributes(scope, scheme, server_host, port, path, user_agent)
        attributes["http.request.method"] = method
        if raw_method != method:
            attributes["http.request.method_original"] = raw_method
        if trace.get_current_span() is trace.INVALID_SPAN:
            parent = propagate.extract(scope["headers"], getter=_GETTER)
            kind = SpanKind.SERVER
        else:  # inside another instrumented layer: an internal span, as the library does
            parent, kind = otel_context.get_current(), SpanKind.INTERNAL
        name_method = "HTTP" if method == "_OTHER" else method
        span = self.tracer.start_span(name_method, parent, kind, attributes)
        # Attached with the extracted context: incoming baggage stays current, so outgoing
        # calls carry it on.
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        active = {"http.request.method": method}
        if scheme:
            active["url.scheme"] = scheme
        if self.active_requests is not None:
            self.active_requests.add(1, active)
        state = _ResponseState(self, span, scope, name_method, attributes)
        try:
            if self.capture_request and kind is SpanKind.SERVER and span.is_recording():
                span.set_attributes(
                    collect_custom_headers_attributes(
                        scope, self.sanitize, self.capture_request, normalise_request_header_name
                    )
                )
            if self.hook is not None:
                try:
                    self.hook(span, scope)
                except Exception as exc:  # a failing hook never fails the request
                    span.record_exception(exc)
            await self.app(scope, receive, state.send_through(send))
        except Exception as exc:
            state.failed(exc)
            raise
        finally:
            state.name_by_route()
            # Recorded while the span is current: the exemplar names this request's trace.
            self.bound_duration.record(time.perf_counter() - start, attributes)
            if self.active_requests is not None:
                self.active_requests.add(-1, active)
            otel_context.detach(token)
            span.end()

    @staticmethod
    def _request_attributes(
        scope: Scope,
        scheme: str | None,
        server_host: str,
        port: Any,
        path: str,
        user_agent: bytes | None,
    ) -> dict[str, Any]:
        """What the library's ``collect_request_attributes`` gives under the stable HTTP
        conventions (``server.address`` without the port, ``url.query`` redacted)."""
        attributes: dict[str, Any] = {}
        if scheme:
            attributes["url.scheme"] = scheme
        if server_host:
            attributes["server.address"] = server_host
        if port:
            attributes["server.port"] = int(port)
        if version := scope.get("http_version"):
            attributes["network.protocol.version"] = version
        if path:
            attributes["url.path"] = path
            if query := scope.get("query_string"):
                attributes["url.query"] = _redacted_query(query.decode("utf-8", "replace"))
        if user_agent:
            agent = _decode_header_item(user_agent)
            attributes["user_agent.original"] = agent
            if synthetic := detect_synthetic_user_agent(agent):
                attributes["user_agent.synthetic.type"] = synthetic
        if client := scope.get("client"):
            if client[0]:
                attributes["client.address"] = client[0]
            if client[1]:
                attributes["client.port"] = int(client[1])
        return attributes


class _ResponseState:
    """What one request's response did, written onto its span and duration attributes."""

    def __init__(
        self,
        middleware: ServerTelemetryMiddleware,
        span: trace.Span,
        scope: Scope,
        name_method: str,
        attributes: dict[str, Any],
    ) -> None:
        self.middleware = middleware
        self.span = span
        self.scope = scope
        self.name_method = name_method
        self.attributes = attributes
        self.app = scope.get("app")
        self.root_path = scope.get("root_path", "")
        self.status: int | None = None
        self.complete = False
        self.routed = False

    def send_through(self, send: Send) -> Send:
        async def send_with_telemetry(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                self.started(message)
            elif kind == "http.response.body" and not message.get("more_body", False):
                self.complete = True
            await send(message)

        return send_with_telemetry

    def started(self, message: Message) -> None:
        """Status, route and name, as the library sets them when the response starts."""
        span, middleware = self.span, self.middleware
        found: dict[str, Any] = {}
        self.name_by_route(found)
        try:
            self.status = code = int(message["status"])
        except ValueError:
            code = -1
        if code < 0:
            found["error.type"] = str(message["status"])
            status = Status(StatusCode.ERROR, f"Non-integer HTTP status: {message['status']}")
        else:
            found["http.response.status_code"] = code
            code_status = http_status_to_status_code(code, server_span=True)
            if code_status is StatusCode.ERROR:
                found["error.type"] = str(code)
            status = Status(code_status)
        self.attributes.update(found)
        if span.is_recording():
            if middleware.capture_response and span.kind is SpanKind.SERVER:
                found.update(
                    collect_custom_headers_attributes(
                        message,
                        middleware.sanitize,
                        middleware.capture_response,
                        normalise_response_header_name,
                    )
                )
            span.set_attributes(found)
            span.set_status(status)
        propagator = get_global_response_propagator()
        if propagator:
            propagator.inject(
                message,
                context=trace.set_span_in_context(span, otel_context.Context()),
                setter=asgi_setter,
            )

    def name_by_route(self, span_attributes: dict[str, Any] | None = None) -> None:
        """``http.route`` on the duration and the span (into ``span_attributes`` when the
        caller sets several), and the span named after it; once: when the response starts,
        or at the end if it never did."""
        if self.routed:
            return
        self.routed = True
        route = self.route()
        if route:
            self.attributes["http.route"] = route
            if self.span.is_recording():
                self.span.update_name(f"{self.name_method} {route}")
                if span_attributes is None:
                    self.span.set_attribute("http.route", route)
                else:
                    span_attributes["http.route"] = route

    def route(self) -> str | None:
        """The matched route's template: the one routing chose, read from the scope; the
        library's own matcher where routing did not run or a mounted app changed the root."""
        route = self.scope.get("route")
        if route is not None and self.scope.get("root_path", "") == self.root_path:
            path = getattr(route, "path", None)
            if path:
                return path
        if self.app is None:
            return None
        return _get_route_details({**self.scope, "app": self.app, "root_path": self.root_path})

    def failed(self, exc: Exception) -> None:
        """As the library's exception layer: the exception on the span, and an error status
        unless the error response went out after it (then that response's status stands)."""
        span = self.span
        if not span.is_recording():
            return
        if not self.complete:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        elif self.status is not None and self.status >= 500:
            span.record_exception(exc)
        # Complete with a success: raised after the response (a background task), when the
        # library's span has already ended.
