"""Benchmark: capacity figures for docs/scaling.md, measured on this machine.

What one collector core handles with the shipped configs (otel-collector/gateway.yaml and
agent.yaml): spans, metric data points and log records per CPU-second of the collector,
driven by collector-contrib's telemetrygen at full speed (closed loop: each worker waits for
the collector's answer, so nothing is refused). The collector under test runs with
GOMAXPROCS=1 and its CPU time is read from the OS (user + system), so the figure does not
depend on what else shares the machine. Then the model service's predictions per CPU-second
(valid records through the gateway) and the Prometheus series one service replica
produces (counted on the gateway collector's Prometheus endpoint).

The gateway collector exports to the real Jaeger and VictoriaLogs (started here); the agent
forwards to that gateway. Run from the repo root:

    .venv/bin/python bench/capacity.py             # ~6 min; bench/results/capacity.json
    .venv/bin/python bench/capacity.py --seconds 5 # shorter runs (noisier)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy.native import REPO  # noqa: E402
from deploy.native import components as native  # noqa: E402
from deploy.native.binaries import STACK_KEYS, find_binaries  # noqa: E402
from deploy.native.supervisor import Running, Supervisor  # noqa: E402

from modelobs.model.data import EXAMPLE_RECORD  # noqa: E402

RESULTS = REPO / "bench" / "results" / "capacity.json"
COMMAND = "bench/capacity.py"
SPANS_PER_TRACE = 4  # telemetrygen --child-spans 3: a root and three children, like a request
MODEL_INSTANCE = "bench-model-0"
GATEWAY_INSTANCE = "bench-gateway-0"
# Signal -> (telemetrygen subcommand and flags, the collector's accepted-items counter).
SIGNALS: dict[str, tuple[list[str], str]] = {
    "spans": (["traces", "--child-spans", str(SPANS_PER_TRACE - 1)], "accepted_spans"),
    "sum data points": (["metrics", "--metric-type", "Sum"], "accepted_metric_points"),
    "histogram data points": (["metrics", "--metric-type", "Histogram"], "accepted_metric_points"),
    "log records": (["logs"], "accepted_log_records"),
}


# What one prediction request sends, read from the gateway collector's receiver counters.
PER_REQUEST = {"spans": "accepted_spans", "log records": "accepted_log_records"}


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def self_metric(port: int, suffix: str) -> float:
    """Sum of the collector's own ``otelcol_receiver_<suffix>`` series (every receiver)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f"otelcol_receiver_{suffix}") and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_idle(pid: int, quiet_s: float = 2.0, limit_s: float = 60.0) -> None:
    """Until the process used under 2 % of a core for ``quiet_s`` (its queues drained)."""
    deadline = time.monotonic() + limit_s
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - last < 0.02 * quiet_s:
            return
        last = now


@dataclass
class Collector:
    name: str
    record: Running
    grpc_port: int
    self_port: int


def drive_collector(
    telemetrygen: str, collector: Collector, signal: str, seconds: float, settle_s: float
) -> dict[str, float]:
    """telemetrygen at full speed into ``collector`` for ``seconds``; items per CPU-second."""
    args, counter = SIGNALS[signal]
    wait_idle(collector.record.pid)
    items0 = self_metric(collector.self_port, counter)
    refused0 = self_metric(collector.self_port, counter.replace("accepted", "refused"))
    cpu0 = cpu_seconds(collector.record.pid)
    t0 = time.monotonic()
    cmd = [
        telemetrygen,
        *args,
        "--otlp-endpoint",
        f"127.0.0.1:{collector.grpc_port}",
        "--otlp-insecure",
        "--rate",
        "0",
        "--workers",
        "2",
        "--duration",
        f"{seconds:g}s",
        "--service",
        "capacity-bench",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)
    wall = time.monotonic() - t0
    time.sleep(settle_s)  # tail sampling holds traces this long before deciding
    wait_idle(collector.record.pid)
    cpu = cpu_seconds(collector.record.pid) - cpu0
    items = self_metric(collector.self_port, counter) - items0
    refused = self_metric(collector.self_port, counter.replace("accepted", "refused")) - refused0
    return {
        "items": items,
        "refused": refused,
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 1),
        "per_cpu_second": round(items / cpu),
        "command": " ".join(["telemetrygen", *cmd[1:]]),
    }


def drive_predictions(gateway_url: str, seconds: float, threads: int = 8) -> int:
    """Valid predictions through the gateway from ``threads`` clients; returns the 200s."""
    ok = [0] * threads
    deadline = time.monotonic() + seconds

    def client(i: int) -> None:
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < deadline:
                response = http.post(f"{gateway_url}/v1/predict", json={"record": EXAMPLE_RECORD})
                ok[i] += response.status_code == 200

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(ok)


