"""Views dropping the HTTP server instruments no dashboard or alert reads.

The FastAPI instrumentation records request and response body sizes and the number of
requests in flight on every request; nothing here reads them, so the meter provider drops
them rather than export them. Our middleware (http_server.py) does not record what this
list drops: take ``http.server.active_requests`` off it and both implementations export it.
"""

from __future__ import annotations

from opentelemetry.sdk.metrics.view import DropAggregation, View
from opentelemetry.semconv._incubating.metrics.http_metrics import (
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_BODY_SIZE,
    HTTP_SERVER_RESPONSE_BODY_SIZE,
)

UNUSED_HTTP_SERVER_INSTRUMENTS = frozenset(
    {HTTP_SERVER_ACTIVE_REQUESTS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_RESPONSE_BODY_SIZE}
)


def unused_http_instrument_views() -> list[View]:
    """Read at each call, so that the list is the one switch for both implementations."""
    return [
        View(instrument_name=name, aggregation=DropAggregation())
        for name in sorted(UNUSED_HTTP_SERVER_INSTRUMENTS)
    ]
