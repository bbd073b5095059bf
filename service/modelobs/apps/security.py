"""Security at the edge of both apps: API keys, CORS (off unless origins are configured) and
the headers every answer carries."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI, Security
from fastapi.security import APIKeyHeader
from starlette.middleware.cors import CORSMiddleware

from ..settings import Settings
from .errors import Reason, Rejection

API_KEY = "x-api-key"
API_KEY_HEADER = APIKeyHeader(
    name=API_KEY, auto_error=False, description="The service's API key (MODELOBS_API_KEY)"
)

# JSON APIs: nothing may be sniffed, framed, cached or sent a referrer.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# FastAPI's own documentation pages load their script and style from a CDN.
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def api_key_check(settings: Settings) -> list[Any]:
    """A route's dependencies: none without a key, else a constant-time comparison (the
    key itself is never logged) declared as the document's security scheme."""
    if settings.api_key is None:
        return []
    expected = settings.api_key.get_secret_value().encode()

    async def check(given: str | None = Security(API_KEY_HEADER)) -> None:
        if not hmac.compare_digest((given or "").encode(), expected):
            message = "missing API key" if not given else "invalid API key"
            raise Rejection(Reason.UNAUTHORIZED, API_KEY, message)

    return [Depends(check)]


class SecurityHeaders:
    """Adds SECURITY_HEADERS (and a deny-all CSP outside the docs pages) to every answer,
    errors included; a header the app set itself is left as it is."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = SECURITY_HEADERS if scope["path"] in DOCS_PATHS else (*SECURITY_HEADERS, API_CSP)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in extra if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_security(app: FastAPI, settings: Settings) -> None:
    """Security headers on every answer; CORS only for MODELOBS_CORS_ORIGINS (none by
    default: browsers on other origins get no access)."""
    app.add_middleware(SecurityHeaders)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", API_KEY, "idempotency-key", "traceparent"],
        )
