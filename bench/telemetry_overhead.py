"""What full telemetry costs: throughput of the model service (and of gateway → model) with
traces, metrics and logs exported to the real collector, against the same service with the
SDK disabled, measured side by side in one run.

    python bench/telemetry_overhead.py            # ~4 minutes
    python bench/telemetry_overhead.py --quick    # ~1 minute

Needs the native binaries (`make binaries`) and wrk (`apt-get install wrk`). Figures go to
bench/results/telemetry_overhead.json; bench/README.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import platform
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
from deploy.native.supervisor import Supervisor  # noqa: E402

from modelobs.model.data import EXAMPLE_RECORD  # noqa: E402

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
# (name, entry point, environment). The first four are the headline; the rest break the
# cost down by signal and show what head sampling buys (--breakdown).
VARIANTS: list[tuple[str, str, dict[str, str]]] = [
    ("model bare", "model", BARE),
    ("model full", "model", {}),
    ("gateway→model bare", "gateway", BARE),
    ("gateway→model full", "gateway", {}),
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

    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99")}


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
    variants = VARIANTS if args.breakdown else VARIANTS[:4]
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
        stack.start(parts)
        for kind, _, port in setups.values():  # warm up every path once
            path = "/predict" if kind == "model" else "/v1/predict"
            wrk(cfg.url(port, path), script, 2, args.connections)
        for r in range(rounds):
            # Alternate the order each round so drift in machine load hits both sides.
            order = list(setups) if r % 2 == 0 else list(reversed(setups))
            for name in order:
                kind, _, port = setups[name]
                path = "/predict" if kind == "model" else "/v1/predict"
                result = wrk(cfg.url(port, path), script, seconds, args.connections)
                results[name].append(result)
                print(
                    f"round {r + 1}/{rounds}  {name:<20} {result['rps']:8.1f} req/s  "
                    f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms",
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
            "runs": runs,
        }
    ratios = {
        path: summary[f"{path} full"]["rps_median"] / summary[f"{path} bare"]["rps_median"]
        for path in ("model", "gateway→model")
    }
    print()
    bare = {"model": summary["model bare"]["rps_median"]}
    bare["gateway"] = summary["gateway→model bare"]["rps_median"]
    print(f"{'setup':<30}{'req/s (median)':>16}{'of bare':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for name, s in summary.items():
        s["of_bare"] = s["rps_median"] / bare[setups[name][0]]
        print(
            f"{name:<30}{s['rps_median']:>16.1f}{s['of_bare']:>9.3f}"
            f"{s['p50_ms_median']:>9.2f}{s['p99_ms_median']:>9.2f}"
        )
    for path, ratio in ratios.items():
        print(f"full / bare throughput, {path}: {ratio:.3f}")
    out = ROOT / "bench" / "results" / "telemetry_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": " ".join(["python", "bench/telemetry_overhead.py", *sys.argv[1:]]),
                "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
                "rounds": rounds,
                "seconds_per_run": seconds,
                "connections": args.connections,
                "pinned": pin,
                "summary": summary,
                "full_over_bare": ratios,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
