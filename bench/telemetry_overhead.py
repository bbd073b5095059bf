"""What full telemetry costs: the model service (and gateway → model) bare, with the default
OpenTelemetry setup a user would write (the peer, bench/peer_service.py) and with ours, all
exporting every signal to the real collector, side by side in one run: throughput at
saturation (wrk), latency at fixed rates of half and a quarter of bare's capacity (vegeta,
open loop, so a slow answer does not delay the next request) with the CPU each run used,
the same with two worker processes, and what each signal's export costs.

The setups run in groups (the model service; the pair; two workers), one group at a time:
only the measured group's services run, beside the collector, Jaeger and the log store.
Within a group every measurement runs in interleaved rounds (the order reverses every other
round), each run starting once the services are quiet again (the one measured before has
exported its backlog): saturation figures are medians over rounds, fixed-rate percentiles
are taken over every request of a setup's rounds, so a hiccup of a shared host lands on one
short run.

    python bench/telemetry_overhead.py            # ~32 minutes
    python bench/telemetry_overhead.py --quick    # 2 saturation rounds, 1 run per fixed rate

Needs the native binaries (`make binaries`) and wrk (`apt-get install wrk`); vegeta is built
from its Go module into ~/.cache/modelobs/tools on first use. Figures go to
bench/results/telemetry_overhead.json; bench/README.md quotes them.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.native import components as native  # noqa: E402
from deploy.native.binaries import find_binaries  # noqa: E402
from deploy.native.net import free_ports  # noqa: E402
from deploy.native.supervisor import Running, Supervisor  # noqa: E402

from modelobs.model.data import EXAMPLE_RECORD  # noqa: E402
from results_file import write_results  # noqa: E402

BODY = json.dumps({"record": EXAMPLE_RECORD})
WRK_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
VEGETA_VERSION = "v12.13.0"
VEGETA = Path(
    os.environ.get("MODELOBS_CACHE", Path.home() / ".cache" / "modelobs"),
    "tools",
    f"vegeta-{VEGETA_VERSION}",
    "vegeta",
)
# Bare: the same service with the OpenTelemetry SDK disabled (no spans, metrics or OTLP
# logs; the JSON log line on stdout stays, as any service has one).
BARE = {"OTEL_SDK_DISABLED": "true"}
# Fixed request rates, as shares of the matching bare setup's saturation throughput: the
# issue's half, and a quarter, where every setup stays well below saturation.
FIXED_RATE_FRACTIONS = (0.5, 0.25)
OFF = "none"
# The collector's, Jaeger's and the log store's niceness: below the load tool, which shares
# their core, so that its clock (when a request leaves, when its answer is read) does not
# wait behind the backends' work on a setup's telemetry, which bare does not send. They keep
# every cycle the load tool leaves.
BACKEND_NICENESS = 10
# The default OpenTelemetry setup in place of ours (bench/peer_service.py).
PEER = {"MODELOBS_BENCH_PEER": "1"}
# (name, entry point, environment, worker processes): bare, the peer and ours, for the
# model service, the gateway → model pair and the model service on two workers (unpinned:
# both cores); BREAKDOWN breaks the cost down by signal (skipped with --no-breakdown).
Variant = tuple[str, str, dict[str, str], int]
MODEL: list[Variant] = [
    ("model bare", "model", BARE, 1),
    ("model peer", "model", PEER, 1),
    ("model full", "model", {}, 1),
]
PAIR: list[Variant] = [
    ("gateway→model bare", "gateway", BARE, 1),
    ("gateway→model peer", "gateway", PEER, 1),
    ("gateway→model full", "gateway", {}, 1),
]
TWO_WORKERS: list[Variant] = [
    ("model bare, 2 workers", "model", BARE, 2),
    ("model peer, 2 workers", "model", PEER, 2),
    ("model full, 2 workers", "model", {}, 2),
]
VARIANTS = MODEL + PAIR + TWO_WORKERS
BREAKDOWN: list[Variant] = [
    # Like for like with bare's stdout: each prediction's record on stdout too (as shipped,
    # while logs go over OTLP it goes there only). The committed run (7aa9203) set this with
    # MODELOBS_STDOUT_LOG_LEVEL=INFO, since narrowed to the same per-request record.
    ("model, every record also on stdout", "model", {"MODELOBS_STDOUT_PREDICTIONS": "true"}, 1),
    ("model, traces not exported", "model", {"OTEL_TRACES_EXPORTER": OFF}, 1),
    ("model, logs not exported", "model", {"OTEL_LOGS_EXPORTER": OFF}, 1),
    ("model, metrics not exported", "model", {"OTEL_METRICS_EXPORTER": OFF}, 1),
    (
        "model, nothing exported",
        "model",
        {"OTEL_TRACES_EXPORTER": OFF, "OTEL_LOGS_EXPORTER": OFF, "OTEL_METRICS_EXPORTER": OFF},
        1,
    ),
]
# Setups measured together, one group at a time: a group's services run only while it is
# measured, so its tail latency shows its own telemetry, not the timers (metric exports,
# drift checks) of a dozen idle services on the same core. (title, setups with fixed
# rates, breakdown setups measured at saturation only, stopped before the fixed rates.)
GROUPS: list[tuple[str, list[str], list[str]]] = [
    ("model service", [n for n, *_ in MODEL], [n for n, *_ in BREAKDOWN]),
    ("gateway → model pair", [n for n, *_ in PAIR], []),
    ("model service, 2 workers", [n for n, *_ in TWO_WORKERS], []),
]
# Setup name → the bare setup its ratio is taken against.
BASELINE = {"model": "model bare", "gateway": "gateway→model bare"}


def baseline_of(name: str, kind: str, workers: int) -> str:
    return "model bare, 2 workers" if workers == 2 else BASELINE[kind]


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


WRK_CPU: int | None = None


def wrk(url: str, script: Path, seconds: float, connections: int) -> dict[str, float]:
    out = subprocess.run(
        pinned(
            WRK_CPU,
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
        ),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} failed requests under load:\n{out}")

    def pct(label: str) -> float:
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "requests": requests}


def ensure_vegeta() -> Path:
    """The benchmark's own setup step: vegeta built from its Go module, cached."""
    if not VEGETA.exists():
        print(f"building vegeta {VEGETA_VERSION} into {VEGETA.parent} ...", flush=True)
        subprocess.run(
            ["go", "install", f"github.com/tsenart/vegeta/v12@{VEGETA_VERSION}"],
            env={**os.environ, "GOBIN": str(VEGETA.parent)},
            check=True,
        )
    return VEGETA


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list."""
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def attack(url: str, body: Path, rate: float, seconds: float, out: Path) -> tuple[list[float], int]:
    """Latencies (ms) at a constant arrival rate (vegeta: open loop, every request sent on
    its schedule however long earlier ones take, so no coordinated omission), and how many
    requests met a connection reset."""
    targets = out.with_suffix(".targets")
    targets.write_text(f"POST {url}\nContent-Type: application/json\n@{body}\n")
    subprocess.run(
        pinned(
            WRK_CPU,
            [
                str(VEGETA),
                "attack",
                f"-rate={rate:.0f}/s",
                f"-duration={seconds:g}s",
                f"-targets={targets}",
                "-max-workers=256",
                f"-output={out}",
            ],
        ),
        check=True,
    )
    rows = subprocess.run(
        [str(VEGETA), "encode", "--to", "csv", str(out)], check=True, capture_output=True, text=True
    ).stdout
    latencies, reset, failed = [], 0, []
    for row in csv.reader(rows.splitlines()):
        if row[1] == "0" and "connection reset" in row[5]:
            # A request sent on a kept-alive connection the server was closing as idle
            # (keep-alive timeout): HTTP/1.1's race, which clients answer by retrying.
            # Counted and reported, not hidden; any HTTP error still fails the run.
            reset += 1
            continue
        if row[1] != "200":
            failed.append(f"{row[1]} {row[5]}")
        latencies.append(int(row[2]) / 1e6)
    if failed:
        raise RuntimeError(
            f"{url}: {len(failed)} of {len(latencies)} requests failed at {rate:.0f}/s: "
            f"{failed[:3]}"
        )
    return latencies, reset


def latency_summary(latencies: list[float], resets: int, rate: float) -> dict[str, float]:
    """Percentiles of every latency of one setup at one rate (all its rounds pooled)."""
    ordered = sorted(latencies)
    return {
        "rate": rate,
        "requests": len(ordered),
        "connection_resets": resets,
        "p50_ms": percentile(ordered, 50),
        "p99_ms": percentile(ordered, 99),
        "p999_ms": percentile(ordered, 99.9),
        "max_ms": ordered[-1],
    }


def fixed_rate(url: str, body: Path, rate: float, seconds: float, out: Path) -> dict[str, float]:
    """One fixed-rate run's latency percentiles (bench/telemetry_rounds.py)."""
    return latency_summary(*attack(url, body, rate, seconds, out), rate)