def series_by_instance(prom_exporter_port: int, instance: str) -> dict[str, int]:
    """Series on the collector's Prometheus endpoint carrying ``instance``, by metric family
    prefix (the part before the first ``_`` bucket/suffix is kept whole)."""
    text = httpx.get(f"http://127.0.0.1:{prom_exporter_port}/metrics", timeout=5).text
    counts: dict[str, int] = {}
    needle = f'service_instance_id="{instance}"'
    for line in text.splitlines():
        if line.startswith("#") or needle not in line:
            continue
        name = line.split("{", 1)[0]
        counts[name] = counts.get(name, 0) + 1
    return counts


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    bins = find_binaries((*STACK_KEYS, "TELEMETRYGEN_BIN"))
    run_dir = Path(tempfile.mkdtemp(prefix="capacity-"))
    ports, extra = native.Ports.free(extra=6)
    gw_grpc, gw_http, gw_self, gw_health, model_port, gateway_port = extra
    decision_wait_s = 3
    cfg = native.StackConfig(
        run_dir=run_dir,
        ports=ports,
        load_max_seconds=0,
        ready_timeout_s=300,  # the model service trains its model on first start
        extra_env={
            "otelcol-gateway": {
                "GOMAXPROCS": "1",
                "TAIL_SAMPLING_DECISION_WAIT": f"{decision_wait_s}s",
                # Room for every trace of a full-speed run during the decision wait.
                "TAIL_SAMPLING_NUM_TRACES": "500000",
                "COLLECTOR_MEMORY_LIMIT_MIB": "2000",
                "COLLECTOR_MEMORY_SPIKE_LIMIT_MIB": "400",
                "GOMEMLIMIT": "2000MiB",
            },
            "otelcol-agent": {"GOMAXPROCS": "1"},
        },
    )
    service_env = {"OTEL_METRIC_EXPORT_INTERVAL": "2000"}
    processes = [
        native.resolve(native.SPECS["victorialogs"], cfg, bins),
        native.resolve(native.SPECS["jaeger"], cfg, bins),
        native.resolve(
            native.SPECS["otelcol-gateway"],
            cfg,
            bins,
            params={
                "grpc": str(gw_grpc),
                "http": str(gw_http),
                "self": str(gw_self),
                "health": str(gw_health),
            },
        ),
        native.resolve(
            native.SPECS["otelcol-agent"],
            cfg,
            bins,
            params={"gateways": f"127.0.0.1:{gw_grpc}"},
            depends_on=("otelcol-gateway",),
        ),
        *native.service_pair(
            cfg,
            suffix="",
            model_port=model_port,
            gateway_port=gateway_port,
            model_env={
                **service_env,
                "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={MODEL_INSTANCE}",
            },
            gateway_env={
                **service_env,
                "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={GATEWAY_INSTANCE}",
            },
            model_after=("otelcol-agent",),
        ),
    ]
    supervisor = Supervisor(run_dir)
    records = {r.name: r for r in supervisor.start(processes, say=print)}
    results: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "command": f".venv/bin/python {COMMAND} --seconds {args.seconds:g}",
        "collector": {},
    }
    try:
        gateway = Collector("gateway", records["otelcol-gateway"], gw_grpc, gw_self)
        agent = Collector("agent", records["otelcol-agent"], ports.otlp_grpc, ports.collector_self)
        per_tier: dict[str, dict[str, object]] = {}
        for collector in (gateway, agent):
            per_tier[collector.name] = {}
            for signal in SIGNALS:
                figure = drive_collector(
                    bins["TELEMETRYGEN_BIN"], collector, signal, args.seconds, decision_wait_s + 1
                )
                print(f"{collector.name:8} {signal:22} {figure['per_cpu_second']:>8} per CPU-s")
                per_tier[collector.name][signal] = figure
        results["collector"] = per_tier

        gateway_url = cfg.url(gateway_port)
        model_pid, gw_pid = records["model-service"].pid, records["gateway"].pid
        drive_predictions(gateway_url, 3)  # warm-up
        wait_idle(gateway.record.pid)
        cpu0 = (cpu_seconds(model_pid), cpu_seconds(gw_pid))
        telemetry0 = {k: self_metric(gateway.self_port, c) for k, c in PER_REQUEST.items()}
        t0 = time.monotonic()
        predictions = drive_predictions(gateway_url, args.seconds)
        wall = time.monotonic() - t0
        model_cpu = cpu_seconds(model_pid) - cpu0[0]
        gateway_cpu = cpu_seconds(gw_pid) - cpu0[1]
        time.sleep(decision_wait_s + 1)
        wait_idle(gateway.record.pid)
        per_request = {
            k: round((self_metric(gateway.self_port, c) - telemetry0[k]) / predictions, 2)
            for k, c in PER_REQUEST.items()
        }
        results["model_service"] = {
            "predictions": predictions,
            "wall_seconds": round(wall, 1),
            "model_service_cpu_seconds": round(model_cpu, 2),
            "gateway_cpu_seconds": round(gateway_cpu, 2),
            "predictions_per_model_cpu_second": round(predictions / model_cpu),
            "requests_per_gateway_cpu_second": round(predictions / gateway_cpu),
            "clients": 8,
            # What one request through gateway + model service sends, as the gateway
            # collector received it (metric points: per export interval of 2 s).
            "telemetry_per_request": per_request,
        }
        print(f"model service: {results['model_service']}")

        # Bad inputs too, so the error series exist, then count what one replica exposes.
        subprocess.run(
            [
                str(Path(sys.executable).with_name("modelobs")),
                "load",
                "--url",
                gateway_url,
                "--scenario",
                "bad-inputs",
                "--at",
                "0",
                "--requests",
                "200",
                "--rps",
                "50",
                "--quiet",
            ],
            check=True,
            timeout=120,
        )
        series: dict[str, dict[str, int]] = {}

        def exported() -> bool:
            for instance in (MODEL_INSTANCE, GATEWAY_INSTANCE):
                series[instance] = series_by_instance(ports.collector_prometheus, instance)
            return all(series.values())

        wait_for(exported, 60, "service metrics on the gateway collector's endpoint")
        time.sleep(5)  # one more export interval: every instrument has reported
        exported()
        results["series_per_replica"] = {
            instance: {"total": sum(counts.values()), "by_metric": counts}
            for instance, counts in series.items()
        }
        print({k: v["total"] for k, v in results["series_per_replica"].items()})  # type: ignore[union-attr]
    finally:
        supervisor.stop(say=lambda _m: None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
