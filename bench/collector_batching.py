"""Benchmark: where the collector batches. Three variants of otel-collector/config.yaml, all
with the same persistent sending queues: the old one (a `batch` processor in every pipeline),
batching in the exporters' sending queues only, and the shipped one (queue batching, plus a
`batch` processor behind tail_sampling only).

Two measurements per variant, runs interleaved (variant 1, 2, 3, 1, 2, 3, ...):

* traces: telemetrygen sends traces at a fixed rate through the real collector, tail sampling
  set to keep every trace (the worst case for exporter batching: the tail sampler hands over
  one request per trace), into the real Jaeger. Reported: collector CPU seconds per 10 000
  spans, spans delivered to Jaeger / spans accepted, and the time from the end of the load
  until everything is delivered.
* crash: telemetrygen sends logs to the collector, whose log exporter points at a sink; the
  collector is killed (SIGKILL) the moment the load ends and started again on the same
  storage directory. Reported: log records the sink received / records the collector
  accepted before the kill.

Needs the native binaries (`make binaries`) and telemetrygen:
    GOBIN=~/.cache/modelobs/tools/telemetrygen-v0.161.0 \\
      go install github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v0.161.0
Run: .venv/bin/python bench/collector_batching.py [--repeats 2] [--rate 300] [--seconds 20]
Figures go to bench/results/collector_batching.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "deploy" / "alert-webhook"))  # the receiver skeleton
from deploy.native.binaries import find_binaries  # noqa: E402
from deploy.native.net import free_ports  # noqa: E402
from deploy.native.readiness import wait_ready  # noqa: E402
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: E402
    ExportLogsServiceRequest,
)
from receiver import QuietHandler  # noqa: E402

CONFIG = REPO / "otel-collector" / "config.yaml"
TELEMETRYGEN = Path.home() / ".cache/modelobs/tools/telemetrygen-v0.161.0/telemetrygen"
OUT = REPO / "bench" / "results" / "collector_batching.json"
CHILD_SPANS = 3  # 4 spans per trace


def legacy_config() -> dict:
    """The config as it was: a `batch` processor last in every pipeline, and sending queues
    without batching, sized in requests."""
    config = yaml.safe_load(CONFIG.read_text())
    for pipeline in config["service"]["pipelines"].values():
        processors = [p for p in pipeline.get("processors", []) if p != "batch"]
        pipeline["processors"] = [*processors, "batch"]
    for exporter in config["exporters"].values():
        queue = (exporter or {}).get("sending_queue")
        if queue:
            exporter["sending_queue"] = {
                k: v for k, v in queue.items() if k not in ("batch", "sizer", "queue_size")
            } | {"queue_size": 5000}
    return config


def queue_only_config() -> dict:
    """The shipped config without its one `batch` processor (behind tail_sampling)."""
    config = yaml.safe_load(CONFIG.read_text())
    del config["processors"]["batch"]
    for pipeline in config["service"]["pipelines"].values():
        pipeline["processors"] = [p for p in pipeline.get("processors", []) if p != "batch"]
    return config


def variants(tmp: Path) -> dict[str, Path]:
    written = {
        "batch processor (old)": legacy_config(),
        "queue batching only": queue_only_config(),
    }
    paths = {}
    for name, config in written.items():
        paths[name] = tmp / f"{len(paths)}.yaml"
        paths[name].write_text(yaml.safe_dump(config, sort_keys=False))
    return {**paths, "shipped": CONFIG}


class LogSink(QuietHandler):
    """OTLP/HTTP log receiver that counts log records."""

    max_body: ClassVar[int] = 64 << 20
    records: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.read_body(allow_empty=True)
        if body is None:
            return
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportLogsServiceRequest.FromString(body)
        count = sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
        with self.lock:
            LogSink.records += count
        self.reply(200, b"", "application/x-protobuf")


def metric(url: str, name: str, **labels: str) -> float:
    """Sum of one metric's samples on a Prometheus text endpoint (matching ``labels``); the
    name with or without ``_total`` (Jaeger's older collector core adds it, ours does not)."""
    total = 0.0
    for line in httpx.get(url, timeout=5).text.splitlines():
        if not line.startswith((f"{name}{{", f"{name} ", f"{name}_total{{", f"{name}_total ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Stack:
    """Jaeger and one collector on free ports, in a scratch directory."""

    def __init__(self, bins: dict[str, str], config: Path, run_dir: Path, sink_port: int) -> None:
        self.bins, self.config, self.run_dir = bins, config, run_dir
        (
            self.grpc,
            self.http,
            self.prom,
            self.self_metrics,
            self.health,
            self.pprof,
            self.zpages,
            j_grpc,
            j_http,
            j_query,
            j_qgrpc,
            j_health,
            j_metrics,
        ) = free_ports(13)
        self.jaeger_env = {
            "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{j_grpc}",
            "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{j_http}",
            "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{j_query}",
            "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{j_qgrpc}",
            "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{j_health}",
            "JAEGER_METRICS_HOST": "127.0.0.1",
            "JAEGER_METRICS_PORT": str(j_metrics),
        }
        self.jaeger_health, self.jaeger_metrics = j_health, j_metrics
        self.collector_env = {
            "COLLECTOR_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc}",
            "COLLECTOR_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http}",
            "COLLECTOR_PROMETHEUS_EXPORTER_ENDPOINT": f"127.0.0.1:{self.prom}",
            "COLLECTOR_SELF_METRICS_HOST": "127.0.0.1",
            "COLLECTOR_SELF_METRICS_PORT": str(self.self_metrics),
            "COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{self.health}",
            "COLLECTOR_PPROF_ENDPOINT": f"127.0.0.1:{self.pprof}",
            "COLLECTOR_ZPAGES_ENDPOINT": f"127.0.0.1:{self.zpages}",
            "JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{j_grpc}",
            "LOGS_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
            "COLLECTOR_STORAGE_DIR": str(run_dir / "storage"),
            "TAIL_SAMPLING_PERCENT": "100",
            "TAIL_SAMPLING_DECISION_WAIT": "1s",
            "GOMEMLIMIT": "400MiB",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        if name == "jaeger":
            argv = [self.bins["JAEGER_BIN"], f"--config={REPO}/deploy/jaeger/config.yaml"]
            env, ready = self.jaeger_env, f"http://127.0.0.1:{self.jaeger_health}/"
        else:
            argv = [self.bins["OTELCOL_BIN"], f"--config={self.config}"]
            env, ready = self.collector_env, f"http://127.0.0.1:{self.health}/"
        log = self.run_dir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                env={"PATH": os.environ.get("PATH", ""), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        wait_ready(ready, proc, log, name=name)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name, signal.SIGTERM)

    def collector_cpu_s(self) -> float:
        url = f"http://127.0.0.1:{self.self_metrics}/metrics"
        return metric(url, "otelcol_process_cpu_seconds")

    def collector_metric(self, name: str, **labels: str) -> float:
        return metric(f"http://127.0.0.1:{self.self_metrics}/metrics", name, **labels)

    def jaeger_accepted_spans(self) -> float:
        return metric(
            f"http://127.0.0.1:{self.jaeger_metrics}/metrics", "otelcol_receiver_accepted_spans"
        )


def telemetrygen(signal_name: str, port: int, rate: int, seconds: int) -> None:
    argv = [
        str(TELEMETRYGEN),
        signal_name,
        "--otlp-endpoint",
        f"127.0.0.1:{port}",
        "--otlp-insecure",
        "--rate",
        str(rate),
        "--duration",
        f"{seconds}s",
        "--service",
        "bench",
    ]
    if signal_name == "traces":
        argv += ["--child-spans", str(CHILD_SPANS)]
    subprocess.run(argv, capture_output=True, check=True, timeout=seconds + 60)


def wait_stable(
    read: Callable[[], float], target: float, timeout_s: float = 60
) -> tuple[float, float]:
    """(value, seconds) once ``read()`` reaches ``target`` or stops changing for 5 s."""
    started = time.monotonic()
    last, last_change = read(), time.monotonic()
    while time.monotonic() - started < timeout_s:
        if last >= target or time.monotonic() - last_change > 5:
            break
        time.sleep(0.25)
        value = read()
        if value != last:
            last, last_change = value, time.monotonic()
    return last, (last_change if last < target else time.monotonic()) - started


@contextmanager
def log_sink() -> Iterator[int]:
    (port,) = free_ports(1)
    server = ThreadingHTTPServer(("127.0.0.1", port), LogSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()


def run_traces(
    bins: dict[str, str],
    config: Path,
    rate: int,
    seconds: int,
    env: dict[str, str] | None = None,
    after_load: Callable[[Stack], dict[str, float]] | None = None,
) -> dict[str, float]:
    """One traces run; ``env`` is added to the collector's environment, ``after_load`` reads
    more figures from the stack the moment the load ends (bench/trace_journal.py)."""
    extra: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, log_sink() as sink:
        stack = Stack(bins, config, Path(tmp), sink)
        stack.collector_env |= env or {}
        try:
            stack.start("jaeger")
            stack.start("otelcol")
            cpu0 = stack.collector_cpu_s()
            telemetrygen("traces", stack.grpc, rate, seconds)
            accepted = stack.collector_metric("otelcol_receiver_accepted_spans")
            extra = after_load(stack) if after_load else {}
            delivered, drain_s = wait_stable(stack.jaeger_accepted_spans, accepted)
            cpu = stack.collector_cpu_s() - cpu0
        finally:
            stack.stop()
    return {
        "spans_accepted": accepted,
        "delivered_share": delivered / accepted if accepted else 0.0,
        "cpu_s_per_10k_spans": cpu / accepted * 10_000 if accepted else float("nan"),
        "drain_s": drain_s,
        **extra,
    }


def run_crash(bins: dict[str, str], config: Path, rate: int, seconds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, log_sink() as sink:
        LogSink.records = 0
        stack = Stack(bins, config, Path(tmp), sink)
        try:
            stack.start("otelcol")
            telemetrygen("logs", stack.grpc, rate, seconds)
            accepted = stack.collector_metric("otelcol_receiver_accepted_log_records")
            stack.kill("otelcol")  # the moment the load ends
            stack.start("otelcol")  # same storage directory: the persistent queue resumes
            received, _ = wait_stable(lambda: float(LogSink.records), accepted, timeout_s=30)
        finally:
            stack.stop()
    return {"logs_accepted": accepted, "received_share": received / accepted if accepted else 0}


def run_interleaved(
    configs: dict[str, Path], measure: Callable[[Path], dict[str, float]], repeats: int
) -> dict[str, dict[str, list[float]]]:
    """``measure(config)`` for every variant, ``repeats`` rounds, variants interleaved (1, 2,
    3, 1, 2, 3, ...): figures per variant and key, one per run."""
    results: dict[str, dict[str, list[float]]] = {}
    for repeat in range(repeats):
        for name, config in configs.items():
            figures = measure(config)
            print(f"run {repeat + 1} {name}: {figures}", flush=True)
            for key, value in figures.items():
                results.setdefault(name, {}).setdefault(key, []).append(value)
    return results


def report(
    results: dict[str, dict[str, list[float]]], args: argparse.Namespace, reference: str, out: Path
) -> None:
    """Prints the medians per variant (and the ``reference`` variant's spans/s) and writes
    runs and medians to ``out``."""
    medians = {n: {k: statistics.median(v) for k, v in r.items()} for n, r in results.items()}
    spans_per_s = statistics.median(results[reference]["spans_accepted"]) / args.seconds
    print(f"\nmedians of {args.repeats} runs (about {spans_per_s:.0f} spans/s, {args.seconds} s):")
    keys = list(next(iter(medians.values())))
    print(f"{'':22}" + "".join(f"{k:>24}" for k in keys))
    for name, row in medians.items():
        print(f"{name:22}" + "".join(f"{row[k]:>24.3f}" for k in keys))
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"args": vars(args), "runs": results, "medians": medians}, indent=2) + "\n"
    )
    print(f"wrote {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rate", type=int, default=300, help="telemetrygen --rate")
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    if not TELEMETRYGEN.exists():
        sys.exit(f"{TELEMETRYGEN} missing: see this script's docstring")
    bins = find_binaries(("OTELCOL_BIN", "JAEGER_BIN"))

    def measure(config: Path) -> dict[str, float]:
        figures = run_traces(bins, config, args.rate, args.seconds)
        return figures | run_crash(bins, config, args.rate * 4, args.seconds // 2)

    with tempfile.TemporaryDirectory() as tmp:
        results = run_interleaved(variants(Path(tmp)), measure, args.repeats)
    report(results, args, "shipped", OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
