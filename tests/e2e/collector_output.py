"""The collector's Prometheus exporter output, read as the tests need it: one job's samples."""

from __future__ import annotations

from collections import defaultdict

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]


def job_samples(metrics_url: str, job: str) -> Samples:
    """Sample name → (labels, value) for one job (``service.namespace/service.name``; its
    ``instance`` label is the ``service.instance.id``)."""
    found: Samples = defaultdict(list)
    text = httpx.get(metrics_url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job") == job:
                found[sample.name].append((sample.labels, sample.value))
    return found


def by_instance(samples: Samples) -> dict[str, dict[str, float]]:
    """Sample name → instance → the sum of its values."""
    summed: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, points in samples.items():
        for labels, value in points:
            summed[name][labels["instance"]] += value
    return summed
