"""Traffic shapes for the load generator: what each request carries.

Each scenario draws from the same deterministic data the model was trained on, and can
shift it, so drift detection and alerts have something real to find.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .model import data

PREDICT_PATH = "/v1/predict"


@dataclass
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    on_response: Callable[[httpx.Response], None] | None = None


def _predict(record: dict[str, Any], path: str = PREDICT_PATH) -> Request:
    return Request("POST", path, json.dumps({"record": record}).encode())


class Scenario:
    """Steady traffic: records drawn from the training distribution."""

    name = "steady"

    def __init__(self, path: str = PREDICT_PATH, seed: int = 1001, pool: int = 5000) -> None:
        self.path = path
        self._records = data.generate(pool, seed=seed).records()

    def record(self, index: int, elapsed_s: float) -> dict[str, Any]:
        return self._records[index % len(self._records)]

    def request(self, index: int, elapsed_s: float) -> Request:
        return _predict(self.record(index, elapsed_s), self.path)

    def finish(self, statuses: Counter[str]) -> None:
        """Hook for scenarios that report something at the end."""


BAD_BODIES: tuple[tuple[str, bytes, str], ...] = (
    ("malformed_json", b'{"record": {', "application/json"),
    ("unsupported_media_type", b"tenure_months=3", "application/x-www-form-urlencoded"),
    ("empty_batch", b'{"records": []}', "application/json"),
    ("invalid_shape", b"[1, 2, 3]", "application/json"),
)


class BadInputs(Scenario):
    """A burst of invalid requests mixed into valid traffic (one in ``every``)."""

    name = "bad-inputs"

    def __init__(self, path: str = PREDICT_PATH, every: int = 3, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.every = every

    def request(self, index: int, elapsed_s: float) -> Request:
        if index % self.every:
            return super().request(index, elapsed_s)
        kind = (index // self.every) % (len(BAD_BODIES) + 3)
        record = dict(self.record(index, elapsed_s))
        if kind < len(BAD_BODIES):
            _, body, content_type = BAD_BODIES[kind]
            return Request("POST", self.path, body, {"content-type": content_type})
        if kind == len(BAD_BODIES):
            record.pop("age")
        elif kind == len(BAD_BODIES) + 1:
            record["contract"] = "lifetime"
        else:
            record["monthly_charges"] = "lots"
        return _predict(record, self.path)


SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (Scenario, BadInputs)}
