"""The model-service replicas behind the gateway: which one a request goes to, and which are
skipped for a while because they refused a connection.

Choice: rendezvous (highest-random-weight) hashing of the request's ``Idempotency-Key`` over
the configured replicas. The gateway makes a random key for a request that has none, so
traffic spreads evenly; a key the client chose always ranks the replicas in the same order,
so the client's retry of a 504 or a lost answer reaches the replica that holds its first
answer (the idempotency map is per process, apps/idempotency.py) and is replayed, not
predicted again. No shared state between gateways is needed: every gateway ranks alike.

Health is passive: a replica that refuses a connection (or cannot be connected to in time)
is skipped for ``first_skip_s`` seconds (``MODELOBS_UPSTREAM_SKIP_S``), doubling on each
refusal in a row up to ``MAX_SKIP_FACTOR`` times that,
then tried again by the next request that ranks it first; its first answer clears it. A
skipped replica still comes last in every ranking, so with every replica skipped the
gateway still tries them all rather than answer 503 without trying.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_SKIP_FACTOR = 16


def parse_urls(urls: str | None, fallback: str) -> list[str]:
    """``MODELOBS_MODEL_URLS`` (comma-separated) or, when unset or empty, ``fallback``
    (``MODELOBS_MODEL_URL``); duplicates are refused, since a replica listed twice would get
    twice the traffic without anyone meaning it."""
    listed = [u.strip().rstrip("/") for u in (urls or "").split(",") if u.strip()]
    listed = listed or [fallback.strip().rstrip("/")]
    seen: set[str] = set()
    for url in listed:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"MODELOBS_MODEL_URLS: {url!r} is not an http(s) URL")
        if url in seen:
            raise ValueError(f"MODELOBS_MODEL_URLS: {url!r} is listed twice")
        seen.add(url)
    return listed


@dataclass
class Replica:
    """One model-service URL and how long it is skipped."""

    url: str
    skipped_until: float = 0.0
    refusals_in_a_row: int = 0

    def weight(self, key: str) -> bytes:
        """This replica's rank for ``key`` (the same in every gateway)."""
        return hashlib.blake2b(f"{self.url}\n{key}".encode(), digest_size=8).digest()

    def skipped(self, now: float) -> bool:
        return now < self.skipped_until


class ReplicaSet:
    """The ranking and the passive health of several replicas (one is a set of one)."""

    def __init__(
        self,
        urls: Sequence[str],
        first_skip_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError("at least one model-service URL is needed")
        self.replicas = [Replica(url) for url in urls]
        self.first_skip_s = first_skip_s
        self._clock = clock

    def __len__(self) -> int:
        return len(self.replicas)

    def ranked(self, key: str) -> list[Replica]:
        """Every replica, best first for ``key``: those not skipped in rendezvous order, then
        the skipped ones in the same order."""
        now = self._clock()
        by_weight = sorted(self.replicas, key=lambda r: r.weight(key), reverse=True)
        return [r for r in by_weight if not r.skipped(now)] + [
            r for r in by_weight if r.skipped(now)
        ]

    def refused(self, replica: Replica) -> None:
        """``replica`` refused a connection: skip it, longer after each refusal in a row."""
        replica.refusals_in_a_row += 1
        factor = min(2 ** (replica.refusals_in_a_row - 1), MAX_SKIP_FACTOR)
        replica.skipped_until = self._clock() + self.first_skip_s * factor

    def answered(self, replica: Replica) -> None:
        replica.refusals_in_a_row = 0
        replica.skipped_until = 0.0

    def available(self) -> int:
        """How many replicas are not being skipped now."""
        now = self._clock()
        return sum(1 for r in self.replicas if not r.skipped(now))
