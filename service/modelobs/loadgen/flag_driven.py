"""Load-generator faults switched by flags: ``feature-shift`` moves the features of the
records it sends, ``label-shift`` changes the labels of the feedback it sends.

Wraps any scenario. With a flag file, half of the requests are feedback for earlier
predictions, so labels keep arriving: with ``label-shift`` off they are the records' true
labels, so realized accuracy recovers once a drill switches it off.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter, deque
from typing import Any

import httpx

from ..flags.client import Evaluation, FaultFlags
from ..model import data
from .baggage import BAGGAGE_HEADER, baggage_header
from .scenarios import Request, Scenario, _predict


class FlagDriven:
    """``scenario``'s traffic, shaped by the flags in ``flags`` (evaluated per request)."""

    def __init__(self, scenario: Scenario, flags: FaultFlags, seed: int = 17) -> None:
        self.scenario = scenario
        self.name = scenario.name
        self.flags = flags
        self.feedback_path = scenario.path.replace("predict", "feedback")
        self._pending: deque[tuple[str, str]] = deque(maxlen=10_000)
        self._random = random.Random(seed)
        numeric = [f.name for f in data.FEATURES if f.kind == "numeric"]
        records = data.generate(2000, seed=scenario.seed).records()
        self._sd = {f: statistics.pstdev(float(r[f]) for r in records) for f in numeric}
        self._integer = {f.name: f.integer for f in data.FEATURES if f.kind == "numeric"}

    def _shift(self, record: dict[str, Any], flag: Evaluation) -> dict[str, Any]:
        shifted = dict(record)
        sds = float(flag.get("shift_sd", 0.0) or 0.0)
        for name in flag.get("features", []) or []:
            if name in self._sd and name in shifted:
                value = float(shifted[name]) + sds * self._sd[name]
                shifted[name] = round(value) if self._integer[name] else round(value, 2)
        return shifted

    def _feedback(self) -> Request:
        prediction_id, true_label = self._pending.popleft()
        flag = self.flags.evaluate("label-shift")
        share = flag.get("churn_share")
        headers = {"content-type": "application/json"}
        if flag.on and share is not None:
            label = "churn" if self._random.random() < float(share) else "stay"
            headers[BAGGAGE_HEADER] = baggage_header(flag.key, flag.variant)
        else:
            label = true_label
        body = json.dumps({"prediction_id": prediction_id, "label": label}).encode()
        return Request("POST", self.feedback_path, body, headers)

    def request(self, index: int, elapsed_s: float) -> Request:
        if self._pending and index % 2:
            return self._feedback()
        request = self.scenario.request(index, elapsed_s)
        if request.path != self.scenario.path:
            return request  # the wrapped scenario's own feedback or bad input
        flag = self.flags.evaluate("feature-shift")
        if flag.on:
            record = self._shift(self.scenario.record(index, elapsed_s), flag)
            request = _predict(record, self.scenario.path)
            request.headers[BAGGAGE_HEADER] = baggage_header(flag.key, flag.variant)
        true_label = self.scenario.true_label(index)
        inner = request.on_response

        def remember(response: httpx.Response) -> None:
            if inner is not None:
                inner(response)
            if response.status_code == 200:
                for p in response.json().get("predictions", [])[:1]:
                    self._pending.append((p["prediction_id"], true_label))

        request.on_response = remember
        return request

    def finish(self, statuses: Counter[str]) -> None:
        self.scenario.finish(statuses)

    def describe(self, elapsed_s: float) -> str:
        on = [k for k, v in self.flags.active().items() if v != "off"]
        return f"{self.scenario.describe(elapsed_s)} (flags on: {', '.join(on) or 'none'})"
