"""Fault flags as the services and the load generator see them: OpenFeature's SDK with
flagd's in-process file provider (``openfeature-provider-flagd``, resolver FILE), which polls
the flag file's modification time on its own thread, so a switch needs no restart and an
evaluation never waits on I/O.

A request touched by a flag (a variant other than ``off`` that acted on it) carries the flag
on the span it affected, with the semantic conventions' names: ``feature_flag.key``,
``feature_flag.result.variant``, ``feature_flag.provider.name``. The OpenFeature
OpenTelemetry hook (``openfeature-hooks-opentelemetry``) is not used: it adds a span event for
every evaluation, including the ``off`` ones every request makes, and puts nothing in the
span's attributes, which is what span metrics, tail sampling and trace search read.

Without a flag file (MODELOBS_FLAGS_FILE unset) no provider is started and every flag is
``off`` at the cost of a dictionary look-up.

Each flag's evaluation is kept for one poll interval: an OpenFeature evaluation costs about
19 µs of CPU here (bench/flag_evaluation.py), three per prediction, and the provider itself
only sees a new file once per poll interval, so a switch still lands within two intervals.
Our flags have no targeting rules (the share of requests a flag acts on is drawn here), so a
kept evaluation is the one the provider would give again.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from opentelemetry.trace import Span

from . import store
from .definitions import BY_KEY, OFF

PROVIDER_NAME = "flagd"
KEY = "feature_flag.key"
VARIANT = "feature_flag.result.variant"
PROVIDER = "feature_flag.provider.name"


@dataclass(frozen=True)
class Evaluation:
    """One flag's variant and value at one moment."""

    key: str
    variant: str
    value: dict[str, Any]

    @property
    def on(self) -> bool:
        return self.variant != OFF

    def get(self, name: str, default: Any = None) -> Any:
        return self.value.get(name, default)

    def hits(self, rng: random.Random | None = None) -> bool:
        """True for the share (value ``share``) of requests this flag acts on."""
        share = float(self.value.get("share", 1.0) or 0.0)
        return self.on and share > 0 and (rng or random).random() < share

    def mark(self, span: Span) -> None:
        """Record on ``span`` that this flag acted on it."""
        span.set_attributes({KEY: self.key, VARIANT: self.variant, PROVIDER: PROVIDER_NAME})


class FaultFlags:
    """Evaluates the fault flags of one process (one provider per flag file)."""

    def __init__(self, path: Path | None, poll_interval_ms: int = 500) -> None:
        self.path = path
        self._client: OpenFeatureClient | None = None
        self._keep_s = poll_interval_ms / 1000
        self._kept: dict[str, tuple[float, Evaluation]] = {}
        self._domain = f"modelobs-{uuid.uuid4().hex[:8]}"
        if path is not None:
            store.ensure(path)
            provider = FlagdProvider(
                resolver_type=ResolverType.FILE,
                offline_flag_source_path=str(path),
                deadline_ms=poll_interval_ms,
            )
            api.set_provider_and_wait(provider, domain=self._domain)
            self._provider = provider
            self._client = api.get_client(domain=self._domain)

    def evaluate(self, key: str) -> Evaluation:
        """The flag's variant and value now (``off`` when the file is missing or broken)."""
        definition = BY_KEY[key]
        if self._client is None:
            return Evaluation(key, OFF, definition.off_value)
        now = time.monotonic()
        kept = self._kept.get(key)
        if kept is not None and now - kept[0] < self._keep_s:
            return kept[1]
        details = self._client.get_object_details(key, definition.off_value)
        value = details.value if isinstance(details.value, dict) else definition.off_value
        evaluation = Evaluation(key, details.variant or OFF, value)
        self._kept[key] = (now, evaluation)
        return evaluation

    def active(self) -> dict[str, str]:
        """Each flag's variant now, for the active-flags gauge."""
        return {key: self.evaluate(key).variant for key in BY_KEY}

    def close(self) -> None:
        if self._client is not None:
            self._provider.shutdown()
            self._client = None
