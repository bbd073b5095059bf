"""Trace ids that the collector's probabilistic tail-sampling policy keeps, or drops."""

from __future__ import annotations

from modelobs.telemetry.exemplars import TailSamplingPolicy


def trace_ids(policy: TailSamplingPolicy, kept: bool, count: int = 1) -> list[int]:
    """The first ``count`` trace ids (counting up from a fixed one) ``policy`` keeps / drops."""
    found = []
    candidate = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    while len(found) < count:
        candidate += 1
        if policy.keeps_trace_id(candidate) is kept:
            found.append(candidate)
    return found
