"""Exemplars resolve: of the trace ids Prometheus holds as exemplars over the last 5 minutes,
at least 99 % are traces Jaeger has, under steady load with the shipped tail-sampling
policy; for the services' own histograms (SDK exemplar filter) and for the span metrics
(the post-sampling span_metrics/sampled connector), each over at least 100 exemplars."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from ..waiting import poll_until, wait_until
from .conftest import DECISION_WAIT_S, E2EStack, jaeger_trace, send

pytestmark = pytest.mark.e2e

WINDOW_S = 300
MIN_EXEMPLARS = 100
MIN_RESOLVED = 0.99
SPAN_METRICS_PREFIX = "traces_span_metrics_"
# Extra traffic (on top of the 5 req/s steady load) until both families have enough.
DRIVE_RPS = 30
DRIVE_DEADLINE_S = 240
# After the newest exemplar: the collector decides DECISION_WAIT_S after a trace's first
# span, then batches (0.5 s) towards Jaeger; a loaded 2-core machine adds its delays.
RESOLVE_GRACE_S = DECISION_WAIT_S + 20


@dataclass
class Family:
    """The exemplars of one group of metrics: trace id -> (metric name, newest timestamp)."""

    name: str
    exemplars: dict[str, tuple[str, float]] = field(default_factory=dict)

    def add(self, metric: str, trace_id: str, timestamp: float) -> None:
        known = self.exemplars.get(trace_id)
        if known is None or timestamp > known[1]:
            self.exemplars[trace_id] = (metric, timestamp)


def query_exemplars(e2e: E2EStack) -> dict[str, Family]:
    """Every exemplar with a trace id over the last WINDOW_S, as an app and a span-metrics
    family (by metric name)."""
    now = time.time()
    response = httpx.get(
        f"{e2e.prom_url}/api/v1/query_exemplars",
        params={"query": '{__name__=~".+"}', "start": now - WINDOW_S, "end": now},
        timeout=30,
    )
    response.raise_for_status()
    families = {"app": Family("app histograms"), "span": Family("span metrics")}
    for series in response.json()["data"]:
        metric = series["seriesLabels"]["__name__"]
        family = families["span" if metric.startswith(SPAN_METRICS_PREFIX) else "app"]
        for exemplar in series["exemplars"]:
            trace_id = exemplar["labels"].get("trace_id")
            if trace_id:
                family.add(metric, trace_id, float(exemplar["timestamp"]))
    return families


def drive(url: str, stop: threading.Event) -> None:
    """Steady extra requests at about DRIVE_RPS until ``stop`` (bounded by the deadline)."""
    deadline = time.monotonic() + DRIVE_DEADLINE_S
    with httpx.Client() as client:
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            send(url, client)
            stop.wait(max(0.0, 1 / DRIVE_RPS - (time.monotonic() - started)))


def resolve(e2e: E2EStack, family: Family) -> tuple[set[str], set[str]]:
    """(resolved, unresolved) trace ids, waiting until every trace has had time to be decided
    and exported: until RESOLVE_GRACE_S after the family's newest exemplar."""
    newest = max(ts for _, ts in family.exemplars.values())
    pending, resolved = set(family.exemplars), set()

    def all_resolved() -> bool:
        resolved.update(t for t in sorted(pending - resolved) if jaeger_trace(e2e, t))
        return not pending - resolved

    poll_until(all_resolved, max(0.0, newest + RESOLVE_GRACE_S - time.time()), poll_s=1)
    return resolved, pending - resolved


def test_exemplars_resolve_in_jaeger(e2e: E2EStack, traffic: dict) -> None:
    stop = threading.Event()
    drivers = [
        threading.Thread(target=drive, args=(url, stop), daemon=True)
        for url in (e2e.gateway_url, e2e.slow_gateway_url)
    ]
    for thread in drivers:
        thread.start()
    try:
        latest = [query_exemplars(e2e)]

        def enough() -> bool:
            latest[0] = query_exemplars(e2e)
            return all(len(f.exemplars) >= MIN_EXEMPLARS for f in latest[0].values())

        wait_until(
            enough,
            lambda: (
                "too few exemplars after driving traffic: "
                + ", ".join(f"{f.name} {len(f.exemplars)}" for f in latest[0].values())
            ),
            DRIVE_DEADLINE_S,
            poll_s=2,
        )
        families = latest[0]
    finally:
        stop.set()
        for thread in drivers:
            thread.join(timeout=10)

    failures = []
    for family in families.values():
        resolved, unresolved = resolve(e2e, family)
        share = len(resolved) / len(family.exemplars)
        per_metric = Counter(metric for metric, _ in family.exemplars.values())
        print(
            f"\n{family.name}: {len(resolved)}/{len(family.exemplars)} exemplar trace ids "
            f"resolve in Jaeger ({share:.1%}); by metric: {dict(per_metric)}"
        )
        if share < MIN_RESOLVED:
            missing = [(t, *family.exemplars[t]) for t in sorted(unresolved)[:10]]
            failures.append(f"{family.name}: {share:.1%} resolved; unresolved e.g. {missing}")
    assert not failures, "\n".join(failures)


def test_pre_sampling_span_metrics_carry_no_exemplars(e2e: E2EStack, traffic: dict) -> None:
    # Their exemplars would name the first spans of each flush, mostly of dropped traces.
    now = time.time()
    response = httpx.get(
        f"{e2e.prom_url}/api/v1/query_exemplars",
        params={
            "query": '{__name__=~"traces_span_metrics_(duration_seconds_bucket|calls_total)"}',
            "start": now - WINDOW_S,
            "end": now,
        },
        timeout=30,
    )
    response.raise_for_status()
    # Sanity: the series exist (else "no exemplars" proves nothing).
    series = httpx.get(
        f"{e2e.prom_url}/api/v1/series",
        params={"match[]": "traces_span_metrics_calls_total", "start": now - WINDOW_S},
        timeout=10,
    ).json()["data"]
    assert series, "no traces_span_metrics_calls_total series at all"
    assert [s for s in response.json()["data"] if s["exemplars"]] == []
