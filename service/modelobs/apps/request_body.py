"""Read a JSON request body with a size limit, turning every failure into a Rejection.

Hostile bodies get a 4xx naming the problem, never a 500: nesting past the parser's limit, a
byte order mark, UTF-16, a lone surrogate, duplicate keys and a Content-Encoding we do not
decode each have their own words (tests/test_hostile_input.py holds the table).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from .errors import Reason, Rejection

JSON_MEDIA_TYPES = frozenset({"application/json"})
# Bodies are read as sent: no decompression (a gzip bomb would pass any size limit).
IDENTITY_ENCODINGS = frozenset({"", "identity"})
_SHOWN_KEY = 40


def check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES:
        shown = media_type or "none"
        raise Rejection(
            Reason.UNSUPPORTED_MEDIA_TYPE,
            "content-type",
            f"expected application/json, got {shown[:60]}",
        )


def check_content_encoding(request: Request) -> None:
    """A Content-Encoding we do not decode is refused (415, RFC 7694), never read as JSON."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding not in IDENTITY_ENCODINGS:
        raise Rejection(
            Reason.UNSUPPORTED_MEDIA_TYPE,
            "content-encoding",
            f"unsupported content encoding {encoding[:40]!r}; send the body uncompressed",
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


def _parser_words(detail: str) -> str:
    """pydantic's JSON parser messages, said plainly where they are cryptic."""
    if detail.startswith("recursion limit exceeded"):
        return "nested too deeply" + detail.removeprefix("recursion limit exceeded")
    if "hex escape" in detail or "surrogate" in detail:
        return "a \\u escape that is not a valid character (a lone surrogate?)" + (
            detail[detail.find(" at line") :] if " at line" in detail else ""
        )
    return detail


def malformed_json(body: bytes, error: Mapping[str, Any]) -> Rejection:
    """The rejection of a body pydantic could not parse (``error``, of type json_invalid),
    worded like the json module words it, as the service always has."""
    if not body.strip():
        return Rejection(Reason.MALFORMED_JSON, "body", "request body is empty")
    if body.startswith(codecs.BOM_UTF8):
        return Rejection(
            Reason.MALFORMED_JSON,
            "body",
            "request body starts with a byte order mark; send UTF-8 without one",
        )
    try:
        text = body.decode("utf-8")  # strict: UTF-16 and encoded surrogates fail here
    except UnicodeDecodeError:
        return Rejection(Reason.MALFORMED_JSON, "body", "request body is not valid UTF-8")
    detail = str(error.get("ctx", {}).get("error", error.get("msg", "invalid JSON")))
    if not detail.startswith("recursion limit exceeded"):  # json.loads would recurse too
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            return Rejection(
                Reason.MALFORMED_JSON,
                "body",
                f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            )
        except (ValueError, RecursionError):  # e.g. an integer past Python's digit limit
            pass
    # What the json module accepts and pydantic does not (a lone surrogate escape, a number
    # out of range, nesting past pydantic's limit) gets pydantic's words.
    return Rejection(Reason.MALFORMED_JSON, "body", f"invalid JSON: {_parser_words(detail)}")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


_UNIQUE_KEYS = json.JSONDecoder(object_pairs_hook=_unique_object)


def reject_duplicate_keys(body: bytes) -> None:
    """A body pydantic accepted is refused when an object repeats a key: parsers disagree on
    which value wins (pydantic and the json module take the last, others the first).

    pydantic's parser has no such check, so the json module scans the body a second time,
    only once pydantic has accepted it. Measured (interleaved, 2 shared cores): one record
    2.9 us on top of 4.6 us validation, a 256-record batch 0.40 ms on top of 0.26 ms.
    """
    try:
        _UNIQUE_KEYS.decode(body.decode("utf-8"))
    except _DuplicateKey as duplicate:
        key = duplicate.key if len(duplicate.key) <= _SHOWN_KEY else duplicate.key[:37] + "..."
        raise Rejection(
            Reason.MALFORMED_JSON, "body", f"duplicate key {key!r} in a JSON object"
        ) from None
    except (ValueError, RecursionError):  # pydantic accepted it: nothing more to say
        return


async def read_json_body(request: Request, max_bytes: int) -> bytes:
    """The bytes of a JSON body, refused on a wrong content type or encoding or past
    ``max_bytes``; parsing is the validator's (it parses and checks in one pass)."""
    check_content_type(request)
    check_content_encoding(request)
    return await read_limited(request, max_bytes)
