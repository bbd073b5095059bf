"""The hostile payload table: for each POST endpoint kind (predict, feedback), bodies and
headers a hostile client sends, with the exact 4xx each must get (tests/test_hostile_input.py;
the cardinality test sends them through a real stack too)."""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field

from modelobs.model.data import EXAMPLE_RECORD

JSON = {"content-type": "application/json"}
TEN_MB = 10 * 1024 * 1024
DEPTH = 1500  # past the parser's nesting limit, small enough for /feedback's 4 KiB limit
EXPECTED_FEATURES = (
    "tenure_months, monthly_charges, support_calls, age, data_usage_gb, contract, payment_method"
)


@dataclass(frozen=True)
class Hostile:
    """One hostile request and its answer: ``message`` is a regular expression."""

    case: str
    body: bytes
    status: int
    reason: str
    field: str
    message: str
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _record(**changes: object) -> bytes:
    return _json({"record": {**EXAMPLE_RECORD, **changes}})


def _raw_record(feature: str, raw: bytes) -> bytes:
    """A valid record whose ``feature`` holds ``raw`` JSON text as is."""
    marker = "__RAW__"
    return _record(**{feature: marker}).replace(f'"{marker}"'.encode(), raw)


def _feedback(**fields: object) -> bytes:
    return _json({"prediction_id": "0" * 8, "label": "churn", **fields})


def _raw_feedback(raw_id: bytes) -> bytes:
    return b'{"prediction_id": ' + raw_id + b', "label": "churn"}'


def _deep(opening: bytes, closing: bytes, depth: int) -> bytes:
    return opening * depth + b"1" * (opening == b'{"a":') + closing * depth


