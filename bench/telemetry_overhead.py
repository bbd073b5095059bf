"""What full telemetry costs: the model service (and gateway → model) bare, with the default
OpenTelemetry setup a user would write (the peer, bench/peer_service.py) and with ours, all
exporting every signal to the real collector, side by side in one run: throughput at
saturation (wrk), latency at fixed rates of half and a quarter of bare's capacity (vegeta,
open loop, so a slow answer does not delay the next request) with the CPU each run used,
the same with two worker processes, and what each signal's export costs.

Every measurement runs in interleaved rounds (the order reverses every other round), each
run starting once the services are quiet again (the one measured before has exported its
backlog): saturation figures are medians over rounds, fixed-rate percentiles are taken
over every request of a setup's rounds, so a hiccup of a shared host lands on one short run.

    python bench/telemetry_overhead.py            # ~25 minutes
    python bench/telemetry_overhead.py --quick    # ~6 minutes

Needs the native binaries (`make binaries`) and wrk (`apt-get install wrk`); vegeta is built
from its Go module into ~/.cache/modelobs/tools on first use. Figures go to
bench/results/telemetry_overhead.json; bench/README.md quotes them.
"""

from __future__ import annotations

import argparse
import csv
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
# The default OpenTelemetry setup in place of ours (bench/peer_service.py).
PEER = {"MODELOBS_BENCH_PEER": "1"}
# (name, entry point, environment, worker processes). The first six are the headline, the
# next three the same on two workers (unpinned: both cores); the rest break the cost down by
# signal (skipped with --no-breakdown).
Variant = tuple[str, str, dict[str, str], int]
VARIANTS: list[Variant] = [
    ("model bare", "model", BARE, 1),
    ("model peer", "model", PEER, 1),
    ("model full", "model", {}, 1),
    ("gateway→model bare", "gateway", BARE, 1),
    ("gateway→model peer", "gateway", PEER, 1),
    ("gateway→model full", "gateway", {}, 1),
    ("model bare, 2 workers", "model", BARE, 2),
    ("model peer, 2 workers", "model", PEER, 2),
    ("model full, 2 workers", "model", {}, 2),
]
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


def wait_quiet(processes: list[Running], limit_s: float = 20.0) -> float:
    """Until every service process together used under 15 % of a core for a second (the
    setup measured before has exported what it queued; idle, the fourteen services use
    about 6 % together: metric exports, drift checks), at most ``limit_s``; the seconds
    waited. Without it, a setup's export backlog runs on the core the next one is measured
    on, and that next one pays for it."""
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