def cpu_seconds(processes: list[Running]) -> float:
    """User + system CPU of a setup's service processes (uvicorn's workers included):
    unlike throughput, barely moved by whatever else runs on a shared machine."""
    return sum(cpu_by_process(processes).values())


def cpu_by_process(processes: list[Running]) -> dict[str, float]:
    """The same, per service of the setup (a pair: the gateway and its model service)."""
    return {
        record.name: sum(sum(p.cpu_times()[:2]) for p in record.group()) for record in processes
    }


def wait_quiet(processes: list[Running], limit_s: float = 60.0) -> float:
    """Until the processes together used under 15 % of a core for a second, at most
    ``limit_s``; the seconds waited. Called with the group's services and the collector,
    Jaeger and the log store: the setup measured before has exported what it queued and the
    backends have stored it. Without it, a setup's backlog runs during the next one's
    measurement (the backends on the load tool's core), and that next one pays for it.
    """
    start = time.monotonic()
    last = cpu_seconds(processes)
    while time.monotonic() - start < limit_s:
        time.sleep(1.0)
        now = cpu_seconds(processes)
        if now - last < 0.15:
            break
        last = now
    return time.monotonic() - start


def queue_full_drops(metrics_url: str) -> dict[str, float]:
    """Spans and log records our services' batch processors dropped because their queue was
    full, summed over every setup, as the collector's Prometheus exporter shows the SDK's
    self-metrics (pushed every 5 s, so the last seconds may be missing): "every signal
    exported" is checked, not assumed. The peer has no self-metrics (the SDK's default)."""
    import urllib.request

    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    drops = {"span": 0.0, "log": 0.0}
    for line in text.splitlines():
        for signal in drops:
            if line.startswith(f"otel_sdk_processor_{signal}_processed_total{{") and (
                'error_type="queue_full"' in line
            ):
                drops[signal] += float(line.rsplit(" ", 1)[1])
    return drops


