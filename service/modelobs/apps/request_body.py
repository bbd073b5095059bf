"""Read a JSON request body with a size limit, turning every failure into a Rejection."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from .errors import Reason, Rejection

JSON_MEDIA_TYPES = frozenset({"application/json"})


def check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES:
        shown = media_type or "none"
        raise Rejection(
            Reason.UNSUPPORTED_MEDIA_TYPE,
            "content-type",
            f"expected application/json, got {shown[:60]}",
        )


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The body, refused as soon as it passes ``max_bytes`` (declared or streamed)."""
    declared = request.headers.get("content-length")
    too_large = Rejection(
        Reason.BODY_TOO_LARGE, "body", f"request body exceeds the limit of {max_bytes} bytes"
    )
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def malformed_json(body: bytes, error: Mapping[str, Any]) -> Rejection:
    """The rejection of a body pydantic could not parse (``error``, of type json_invalid),
    worded like the json module words it, as the service always has."""
    if not body.strip():
        return Rejection(Reason.MALFORMED_JSON, "body", "request body is empty")
    try:
        json.loads(body)
    except UnicodeDecodeError:
        return Rejection(Reason.MALFORMED_JSON, "body", "request body is not valid UTF-8")
    except json.JSONDecodeError as exc:
        return Rejection(
            Reason.MALFORMED_JSON,
            "body",
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
        )
    except ValueError:  # e.g. an integer literal past Python's digit limit
        pass
    # What the json module accepts and pydantic does not (a lone surrogate escape, a number
    # out of range) gets pydantic's words.
    detail = error.get("ctx", {}).get("error", error.get("msg", "invalid JSON"))
    return Rejection(Reason.MALFORMED_JSON, "body", f"invalid JSON: {detail}")


async def read_json_body(request: Request, max_bytes: int) -> bytes:
    """The bytes of a JSON body, refused on a wrong content type or past ``max_bytes``;
    parsing is the validator's (it parses and checks in one pass)."""
    check_content_type(request)
    return await read_limited(request, max_bytes)