def markdown_tables(figures: dict) -> str:
    """The tables bench/README.md quotes, from a results file's figures (a test holds the
    README to the committed results through this function)."""
    summary = figures["summary"]
    lines = [
        "| setup | req/s (median) | of bare | of bare, from CPU | CPU µs per request "
        "| fixed rate | busy | p50 ms | p99 ms | p99.9 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
            f"{lat['p999_ms']:.2f} |"
        )
        for fraction, low in s.get("fixed_rates", {}).items():
            if fraction != str(FIXED_RATE_FRACTIONS[0]):
                quarter.append(
                    f"| {label} | {low['rate']:.0f}/s | {_busy(low)} | "
                    f"{low.get('cpu_us_per_request', float('nan')):.0f} | {low['p50_ms']:.2f} | "
                    f"{low['p99_ms']:.2f} | {low['p999_ms']:.2f} |"
                )
    if quarter:
        lines += [
            "",
            "| setup, lower fixed rate | rate | busy | CPU µs per request | p50 ms | p99 ms "
            "| p99.9 ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
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
    rounds = args.rounds or (2 if args.quick else 6)
    seconds = args.seconds or (5.0 if args.quick else 8.0)
    rate_seconds = args.rate_seconds or 10.0
    rate_rounds = args.rate_rounds or (1 if args.quick else 3)
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
    stack = Supervisor(run_dir)
    setups = {
        name: (kind, env, workers, port)
        for (name, kind, env, workers), port in zip(variants, extra, strict=True)
    }
    backends = [
        native.resolve(native.SPECS[n], cfg, bins) for n in ("victorialogs", "otelcol", "jaeger")
    ]
    parts = list(backends)
    service_names: dict[str, list[str]] = {}
    cpu_of: dict[str, int | None] = {}
    for name, (kind, env, workers, port) in setups.items():
        tag = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        model_port = port if kind == "model" else free_ports(1)[0]
        model = f"{tag}-model"
        spec = native.SPECS["model-service"]
        part = native.resolve(spec, cfg, name=model, params={"port": str(model_port)}, env=env)
        part.argv = service_argv(part.argv, "model", env, workers)
        cpu_of[model] = 0 if workers == 1 else None
        parts.append(part)
        service_names[name] = [model] if kind == "model" else [model, tag]
        if kind == "gateway":
            params = {"port": str(port), "model_url": cfg.url(model_port)}
            gateway = native.SPECS["gateway"]
            part = native.resolve(
                gateway, cfg, name=tag, params=params, env=env, depends_on=(model,)
            )
            part.argv = service_argv(part.argv, "gateway", env, workers)
            cpu_of[tag] = 0
            parts.append(part)
    if pin:
        WRK_CPU = 1
        for part in parts:
            cpu = 1 if part in backends else cpu_of[part.name]
            part.argv = pinned(cpu, part.argv)
    script = run_dir / "post.lua"
    script.write_text(WRK_SCRIPT)
    body = run_dir / "body.json"
    body.write_text(BODY)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
    latency: dict[str, dict[str, dict[str, float]]] = {}
    commit = git_commit()

    def url_of(name: str) -> str:
        kind, _, _, port = setups[name]
        return cfg.url(port, "/predict" if kind == "model" else "/v1/predict")

    try:
        print(f"starting collector, Jaeger and {len(parts) - 3} services in {run_dir}", flush=True)
        running = {record.name: record for record in stack.start(parts)}
        services = {name: [running[n] for n in names] for name, names in service_names.items()}
        every_service = [record for records in services.values() for record in records]
        for name in setups:  # warm up every path once
            wrk(url_of(name), script, 2, args.connections)
        for r in range(rounds):
            # Alternate the order each round so drift in machine load hits every setup alike.
            order = list(setups) if r % 2 == 0 else list(reversed(setups))
            for name in order:
                waited = wait_quiet(every_service)
                cpu_before = cpu_by_process(services[name])
                result = wrk(url_of(name), script, seconds, args.connections)
                used = {
                    part: seconds_used - cpu_before[part]
                    for part, seconds_used in cpu_by_process(services[name]).items()
                }
                cpu = sum(used.values())
                result["cpu_us_per_request"] = cpu / result["requests"] * 1e6
                # Which process of a pair pays what (a pair's CPU is the sum).
                result["cpu_us_per_request_by_process"] = {
                    part: value / result["requests"] * 1e6 for part, value in used.items()
                }
                result["waited_for_quiet_s"] = round(waited, 1)
                results[name].append(result)
                print(
                    f"round {r + 1}/{rounds}  {name:<30} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                    f"CPU {result['cpu_us_per_request']:6.0f} µs/request  "
                    f"(waited {waited:.0f} s for quiet)",
                    flush=True,
                )
        # Fixed rates: a share of what bare sustained at saturation, the same rate for the
        # peer and ours, so their latency is compared at one load. Paced requests cost more
        # CPU each than back-to-back ones (one event-loop wake-up per request, cold caches
        # between them), so half of the saturation rate keeps a service busier than half
        # the time: the CPU each run used is measured and reported as the core's busy share.
        # Each setup runs ``rate_rounds`` times at each rate, in rounds whose order reverses
        # every other time, and its percentiles are taken over every latency of those runs:
        # a hiccup of the shared host then lands on one short run of one setup, not on the
        # whole of it.
        paced = [name for name in setups if name not in dict.fromkeys(n for n, *_ in BREAKDOWN)]
        for fraction in FIXED_RATE_FRACTIONS:
            pooled: dict[str, list[float]] = {name: [] for name in paced}
            by_round: dict[str, list[float]] = {name: [] for name in paced}
            resets = dict.fromkeys(paced, 0)
            cpu_used = dict.fromkeys(paced, 0.0)
            waited = dict.fromkeys(paced, 0.0)
            rate_of = {}
            for name in paced:
                kind, _, workers, _ = setups[name]
                bare = baseline_of(name, kind, workers)
                rate_of[name] = statistics.median(r["rps"] for r in results[bare]) * fraction
            for r in range(rate_rounds):
                for name in paced if r % 2 == 0 else list(reversed(paced)):
                    waited[name] += wait_quiet(every_service)
                    cpu_before = cpu_seconds(services[name])
                    run_latencies, run_resets = attack(
                        url_of(name), body, rate_of[name], rate_seconds, run_dir / "v.bin"
                    )
                    cpu_used[name] += cpu_seconds(services[name]) - cpu_before
                    pooled[name] += run_latencies
                    resets[name] += run_resets
                    run = latency_summary(run_latencies, run_resets, rate_of[name])
                    by_round[name].append(run["p99_ms"])
                    print(
                        f"fixed rate {rate_of[name]:6.0f}/s  round {r + 1}/{rate_rounds}  "
                        f"{name:<30} p50 {run['p50_ms']:6.2f} ms  p99 {run['p99_ms']:6.2f} ms",
                        flush=True,
                    )
            for name in paced:
                lat = latency_summary(pooled[name], resets[name], rate_of[name])
                lat["fraction_of_bare_capacity"] = fraction
                lat["rounds"] = rate_rounds
                lat["seconds_per_round"] = rate_seconds
                lat["p99_ms_by_round"] = by_round[name]
                lat["cpu_us_per_request"] = cpu_used[name] / max(lat["requests"], 1) * 1e6
                # Cores kept busy: CPU seconds per second of the runs (two-worker setups
                # can reach 2).
                lat["busy_cores"] = cpu_used[name] / (rate_seconds * rate_rounds)
                lat["waited_for_quiet_s"] = round(waited[name], 1)
                latency.setdefault(name, {})[str(fraction)] = lat
                print(
                    f"fixed rate {rate_of[name]:6.0f}/s  {name:<30} p50 {lat['p50_ms']:6.2f} ms  "
                    f"p99 {lat['p99_ms']:6.2f} ms  p99.9 {lat['p999_ms']:6.2f} ms  "
                    f"busy {lat['busy_cores']:.2f}",
                    flush=True,
                )
        drops = queue_full_drops(cfg.url(ports.collector_prometheus, "/metrics"))
        print(f"dropped by full SDK queues (all our setups): {drops}", flush=True)
    finally:
        stack.stop(say=lambda _m: None)
    summary = {}
    for name, runs in results.items():
        kind, _, workers, _ = setups[name]
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
        "telemetry_overhead",
        {
            "commit": commit,
            "rounds": rounds,
            "seconds_per_run": seconds,
            "fixed_rate_seconds": rate_seconds,
            "fixed_rate_rounds": rate_rounds,
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
