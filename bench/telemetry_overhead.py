"""What full telemetry costs: throughput of the model service (and of gateway → model) with
traces, metrics and logs exported to the real collector, against the same service with the
SDK disabled, and with the FastAPI instrumentation in place of our server middleware,
measured side by side in one run.

    python bench/telemetry_overhead.py            # ~4 minutes
    python bench/telemetry_overhead.py --quick    # ~1 minute

Needs the native binaries (`make binaries`) and wrk (`apt-get install wrk`). Figures go to
bench/results/telemetry_overhead.json; bench/README.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
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
# Bare: the same service with the OpenTelemetry SDK disabled (no spans, metrics or OTLP
# logs; the JSON log line on stdout stays, as any service has one).
BARE = {"OTEL_SDK_DISABLED": "true"}
OFF = "none"
# Full telemetry with the FastAPI instrumentation (configured lean) instead of our server
# middleware: the same telemetry, the library's cost (telemetry/server_instrumentation.py).
LIBRARY = {"MODELOBS_HTTP_INSTRUMENTATION": "library"}
# (name, entry point, environment). The first six are the headline; the rest break the
# cost down by signal and show what head sampling buys (--breakdown).
VARIANTS: list[tuple[str, str, dict[str, str]]] = [
    ("model bare", "model", BARE),
    ("model full", "model", {}),
    ("model full, library", "model", LIBRARY),
    ("gateway→model bare", "gateway", BARE),
    ("gateway→model full", "gateway", {}),
    ("gateway→model full, library", "gateway", LIBRARY),
    ("model, traces not exported", "model", {"OTEL_TRACES_EXPORTER": OFF}),
    ("model, logs not exported", "model", {"OTEL_LOGS_EXPORTER": OFF}),
    ("model, metrics not exported", "model", {"OTEL_METRICS_EXPORTER": OFF}),
    (
        "model, nothing exported",
        "model",
        {"OTEL_TRACES_EXPORTER": OFF, "OTEL_LOGS_EXPORTER": OFF, "OTEL_METRICS_EXPORTER": OFF},
    ),
    (
        "model, 10% head-sampled",
        "model",
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
    ),
]


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


def cpu_seconds(processes: list[Running]) -> float:
    """User + system CPU of a setup's service processes: unlike throughput, barely moved by
    whatever else runs on a shared machine."""
    return sum(sum(p.cpu_times()[:2]) for record in processes for p in record.group())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None, help="per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--breakdown", action="store_true", help="also measure each signal alone and head sampling"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let every process use every core (default: services on CPU 0; collector, "
        "Jaeger, the log store and wrk on CPU 1, so the figure is the service's own cost)",
    )
    args = parser.parse_args()
    global WRK_CPU
    pin = not args.no_pin and (__import__("os").cpu_count() or 1) >= 2
    WRK_CPU = 1 if pin else None
    rounds = args.rounds or (2 if args.quick else 5)
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    bins = find_binaries()
    run_dir = Path(tempfile.mkdtemp(prefix="modelobs-bench-"))
    variants = VARIANTS if args.breakdown else VARIANTS[:6]
    ports, extra = native.Ports.free(extra=len(variants))
    cfg = native.StackConfig(run_dir=run_dir, ports=ports, load_max_seconds=0)
    stack = Supervisor(run_dir)
    setups = {
        name: (kind, env, port) for (name, kind, env), port in zip(variants, extra, strict=True)
    }
    backends = [
        native.resolve(native.SPECS[n], cfg, bins) for n in ("victorialogs", "otelcol", "jaeger")
    ]
    parts = list(backends)
    service_names: dict[str, list[str]] = {}
    for name, (kind, env, port) in setups.items():
        tag = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        model_port = port if kind == "model" else free_ports(1)[0]
        model = f"{tag}-model"
        model_params = {"port": str(model_port)}
        parts.append(
            native.resolve(
                native.SPECS["model-service"], cfg, name=model, params=model_params, env=env
            )
        )
        service_names[name] = [model] if kind == "model" else [model, tag]
        if kind == "gateway":
            params = {"port": str(port), "model_url": cfg.url(model_port)}
            gateway = native.SPECS["gateway"]
            parts.append(
                native.resolve(gateway, cfg, name=tag, params=params, env=env, depends_on=(model,))
            )
    if pin:
        for part in parts:
            part.argv = pinned(1 if part in backends else 0, part.argv)
    script = run_dir / "post.lua"
    script.write_text(WRK_SCRIPT)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
    try:
        print(f"starting collector, Jaeger and {len(parts) - 3} services in {run_dir}", flush=True)
        running = {record.name: record for record in stack.start(parts)}
        services = {name: [running[n] for n in names] for name, names in service_names.items()}
        for kind, _, port in setups.values():  # warm up every path once
            path = "/predict" if kind == "model" else "/v1/predict"
            wrk(cfg.url(port, path), script, 2, args.connections)
        for r in range(rounds):
            # Alternate the order each round so drift in machine load hits both sides.
            order = list(setups) if r % 2 == 0 else list(reversed(setups))
            for name in order:
                kind, _, port = setups[name]
                path = "/predict" if kind == "model" else "/v1/predict"
                cpu_before = cpu_seconds(services[name])
                result = wrk(cfg.url(port, path), script, seconds, args.connections)
                cpu = cpu_seconds(services[name]) - cpu_before
                result["cpu_us_per_request"] = cpu / result["requests"] * 1e6
                results[name].append(result)
                print(
                    f"round {r + 1}/{rounds}  {name:<20} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                    f"CPU {result['cpu_us_per_request']:6.0f} µs/request",
                    flush=True,
                )
    finally:
        stack.stop(say=lambda _m: None)
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "rps_median": statistics.median(r["rps"] for r in runs),
            "p50_ms_median": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms_median": statistics.median(r["p99_ms"] for r in runs),
            "cpu_us_per_request_median": statistics.median(r["cpu_us_per_request"] for r in runs),
            "runs": runs,
        }
    ratios = {
        f"{path}{impl}": summary[f"{path} full{impl}"]["rps_median"]
        / summary[f"{path} bare"]["rps_median"]
        for path in ("model", "gateway→model")
        for impl in ("", ", library")
    }
    # What our middleware keeps over the library, in bare throughput, paired within each
    # round (the setups of one round ran back to back): measured, and as CPU time per request
    # predicts it for a service that has its core to itself (throughput ∝ 1 / CPU).
    ours_over_library = {}
    for path in ("model", "gateway→model"):
        rounds_of = zip(
            results[f"{path} bare"],
            results[f"{path} full"],
            results[f"{path} full, library"],
            strict=True,
        )
        measured, from_cpu, cpu_us = [], [], []
        for bare_run, ours, lib in rounds_of:
            measured.append((ours["rps"] - lib["rps"]) / bare_run["rps"])
            bare_cpu = bare_run["cpu_us_per_request"]
            from_cpu.append(
                bare_cpu / ours["cpu_us_per_request"] - bare_cpu / lib["cpu_us_per_request"]
            )
            cpu_us.append(lib["cpu_us_per_request"] - ours["cpu_us_per_request"])
        ours_over_library[path] = {
            "of_bare_throughput": statistics.median(measured),
            "of_bare_throughput_from_cpu": statistics.median(from_cpu),
            "library_extra_cpu_us_per_request": statistics.median(cpu_us),
        }
    print()
    bare = {"model": summary["model bare"]["rps_median"]}
    bare["gateway"] = summary["gateway→model bare"]["rps_median"]
    print(
        f"{'setup':<30}{'req/s (median)':>16}{'of bare':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU µs/req':>12}"
    )
    for name, s in summary.items():
        s["of_bare"] = s["rps_median"] / bare[setups[name][0]]
        print(
            f"{name:<30}{s['rps_median']:>16.1f}{s['of_bare']:>9.3f}"
            f"{s['p50_ms_median']:>9.2f}{s['p99_ms_median']:>9.2f}"
            f"{s['cpu_us_per_request_median']:>12.0f}"
        )
    for path, ratio in ratios.items():
        print(f"full / bare throughput, {path}: {ratio:.3f}")
    for path, gain in ours_over_library.items():
        print(
            f"ours - library, {path}: {gain['of_bare_throughput']:+.3f} of bare throughput "
            f"measured, {gain['of_bare_throughput_from_cpu']:+.3f} from CPU time; the library "
            f"costs {gain['library_extra_cpu_us_per_request']:+.0f} µs CPU per request"
        )
    out = write_results(
        "telemetry_overhead",
        {
            "rounds": rounds,
            "seconds_per_run": seconds,
            "connections": args.connections,
            "pinned": pin,
            "summary": summary,
            "full_over_bare": ratios,
            "ours_minus_library_of_bare": ours_over_library,
        },
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
