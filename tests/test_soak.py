"""Soak: the native stack under steady load with feedback and drift for minutes (3 in CI;
MODELOBS_SOAK_SECONDS for the 20-minute run on demand). After a warm-up, neither service's
memory grows by 10 % or more, every bounded queue stays within its bound, no file descriptor or
thread leaks, and nothing is logged at ERROR. The test prints every figure it samples.

    MODELOBS_SOAK_SECONDS=1200 .venv/bin/pytest tests/test_soak.py -s
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

import psutil
import pytest

from modelobs.loadgen.scenarios import GradualDrift, LabelShift, Scenario

from .faults.conftest import SERVICES, FaultStack, native_stack
from .faults.load import Phase, load_phase, scrape, total

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

SOAK_S = float(os.environ.get("MODELOBS_SOAK_SECONDS") or 180)
WARM_UP_S = max(30.0, SOAK_S / 6)
STEP_S = 15.0
RSS_GROWTH = 0.10
# Open sockets come and go with the requests in flight; a leak grows without bound.
FD_SLACK = 10
THREAD_SLACK = 2
PREDICTION_LOG_QUEUE = 10_000  # Settings.prediction_log_queue's default


@dataclass
class Sample:
    at_s: float
    rss_mib: float
    fds: int
    threads: int
    queues: dict[str, float]

    def line(self, name: str) -> str:
        queues = " ".join(f"{k}={v:.0f}" for k, v in self.queues.items())
        return (
            f"{self.at_s:6.0f}s {name:>14}: RSS {self.rss_mib:6.1f} MiB  fds {self.fds:3d}  "
            f"threads {self.threads:3d}  {queues}"
        )


def _sample(stack: FaultStack, name: str, t0: float) -> Sample:
    proc = psutil.Process(stack.pid(name))
    metrics = scrape(stack.url(stack.processes[name].ports[0], "/metrics"))
    queues = {
        signal: total(metrics, f"otel_sdk_processor_{signal}_queue_size")
        for signal in ("span", "log")
    }
    queues["prediction_log"] = total(metrics, "modelobs_prediction_log_queue_size")
    for signal in ("span", "log"):
        queues[f"{signal}_capacity"] = total(metrics, f"otel_sdk_processor_{signal}_queue_capacity")
    return Sample(
        time.monotonic() - t0,
        proc.memory_info().rss / 2**20,
        proc.num_fds(),
        proc.num_threads(),
        queues,
    )


def test_soak(tmp_path_factory: pytest.TempPathFactory) -> None:
    scenarios: list[Scenario] = [
        Scenario(),
        LabelShift(at_s=0),  # feedback for its own predictions
        GradualDrift(ramp_s=STEP_S),
    ]
    with native_stack(tmp_path_factory.mktemp("soak-run")) as stack:
        t0 = time.monotonic()
        warm_up: list[Phase] = []  # the stack settling in (caches, the machine's neighbours)
        phases: list[Phase] = []  # after the warm-up: what the guarantees are about
        samples: dict[str, list[Sample]] = {name: [] for name in SERVICES}
        baseline: dict[str, Sample] = {}
        step = 0
        print()
        while time.monotonic() - t0 < SOAK_S:
            scenario = scenarios[step % len(scenarios)]
            phase = load_phase(scenario.name, stack.gateway_url, STEP_S, scenario=scenario)
            print(phase.line())
            (phases if baseline else warm_up).append(phase)
            step += 1
            for name in SERVICES:
                sample = _sample(stack, name, t0)
                samples[name].append(sample)
                print(sample.line(name))
                if name not in baseline and sample.at_s >= WARM_UP_S:
                    baseline[name] = sample
        errors = {
            name: [line for line in stack.log_text(name).splitlines() if '"level":"ERROR"' in line]
            for name in SERVICES
        }

    statuses = Counter[str]()
    for phase in phases:
        statuses.update(phase.result.statuses)
    print(
        f"after the warm-up: {statuses.total()} requests in {len(phases)} steps of "
        f"{STEP_S:.0f} s: {dict(statuses)}"
    )
    for name in SERVICES:
        base, last = baseline[name], samples[name][-1]
        growth = last.rss_mib / base.rss_mib - 1
        print(
            f"{name}: after warm-up RSS {base.rss_mib:.1f} -> {last.rss_mib:.1f} MiB "
            f"({growth:+.1%}), fds {base.fds} -> {last.fds}, threads {base.threads} -> "
            f"{last.threads}, ERROR lines {len(errors[name])}"
        )
    assert phases, "the soak ended before its warm-up did"
    assert not [s for s in statuses if not s.isdigit() or s.startswith("5")], statuses
    for name in SERVICES:
        base, last = baseline[name], samples[name][-1]
        growth = last.rss_mib / base.rss_mib - 1
        assert growth < RSS_GROWTH, name
        assert last.fds <= base.fds + FD_SLACK, name
        assert last.threads <= base.threads + THREAD_SLACK, name
        assert not errors[name], errors[name][:3]
        for sample in samples[name]:
            q = sample.queues
            assert q["span_capacity"] > 0 and q["log_capacity"] > 0, sample  # the names hold
            assert q["span"] <= q["span_capacity"] and q["log"] <= q["log_capacity"], sample
            assert q["prediction_log"] <= PREDICTION_LOG_QUEUE, sample
