"""Traffic shapes for the load generator: what each request carries.

Each scenario draws from the same deterministic data the model was trained on, and can
shift it, so drift detection and alerts have something real to find. Scenarios are
dataclasses: their fields are the knobs ``modelobs load`` passes by name.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from ..model import data

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


@dataclass
class Scenario:
    """Steady traffic: records drawn from the training distribution."""

    name: ClassVar[str] = "steady"
    path: str = PREDICT_PATH
    seed: int = 1001
    pool: int = 5000

    def __post_init__(self) -> None:
        dataset = data.generate(self.pool, seed=self.seed)
        self._records = dataset.records()
        self._labels = [data.CLASSES[int(i)] for i in dataset.labels]

    def true_label(self, index: int) -> str:
        """The label of the record ``record(index, ...)`` draws (before any shift)."""
        return self._labels[index % len(self._labels)]

    def record(self, index: int, elapsed_s: float) -> dict[str, Any]:
        return self._records[index % len(self._records)]

    def request(self, index: int, elapsed_s: float) -> Request:
        return _predict(self.record(index, elapsed_s), self.path)

    def finish(self, statuses: Counter[str]) -> None:
        """Hook for scenarios that report something at the end."""

    def describe(self, elapsed_s: float) -> str:
        """The phase the scenario is in, for the progress line."""
        return self.name


BAD_BODIES: tuple[tuple[str, bytes, str], ...] = (
    ("malformed_json", b'{"record": {', "application/json"),
    ("unsupported_media_type", b"tenure_months=3", "application/x-www-form-urlencoded"),
    ("empty_batch", b'{"records": []}', "application/json"),
    ("invalid_shape", b"[1, 2, 3]", "application/json"),
)


@dataclass
class BadInputs(Scenario):
    """A burst of invalid requests: from ``at_s`` for ``burst_s`` seconds, one in ``every``
    requests is bad (each kind of rejection in turn); valid traffic around it."""

    name: ClassVar[str] = "bad-inputs"
    every: int = 3
    at_s: float = 0.0
    burst_s: float = float("inf")

    def _in_burst(self, elapsed_s: float) -> bool:
        return self.at_s <= elapsed_s < self.at_s + self.burst_s

    def describe(self, elapsed_s: float) -> str:
        return "bad-inputs: burst" if self._in_burst(elapsed_s) else "bad-inputs: valid traffic"

    def request(self, index: int, elapsed_s: float) -> Request:
        if index % self.every or not self._in_burst(elapsed_s):
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


@dataclass
class _Shifted(Scenario):
    """Adds a shift to chosen numeric features: none before ``at_s``, then growing linearly
    to ``shift_sd`` standard deviations over ``ramp_s`` seconds (0: all at once)."""

    features: tuple[str, ...] = ("monthly_charges", "tenure_months")
    shift_sd: float = 1.0
    at_s: float = 0.0
    ramp_s: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        numeric = {f.name: f for f in data.FEATURES if f.kind == "numeric"}
        unknown = [f for f in self.features if f not in numeric]
        if unknown:
            raise ValueError(f"not numeric features: {', '.join(unknown)}")
        self._sd = {f: statistics.pstdev(float(r[f]) for r in self._records) for f in self.features}
        self._integer = {f: numeric[f].integer for f in self.features}

    def shift_at(self, elapsed_s: float) -> float:
        if elapsed_s < self.at_s:
            return 0.0
        if self.ramp_s <= 0:
            return self.shift_sd
        return self.shift_sd * min(1.0, (elapsed_s - self.at_s) / self.ramp_s)

    def record(self, index: int, elapsed_s: float) -> dict[str, Any]:
        shift = self.shift_at(elapsed_s)
        record = dict(super().record(index, elapsed_s))
        if shift:
            for name in self.features:
                value = float(record[name]) + shift * self._sd[name]
                record[name] = round(value) if self._integer[name] else round(value, 2)
        return record

    def describe(self, elapsed_s: float) -> str:
        return f"{self.name}: {', '.join(self.features)} +{self.shift_at(elapsed_s):.2f} sd"


@dataclass
class GradualDrift(_Shifted):
    """The shift grows from the start to its full size over ``ramp_s`` seconds."""

    name: ClassVar[str] = "gradual-drift"
    ramp_s: float = 60.0


@dataclass
class SuddenShift(_Shifted):
    """No shift before ``at_s`` seconds, the full shift after."""

    name: ClassVar[str] = "sudden-shift"
    at_s: float = 30.0


@dataclass
class LabelShift(Scenario):
    """Predictions followed by their feedback; the share of true 'churn' labels moves from
    ``churn_before`` to ``churn_after`` at ``at_s`` seconds, so accuracy moves with it."""

    name: ClassVar[str] = "label-shift"
    at_s: float = 30.0
    churn_before: float = 0.3
    churn_after: float = 0.8
    feedback_path: str = "/v1/feedback"
    label_seed: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        self._pending: deque[str] = deque(maxlen=10_000)
        self._random = random.Random(self.label_seed)
        self.feedback_sent = 0

    def _churn_rate(self, elapsed_s: float) -> float:
        return self.churn_before if elapsed_s < self.at_s else self.churn_after

    def _remember(self, response: httpx.Response) -> None:
        if response.status_code == 200:
            self._pending.extend(p["prediction_id"] for p in response.json()["predictions"])

    def request(self, index: int, elapsed_s: float) -> Request:
        if self._pending and index % 2:
            label = "churn" if self._random.random() < self._churn_rate(elapsed_s) else "stay"
            self.feedback_sent += 1
            body = {"prediction_id": self._pending.popleft(), "label": label}
            return Request("POST", self.feedback_path, json.dumps(body).encode())
        request = super().request(index, elapsed_s)
        request.on_response = self._remember
        return request

    def describe(self, elapsed_s: float) -> str:
        return f"{self.name}: {self._churn_rate(elapsed_s):.0%} churn labels"


SCENARIOS: dict[str, type[Scenario]] = {
    s.name: s for s in (Scenario, BadInputs, GradualDrift, SuddenShift, LabelShift)
}