DEEP_ARRAYS = _deep(b"[", b"]", DEPTH)
DEEP_OBJECTS = _deep(b'{"a":', b"}", DEPTH // 3)  # 5 bytes a level
NESTED = r"invalid JSON: nested too deeply at line 1 column \d+"
LONE_SURROGATE = r"invalid JSON: a \\u escape that is not a valid character \(a lone surrogate\?\) at line 1 column \d+"


def _both(case: str, predict: bytes, feedback: bytes, *answer: str, **kw: object) -> list:
    return [("predict", case, predict, *answer, kw), ("feedback", case, feedback, *answer, kw)]


def _type_name_cases() -> list:
    """Wrong JSON types at every level of both bodies."""
    rows = []
    for name, value in (
        ("array", [1]),
        ("string", "x"),
        ("number", 3),
        ("null", None),
        ("boolean", True),
    ):
        rows.append(
            (
                "predict",
                f"body is {name}",
                _json(value),
                422,
                "invalid_shape",
                "body",
                f"expected a JSON object with 'record' or 'records', got {name}",
                {},
            )
        )
        rows.append(
            (
                "feedback",
                f"body is {name}",
                _json(value),
                422,
                "invalid_shape",
                "body",
                f"expected a JSON object, got {name}",
                {},
            )
        )
    for name, value in (("array", [1]), ("string", "x"), ("number", 3), ("null", None)):
        rows.append(
            (
                "predict",
                f"record is {name}",
                _json({"record": value}),
                422,
                "invalid_shape",
                "record",
                f"expected an object, got {name}",
                {},
            )
        )
        rows.append(
            (
                "predict",
                f"records item is {name}",
                _json({"records": [value]}),
                422,
                "invalid_shape",
                "records[0]",
                f"expected an object, got {name}",
                {},
            )
        )
    for name, value in (("object", {"a": 1}), ("string", "x"), ("number", 3), ("null", None)):
        rows.append(
            (
                "predict",
                f"records is {name}",
                _json({"records": value}),
                422,
                "invalid_shape",
                "records",
                f"expected an array, got {name}",
                {},
            )
        )
    for name, value in (
        ("object", {}),
        ("array", []),
        ("boolean", False),
        ("null", None),
        ("string", "x"),
    ):
        rows.append(
            (
                "predict",
                f"number feature is {name}",
                _record(age=value),
                422,
                "wrong_type",
                "record.age",
                f"expected a number, got {name}",
                {},
            )
        )
    for name, value in (("object", {}), ("array", []), ("number", 1), ("null", None)):
        rows.append(
            (
                "predict",
                f"category feature is {name}",
                _record(contract=value),
                422,
                "wrong_type",
                "record.contract",
                f"expected a string, got {name}",
                {},
            )
        )
        rows.append(
            (
                "feedback",
                f"prediction_id is {name}",
                _feedback(prediction_id=value),
                422,
                "wrong_type",
                "prediction_id",
                f"expected a string, got {name}",
                {},
            )
        )
        rows.append(
            (
                "feedback",
                f"label is {name}",
                _feedback(label=value),
                422,
                "wrong_type",
                "label",
                f"expected a string, got {name}",
                {},
            )
        )
    return rows


def _rows() -> list:
    big = b'{"record": "' + b"x" * TEN_MB + b'"}'
    gzipped = gzip.compress(_record())
    rows = [
        *_both(
            "deep arrays",
            b'{"record": ' + DEEP_ARRAYS + b"}",
            b'{"prediction_id": ' + DEEP_ARRAYS + b"}",
            400,
            "malformed_json",
            "body",
            NESTED,
        ),
        *_both(
            "deep objects",
            b'{"record": ' + DEEP_OBJECTS + b"}",
            b'{"label": ' + DEEP_OBJECTS + b"}",
            400,
            "malformed_json",
            "body",
            NESTED,
        ),
        (
            "predict",
            "deep arrays, 100000 levels",
            b'{"record": ' + _deep(b"[", b"]", 100_000) + b"}",
            400,
            "malformed_json",
            "body",
            NESTED,
            {},
        ),
        (
            "predict",
            "number beyond float range",
            _raw_record("age", b"1e999"),
            422,
            "not_finite",
            "record.age",
            "must be a finite number, got inf",
            {},
        ),
        (
            "predict",
            "negative number beyond float range",
            _raw_record("monthly_charges", b"-1e999"),
            422,
            "not_finite",
            "record.monthly_charges",
            "must be a finite number, got -inf",
            {},
        ),
        (
            "feedback",
            "number beyond float range",
            _raw_feedback(b"1e999"),
            422,
            "wrong_type",
            "prediction_id",
            "expected a string, got number",
            {},
        ),
        (
            "predict",
            "integer too long for a float",
            _raw_record("age", b"1" + b"0" * 400),
            422,
            "not_finite",
            "record.age",
            "must be a finite number, got inf",
            {},
        ),
        (
            "predict",
            "integer past the conversion limit",
            _raw_record("age", b"9" * 5000),
            400,
            "malformed_json",
            "body",
            r"invalid JSON: number out of range at line 1 column \d+",
            {},
        ),
        (
            "feedback",
            "integer of 4050 digits",
            _raw_feedback(b"9" * 4050),
            422,
            "wrong_type",
            "prediction_id",
            "expected a string, got number",
            {},
        ),
        *_both(
            "10 MB body",
            big,
            big,
            413,
            "body_too_large",
            "body",
            r"request body exceeds the limit of \d+ bytes",
        ),
        *_both(
            "invalid UTF-8",
            _record(contract="one-year").replace(b"one-year", b"one-\xff\xfe"),
            _feedback().replace(b"churn", b"ch\xffrn"),
            400,
            "malformed_json",
            "body",
            "request body is not valid UTF-8",
        ),
        *_both(
            "lone surrogate escape",
            _raw_record("contract", b'"\\ud800"'),
            _raw_feedback(b'"\\udfff"'),
            400,
            "malformed_json",
            "body",
            LONE_SURROGATE,
        ),
        *_both(
            "encoded surrogate bytes",
            _raw_record("contract", b'"\xed\xa0\x80"'),
            _raw_feedback(b'"\xed\xa0\x80"'),
            400,
            "malformed_json",
            "body",
            "request body is not valid UTF-8",
        ),
        *_both(
            "duplicate keys",
            _record()[:-2] + b', "age": 99}}',
            _feedback()[:-1] + b', "label": "stay"}',
            400,
            "malformed_json",
            "body",
            r"duplicate key '(age|label)' in a JSON object",
        ),
        (
            "predict",
            "duplicate top-level key",
            b'{"record": {}, ' + _record()[1:],
            400,
            "malformed_json",
            "body",
            "duplicate key 'record' in a JSON object",
            {},
        ),
        *_both(
            "UTF-8 byte order mark",
            b"\xef\xbb\xbf" + _record(),
            b"\xef\xbb\xbf" + _feedback(),
            400,
            "malformed_json",
            "body",
            "request body starts with a byte order mark; send UTF-8 without one",
        ),
        *_both(
            "UTF-16",
            _record().decode().encode("utf-16"),
            _feedback().decode().encode("utf-16"),
            400,
            "malformed_json",
            "body",
            "request body is not valid UTF-8",
        ),
        *_both(
            "wrong content type",
            _record(),
            _feedback(),
            415,
            "unsupported_media_type",
            "content-type",
            "expected application/json, got text/plain",
            headers={"content-type": "text/plain"},
        ),
        *_both(
            "form content type",
            _record(),
            _feedback(),
            415,
            "unsupported_media_type",
            "content-type",
            "expected application/json, got application/x-www-form-urlencoded",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        *_both(
            "missing content type",
            _record(),
            _feedback(),
            415,
            "unsupported_media_type",
            "content-type",
            "expected application/json, got none",
            headers={},
        ),
        *_both(
            "gzip body",
            gzipped,
            gzip.compress(_feedback()),
            415,
            "unsupported_media_type",
            "content-encoding",
            "unsupported content encoding 'gzip'; send the body uncompressed",
            headers={**JSON, "content-encoding": "gzip"},
        ),
        *_both(
            "unknown encoding",
            _record(),
            _feedback(),
            415,
            "unsupported_media_type",
            "content-encoding",
            "unsupported content encoding 'x-rot13'; send the body uncompressed",
            headers={**JSON, "content-encoding": "x-rot13"},
        ),
        (
            "predict",
            "huge key",
            _record(**{"k" * 100_000: 1}),
            422,
            "extra_field",
            "record." + "k" * 40,
            re.escape(f"unknown feature (expected: {EXPECTED_FEATURES})"),
            {},
        ),
        (
            "predict",
            "huge top-level key",
            _json({"k" * 100_000: 1}),
            422,
            "extra_field",
            "k" * 40,
            re.escape("unknown top-level field (expected exactly one of 'record' or 'records')"),
            {},
        ),
        (
            "feedback",
            "huge key",
            _feedback(**{"k" * 3000: 1}),
            422,
            "extra_field",
            "k" * 40,
            re.escape("unknown field (expected: prediction_id, label)"),
            {},
        ),
        (
            "predict",
            "huge string",
            _record(contract="x" * 500_000),
            422,
            "unknown_category",
            "record.contract",
            re.escape(
                "unknown category 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... "
                "(allowed: month-to-month, one-year, two-year)"
            ),
            {},
        ),
        (
            "feedback",
            "huge string",
            _feedback(prediction_id="x" * 3500),
            422,
            "invalid_shape",
            "prediction_id",
            "must be 1 to 64 characters",
            {},
        ),
        *_type_name_cases(),
    ]
    return rows


def table(kind: str) -> list[Hostile]:
    """The rows for one endpoint kind, ``predict`` or ``feedback``."""
    out = []
    for row_kind, case, body, status, reason, fld, message, kw in _rows():
        if row_kind != kind:
            continue
        headers = kw.get("headers", JSON)
        out.append(Hostile(case, body, status, reason, fld, message, dict(headers)))
    return out
