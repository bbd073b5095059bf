"""Validate prediction requests against the model's feature schema.

The first problem found is reported, with a JSON path to the field. User-supplied values
are echoed only shortened, and never become metric labels.
"""

from __future__ import annotations

import math
from typing import Any

from ..model.schema import Feature, ModelSchema
from .errors import Reason, Rejection

_SHOWN = 40


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _check_feature(feature: Feature, value: Any, path: str) -> float | str:
    if feature.kind == "categorical":
        if not isinstance(value, str):
            raise Rejection(Reason.WRONG_TYPE, path, f"expected a string, got {_type_name(value)}")
        if value not in feature.categories:
            allowed = ", ".join(feature.categories)
            raise Rejection(
                Reason.UNKNOWN_CATEGORY,
                path,
                f"unknown category {_show(value)} (allowed: {allowed})",
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejection(Reason.WRONG_TYPE, path, f"expected a number, got {_type_name(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise Rejection(Reason.NOT_FINITE, path, f"must be a finite number, got {number}")
    if feature.integer and not number.is_integer():
        raise Rejection(Reason.WRONG_TYPE, path, f"expected an integer, got {number}")
    return number


class RequestValidator:
    """Checks a parsed body and returns clean records in schema order."""

    def __init__(self, schema: ModelSchema, max_batch_size: int) -> None:
        self.schema = schema
        self.max_batch_size = max_batch_size
        self._features = {f.name: f for f in schema.features}
        self._expected = ", ".join(schema.feature_names)

    def records(self, payload: Any) -> list[dict[str, float | str]]:
        """Accepts ``{"record": {...}}`` or ``{"records": [{...}, ...]}``."""
        if not isinstance(payload, dict):
            raise Rejection(
                Reason.INVALID_SHAPE,
                "body",
                f"expected a JSON object with 'record' or 'records', got {_type_name(payload)}",
            )
        keys = set(payload)
        if keys == {"record"}:
            return [self.record(payload["record"], "record")]
        if keys == {"records"}:
            return self._batch(payload["records"])
        unexpected = sorted(keys - {"record", "records"})
        if unexpected:
            raise Rejection(
                Reason.EXTRA_FIELD,
                unexpected[0][:_SHOWN],
                "unknown top-level field (expected exactly one of 'record' or 'records')",
            )
        raise Rejection(
            Reason.INVALID_SHAPE,
            "body",
            "expected exactly one of 'record' or 'records'",
        )

    def _batch(self, items: Any) -> list[dict[str, float | str]]:
        if not isinstance(items, list):
            raise Rejection(
                Reason.INVALID_SHAPE, "records", f"expected an array, got {_type_name(items)}"
            )
        if not items:
            raise Rejection(Reason.EMPTY_BATCH, "records", "batch is empty")
        if len(items) > self.max_batch_size:
            raise Rejection(
                Reason.BATCH_TOO_LARGE,
                "records",
                f"batch of {len(items)} records exceeds the limit of {self.max_batch_size}",
            )
        return [self.record(item, f"records[{i}]") for i, item in enumerate(items)]

    def record(self, item: Any, path: str) -> dict[str, float | str]:
        if not isinstance(item, dict):
            raise Rejection(
                Reason.INVALID_SHAPE, path, f"expected an object, got {_type_name(item)}"
            )
        for name in item:
            if name not in self._features:
                raise Rejection(
                    Reason.EXTRA_FIELD,
                    f"{path}.{str(name)[:_SHOWN]}",
                    f"unknown feature (expected: {self._expected})",
                )
        clean: dict[str, float | str] = {}
        for name, feature in self._features.items():
            if name not in item:
                raise Rejection(
                    Reason.MISSING_FIELD, f"{path}.{name}", "required feature is missing"
                )
            clean[name] = _check_feature(feature, item[name], f"{path}.{name}")
        return clean


def parse_feedback(payload: Any, classes: tuple[str, ...]) -> tuple[str, str]:
    """``{"prediction_id": "...", "label": "<one of the model's classes>"}``."""
    if not isinstance(payload, dict):
        raise Rejection(
            Reason.INVALID_SHAPE, "body", f"expected a JSON object, got {_type_name(payload)}"
        )
    for name in payload:
        if name not in ("prediction_id", "label"):
            raise Rejection(
                Reason.EXTRA_FIELD,
                str(name)[:_SHOWN],
                "unknown field (expected: prediction_id, label)",
            )
    values: list[str] = []
    for name in ("prediction_id", "label"):
        if name not in payload:
            raise Rejection(Reason.MISSING_FIELD, name, "required field is missing")
        if not isinstance(payload[name], str):
            raise Rejection(
                Reason.WRONG_TYPE, name, f"expected a string, got {_type_name(payload[name])}"
            )
        values.append(payload[name])
    prediction_id, label = values
    if not 0 < len(prediction_id) <= 64:
        raise Rejection(Reason.INVALID_SHAPE, "prediction_id", "must be 1 to 64 characters")
    if label not in classes:
        raise Rejection(
            Reason.UNKNOWN_CATEGORY,
            "label",
            f"unknown label {_show(label)} (allowed: {', '.join(classes)})",
        )
    return prediction_id, label
