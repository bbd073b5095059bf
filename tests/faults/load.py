"""Load for the fault tests: `modelobs load`'s open-loop runner, phase by phase (before, during,
after a fault), with a fault action run beside it; the figures each test prints and asserts.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

from modelobs.loadgen.runner import LoadResult, run_load
from modelobs.loadgen.scenarios import Scenario

RPS = 20.0
# A phase's p99 is read window by window (as a dashboard reads p99 per interval): one pause
# of the shared machine then moves one window, not the phase's figure.
WINDOW_S = 5.0


@dataclass
class Phase:
    name: str
    result: LoadResult

    @property
    def sent(self) -> int:
        return self.result.sent

    @property
    def failed(self) -> int:
        """Requests not answered 2xx (timeouts and transport errors included)."""
        return sum(n for s, n in self.result.statuses.items() if not s.startswith("2"))

    @property
    def p99_ms(self) -> float:
        return self.result.percentile_ms(99)

    def window_p99s_ms(self, window_s: float = WINDOW_S) -> list[float]:
        """The p99 of each consecutive ``window_s`` of the phase (requests in the order they
        were answered, split into as many equal runs as the phase has windows)."""
        latencies = self.result.latencies_s
        elapsed = (self.result.finished or self.result.started) - self.result.started
        windows = max(1, min(len(latencies), round(elapsed / window_s)))
        size = len(latencies) / windows
        return [
            float(np.percentile(latencies[round(i * size) : round((i + 1) * size)], 99) * 1000)
            for i in range(windows)
        ]

    @property
    def windowed_p99_ms(self) -> float:
        """The median of the windows' p99s: the phase's p99 as its typical window shows it."""
        return float(np.median(self.window_p99s_ms()))

    def line(self) -> str:
        statuses = dict(sorted(self.result.statuses.items()))
        windows = " ".join(f"{p:.0f}" for p in self.window_p99s_ms())
        return (
            f"{self.name:>8}: sent {self.sent:5d}  failed {self.failed:4d}  "
            f"p50 {self.result.percentile_ms(50):7.1f} ms  p99 {self.p99_ms:7.1f} ms  "
            f"p99 by {WINDOW_S:g} s window [{windows}] ms  {statuses}"
        )


_LOADER: ProcessPoolExecutor | None = None


def _loader() -> ProcessPoolExecutor:
    """One load process for the session: the load's event loop never shares a GIL with the
    test's fault actions and scrapes (which would show up as client-side latency)."""
    global _LOADER
    if _LOADER is None:
        _LOADER = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
        atexit.register(_LOADER.shutdown)
    return _LOADER


def _run(url: str, scenario: Scenario, rps: float, seconds: float) -> LoadResult:
    return asyncio.run(run_load(url, scenario, rps=rps, duration_s=seconds, show_progress=False))


def load_phase(
    name: str,
    url: str,
    seconds: float,
    *,
    rps: float = RPS,
    scenario: Scenario | None = None,
    beside: Callable[[], object] | None = None,
) -> Phase:
    """Send ``rps`` requests a second for ``seconds`` from the load process; ``beside`` (a
    fault, a restart) runs here meanwhile."""
    future = _loader().submit(_run, url, scenario or Scenario(), rps, seconds)
    try:
        if beside is not None:
            beside()
    finally:
        result = future.result(timeout=seconds + 120)
    return Phase(name, result)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text endpoint: (name, labels) -> value."""
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """Sum of ``name``'s samples whose labels include ``labels`` ("" = the label is absent)."""
    found = 0.0
    for (sample, have), value in samples.items():
        if sample != name:
            continue
        got = dict(have)
        if all(got.get(k, "") == v for k, v in labels.items()):
            found += value
    return found


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid``, MiB."""
    return psutil.Process(pid).memory_info().rss / 2**20


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds ``pids`` have used so far: unlike latency, hardly moved by
    whatever else the (shared) machine runs meanwhile."""
    times = [psutil.Process(pid).cpu_times() for pid in pids]
    return sum(t.user + t.system for t in times)