def git_commit() -> str:
    """The commit the figures come from, ``+dirty`` when the tree had changes."""
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    )
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def service_argv(part_argv: list[str], kind: str, env: dict[str, str], workers: int) -> list[str]:
    """``modelobs serve`` for ours and bare; the peer's launcher for the peer."""
    argv = list(part_argv)
    if env.get("MODELOBS_BENCH_PEER"):
        serve = argv.index("serve")
        argv[: serve + 1] = [sys.executable, str(ROOT / "bench" / "peer_service.py")]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return argv


def _busy(latency: dict[str, float]) -> str:
    """Cores the setup kept busy during a fixed-rate run (older results lack it)."""
    busy = latency.get("busy_cores")
    return "" if busy is None else f"{busy:.2f}"


def _paired(latency: dict[str, float]) -> str:
    """The median over rounds of a run's p99 above bare's in the same round (older results
    lack it)."""
    above = latency.get("p99_above_bare_ms_paired_median")
    return "" if above is None else f"{above:+.2f}"


def markdown_tables(figures: dict) -> str:
    """The tables bench/README.md quotes, from a results file's figures (a test holds the
    README to the committed results through this function)."""
    summary = figures["summary"]
    lines = [
        "| setup | req/s (median) | of bare | of bare, from CPU | CPU µs per request "
        "| fixed rate | busy | p50 ms | p99 ms | p99 above bare, paired | p99.9 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    quarter = []
    for name, s in summary.items():
        lat = s.get("fixed_rate")
        if lat is None:
            continue
        label = f"**{name}**" if " full" in name else name
        lines.append(
            f"| {label} | {s['rps_median']:.0f} | {s['of_bare']:.3f} | "
            f"{s['of_bare_from_cpu']:.3f} | {s['cpu_us_per_request_median']:.0f} | "
            f"{lat['rate']:.0f}/s | {_busy(lat)} | {lat['p50_ms']:.2f} | {lat['p99_ms']:.2f} | "
            f"{_paired(lat)} | {lat['p999_ms']:.2f} |"
        )
        for fraction, low in s.get("fixed_rates", {}).items():
            if fraction != str(FIXED_RATE_FRACTIONS[0]):
                quarter.append(
                    f"| {label} | {low['rate']:.0f}/s | {_busy(low)} | "
                    f"{low.get('cpu_us_per_request', float('nan')):.0f} | {low['p50_ms']:.2f} | "
                    f"{low['p99_ms']:.2f} | {_paired(low)} | {low['p999_ms']:.2f} |"
                )
    if quarter:
        lines += [
            "",
            "| setup, lower fixed rate | rate | busy | CPU µs per request | p50 ms | p99 ms "
            "| p99 above bare, paired | p99.9 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *quarter,
        ]
    lines += [
        "",
        "| breakdown setup | req/s (median) | of bare | CPU µs per request | CPU µs below full |",
        "|---|---:|---:|---:|---:|",
    ]
    full_cpu = summary["model full"]["cpu_us_per_request_median"]
    for name, s in summary.items():
        if "fixed_rate" in s:
            continue
        cpu = s["cpu_us_per_request_median"]
        lines.append(
            f"| {name} | {s['rps_median']:.0f} | {s['of_bare']:.3f} | {cpu:.0f} | "
            f"{full_cpu - cpu:.0f} |"
        )
    return "\n".join(lines)


@dataclasses.dataclass
class Setup:
    """One measured setup: its service processes' specs, how to reach it, and, once
    started, its running processes."""

    name: str
    kind: str
    env: dict[str, str]
    workers: int
    port: int
    parts: list[native.Process]
    running: list[Running] = dataclasses.field(default_factory=list)


def backend_parts(cfg: native.StackConfig, bins: dict[str, str], pin: bool) -> list[native.Process]:
    """The log store, the collector and Jaeger, on CPU 1 when ``pin``, below the load tool
    (``BACKEND_NICENESS``)."""
    parts = []
    for name in ("victorialogs", "otelcol", "jaeger"):
        part = native.resolve(native.SPECS[name], cfg, bins)
        part.argv = ["nice", "-n", str(BACKEND_NICENESS), *pinned(1 if pin else None, part.argv)]
        parts.append(part)
    return parts


def build_setups(
    variants: list[Variant], ports: list[int], cfg: native.StackConfig, pin: bool
) -> dict[str, Setup]:
    """Each variant's service processes (a pair: its model service, then the gateway),
    one-worker services pinned to CPU 0 when ``pin``."""
    setups = {}
    for (name, kind, env, workers), port in zip(variants, ports, strict=True):
        tag = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        model_port = port if kind == "model" else free_ports(1)[0]
        model = f"{tag}-model"
        spec = native.SPECS["model-service"]
        part = native.resolve(spec, cfg, name=model, params={"port": str(model_port)}, env=env)
        part.argv = service_argv(part.argv, "model", env, workers)
        parts = [part]
        if kind == "gateway":
            params = {"port": str(port), "model_url": cfg.url(model_port)}
            gateway = native.SPECS["gateway"]
            part = native.resolve(
                gateway, cfg, name=tag, params=params, env=env, depends_on=(model,)
            )
            part.argv = service_argv(part.argv, "gateway", env, workers)
            parts.append(part)
        if pin and workers == 1:
            for part in parts:
                part.argv = pinned(0, part.argv)
        setups[name] = Setup(name, kind, env, workers, port, parts)
    return setups


def setup_url(cfg: native.StackConfig, setup: Setup) -> str:
    """Where a setup's load goes: the model service's or the gateway's predict route."""
    return cfg.url(setup.port, "/predict" if setup.kind == "model" else "/v1/predict")


class Bench:
    """What every measurement of one run shares: the load tools' inputs, the stack's
    addresses and the options."""

    def __init__(self, args: argparse.Namespace, run_dir: Path, cfg: native.StackConfig) -> None:
        self.args = args
        self.run_dir = run_dir
        self.cfg = cfg
        self.script = run_dir / "post.lua"
        self.script.write_text(WRK_SCRIPT)
        self.body = run_dir / "body.json"
        self.body.write_text(BODY)
        self.rounds = args.rounds or (2 if args.quick else 6)
        self.seconds = args.seconds or (5.0 if args.quick else 8.0)
        self.rate_seconds = args.rate_seconds or 10.0
        self.rate_rounds = args.rate_rounds or (1 if args.quick else 5)
        self.backends: list[Running] = []  # the collector, Jaeger and the log store, once up

    def url(self, setup: Setup) -> str:
        return setup_url(self.cfg, setup)

    def quiet_set(self, setups: list[Setup]) -> list[Running]:
        """What must be quiet before a run: the running setups' services and the backends."""
        return [record for setup in setups for record in setup.running] + self.backends

    def saturation(self, setups: list[Setup]) -> dict[str, list[dict]]:
        """``rounds`` wrk runs per setup in interleaved rounds, each on quiet services:
        throughput, latency and the CPU each process of the setup used per request."""
        running = self.quiet_set(setups)
        results: dict[str, list[dict]] = {s.name: [] for s in setups}
        for r in range(self.rounds):
            # Alternate the order each round so drift in machine load hits every setup alike.
            for setup in setups if r % 2 == 0 else list(reversed(setups)):
                waited = wait_quiet(running)
                cpu_before = cpu_by_process(setup.running)
                result = wrk(self.url(setup), self.script, self.seconds, self.args.connections)
                used = {
                    part: seconds_used - cpu_before[part]
                    for part, seconds_used in cpu_by_process(setup.running).items()
                }
                result["cpu_us_per_request"] = sum(used.values()) / result["requests"] * 1e6
                # Which process of a pair pays what (a pair's CPU is the sum).
                result["cpu_us_per_request_by_process"] = {
                    part: value / result["requests"] * 1e6 for part, value in used.items()
                }
                result["waited_for_quiet_s"] = round(waited, 1)
                results[setup.name].append(result)
                print(
                    f"round {r + 1}/{self.rounds}  {setup.name:<34} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                    f"CPU {result['cpu_us_per_request']:6.0f} µs/request  "
                    f"(waited {waited:.0f} s for quiet)",
                    flush=True,
                )
        return results

    def fixed_rates(
        self, setups: list[Setup], bare_rps: float
    ) -> dict[str, dict[str, dict[str, float]]]:
        """Latency at each fixed rate, a share of bare's saturation throughput, the same rate
        for bare, the peer and ours, so their latency is compared at one load.

        Paced requests cost more CPU each than back-to-back ones (one event-loop wake-up per
        request, cold caches between them), so half of the saturation rate keeps a service
        busier than half the time: the CPU each run used is measured and reported as the
        core's busy share. Each setup runs ``rate_rounds`` times at each rate, in rounds
        whose order reverses every other time, and its percentiles are taken over every
        latency of those runs: a hiccup of the shared host then lands on one short run of
        one setup, not on the whole of it."""
        running = self.quiet_set(setups)
        latency: dict[str, dict[str, dict[str, float]]] = {s.name: {} for s in setups}
        for fraction in FIXED_RATE_FRACTIONS:
            rate = bare_rps * fraction
            pooled: dict[str, list[float]] = {s.name: [] for s in setups}
            by_round: dict[str, list[float]] = {s.name: [] for s in setups}
            resets = {s.name: 0 for s in setups}
            cpu_used = {s.name: 0.0 for s in setups}
            waited = {s.name: 0.0 for s in setups}
            for r in range(self.rate_rounds):
                for setup in setups if r % 2 == 0 else list(reversed(setups)):
                    waited[setup.name] += wait_quiet(running)
                    cpu_before = cpu_seconds(setup.running)
                    run_latencies, run_resets = attack(
                        self.url(setup), self.body, rate, self.rate_seconds, self.run_dir / "v.bin"
                    )
                    cpu_used[setup.name] += cpu_seconds(setup.running) - cpu_before
                    pooled[setup.name] += run_latencies
                    resets[setup.name] += run_resets
                    run = latency_summary(run_latencies, run_resets, rate)
                    by_round[setup.name].append(run["p99_ms"])
                    print(
                        f"fixed rate {rate:6.0f}/s  round {r + 1}/{self.rate_rounds}  "
                        f"{setup.name:<34} p50 {run['p50_ms']:6.2f} ms  "
                        f"p99 {run['p99_ms']:6.2f} ms",
                        flush=True,
                    )
            for setup in setups:
                name = setup.name
                lat = latency_summary(pooled[name], resets[name], rate)
                lat["fraction_of_bare_capacity"] = fraction
                lat["rounds"] = self.rate_rounds
                lat["seconds_per_round"] = self.rate_seconds
                lat["p99_ms_by_round"] = by_round[name]
                lat["cpu_us_per_request"] = cpu_used[name] / max(lat["requests"], 1) * 1e6
                # Cores kept busy: CPU seconds per second of the runs (two-worker setups
                # can reach 2).
                lat["busy_cores"] = cpu_used[name] / (self.rate_seconds * self.rate_rounds)
                lat["waited_for_quiet_s"] = round(waited[name], 1)
                latency[name][str(fraction)] = lat
                print(
                    f"fixed rate {rate:6.0f}/s  {name:<34} p50 {lat['p50_ms']:6.2f} ms  "
                    f"p99 {lat['p99_ms']:6.2f} ms  p99.9 {lat['p999_ms']:6.2f} ms  "
                    f"busy {lat['busy_cores']:.2f}",
                    flush=True,
                )
        return latency

    def group(
        self, title: str, setups: list[Setup], extras: list[Setup]
    ) -> tuple[dict[str, list[dict]], dict[str, dict[str, dict[str, float]]]]:
        """One group's services started on their own (the collector, Jaeger and the log
        store keep running), measured at saturation with its breakdown setups, then at the
        fixed rates without them, and stopped: no other group's services are running while
        a group is measured."""
        tag = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        stack = Supervisor(self.run_dir / tag)
        extra_stack = Supervisor(self.run_dir / f"{tag}-breakdown")
        try:
            n = sum(len(s.parts) for s in setups + extras)
            print(f"\n== {title}: starting {n} service processes", flush=True)
            for supervisor, members in ((stack, setups), (extra_stack, extras)):
                running = {
                    r.name: r for r in supervisor.start([p for s in members for p in s.parts])
                }
                for setup in members:
                    setup.running = [running[p.name] for p in setup.parts]
            for setup in setups + extras:  # warm up every path once
                wrk(self.url(setup), self.script, 2, self.args.connections)
            results = self.saturation(setups + extras)
            extra_stack.stop(say=lambda _m: None)
            first = setups[0]
            bare = baseline_of(first.name, first.kind, first.workers)
            bare_rps = statistics.median(r["rps"] for r in results[bare])
            return results, self.fixed_rates(setups, bare_rps)
        finally:
            for supervisor in (extra_stack, stack):  # nothing recorded: nothing to do
                supervisor.stop(say=lambda _m: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="per wrk run")
    parser.add_argument("--rate-seconds", type=float, default=None, help="per fixed-rate run")
    parser.add_argument(
        "--rate-rounds", type=int, default=None, help="fixed-rate runs per setup and rate"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--name",
        default="telemetry_overhead",
        help="results file: bench/results/<name>.json (a repeat beside the committed run)",
    )
    parser.add_argument(
        "--no-breakdown", action="store_true", help="skip the per-signal and library setups"
    )
    parser.add_argument(
        "--tables", action="store_true", help="print the README tables of the committed results"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let every process use every core (default: one-worker services on CPU 0; "
        "collector, Jaeger, the log store and the load tools on CPU 1, so the figure is the "
        "service's own cost; two-worker services always use both cores)",
    )
    args = parser.parse_args()
    if args.tables:
        results = ROOT / "bench" / "results" / "telemetry_overhead.json"
        print(markdown_tables(json.loads(results.read_text())))
        return 0
    global WRK_CPU
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    ensure_vegeta()
    bins = find_binaries()
    run_dir = Path(tempfile.mkdtemp(prefix="modelobs-bench-"))
    variants = VARIANTS + ([] if args.no_breakdown else BREAKDOWN)
    ports, extra = native.Ports.free(extra=len(variants))
    # A busy shared machine starts a two-worker service slowly (both import everything).
    cfg = native.StackConfig(
        run_dir=run_dir, ports=ports, load_max_seconds=0, ready_timeout_s=300.0
    )
    setups = build_setups(variants, extra, cfg, pin)
    backends = backend_parts(cfg, bins, pin)
    if pin:
        WRK_CPU = 1
    bench = Bench(args, run_dir, cfg)
    results: dict[str, list[dict]] = {}
    latency: dict[str, dict[str, dict[str, float]]] = {}
    commit = git_commit()
    stack = Supervisor(run_dir)
    try:
        print(f"starting the collector, Jaeger and the log store in {run_dir}", flush=True)
        bench.backends = stack.start(backends)
        for title, members, extras in GROUPS:
            group_results, group_latency = bench.group(
                title, [setups[n] for n in members], [setups[n] for n in extras if n in setups]
            )
            results.update(group_results)
            latency.update(group_latency)
        drops = queue_full_drops(cfg.url(ports.collector_prometheus, "/metrics"))
        print(f"dropped by full SDK queues (all our setups): {drops}", flush=True)
    finally:
        stack.stop(say=lambda _m: None)
    summary = {}
    for name, runs in results.items():
        kind, workers = setups[name].kind, setups[name].workers
        summary[name] = {
            "rps_median": statistics.median(r["rps"] for r in runs),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
            "cpu_us_per_request_median": statistics.median(r["cpu_us_per_request"] for r in runs),
            "baseline": baseline_of(name, kind, workers),
            "runs": runs,
        }
        if name in latency:
            summary[name]["fixed_rate"] = latency[name][str(FIXED_RATE_FRACTIONS[0])]
            summary[name]["fixed_rates"] = latency[name]
    for s in summary.values():
        bare = summary[s["baseline"]]
        s["of_bare"] = s["rps_median"] / bare["rps_median"]
        # Paired within rounds (setups of one round ran back to back), and as CPU time per
        # request predicts it for a service with its core to itself (throughput ∝ 1 / CPU).
        s["of_bare_paired_median"] = statistics.median(
            run["rps"] / b["rps"] for run, b in zip(s["runs"], bare["runs"], strict=True)
        )
        s["of_bare_from_cpu"] = bare["cpu_us_per_request_median"] / s["cpu_us_per_request_median"]
        s["cpu_us_above_bare"] = s["cpu_us_per_request_median"] - bare["cpu_us_per_request_median"]
        # Fixed rates, paired the same way: each round's p99 against bare's of that round
        # (run next to it), the median of those differences. The pooled p99 takes the
        # worst round's tail, wherever the host put a stall.
        for fraction, lat in s.get("fixed_rates", {}).items():
            bare_rounds = bare["fixed_rates"][fraction]["p99_ms_by_round"]
            lat["p99_above_bare_ms_paired_median"] = statistics.median(
                p99 - b for p99, b in zip(lat["p99_ms_by_round"], bare_rounds, strict=True)
            )
    full = summary["model full"]["cpu_us_per_request_median"]
    breakdown_us = {
        name.removeprefix("model, "): full - summary[name]["cpu_us_per_request_median"]
        for name, *_ in BREAKDOWN
        if name in summary and "not exported" in name
    }
    print()
    print(
        f"{'setup':<32}{'req/s':>9}{'of bare':>9}{'paired':>8}{'CPU':>7}{'CPU µs/req':>12}"
        f"{'fixed-rate p50/p99/p99.9 ms':>30}"
    )
    for name, s in summary.items():
        lat = s.get("fixed_rate")
        fixed = f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} / {lat['p999_ms']:.2f}" if lat else ""
        print(
            f"{name:<32}{s['rps_median']:>9.1f}{s['of_bare']:>9.3f}"
            f"{s['of_bare_paired_median']:>8.3f}{s['of_bare_from_cpu']:>7.3f}"
            f"{s['cpu_us_per_request_median']:>12.0f}{fixed:>30}"
        )
    for name, cost in breakdown_us.items():
        print(f"export cost, {name}: {cost:+.0f} µs CPU per request")
    out = write_results(
        args.name,
        {
            "commit": commit,
            "rounds": bench.rounds,
            "seconds_per_run": bench.seconds,
            "fixed_rate_seconds": bench.rate_seconds,
            "fixed_rate_rounds": bench.rate_rounds,
            # Each group's services ran only while it was measured (Bench.group).
            "groups": {title: members + extras for title, members, extras in GROUPS},
            "fixed_rate_fractions": list(FIXED_RATE_FRACTIONS),
            "connections": args.connections,
            "pinned": pin,
            "load_tools": {"saturation": "wrk", "fixed_rate": f"vegeta {VEGETA_VERSION}"},
            "summary": summary,
            "export_cost_us_per_request": breakdown_us,
            "sdk_queue_full_drops": drops,
        },
    )
    print(f"wrote {out.relative_to(ROOT)}\n")
    print(markdown_tables(json.loads(out.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
