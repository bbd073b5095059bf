"""Start, stop and inspect the native modelobs stack (no Docker).

    python deploy/native/stack.py up        # collector, Jaeger, Prometheus, Alertmanager,
                                            # webhook receiver, Loki stand-in, model service,
                                            # gateway and a steady, time-bounded load
    python deploy/native/stack.py status
    python deploy/native/stack.py down

Everything runs as background processes, each in its own process group, with its output,
pid file and data under the run directory (``$MODELOBS_RUN_DIR``, default ``var/run``):
``<component>.log``, ``<component>.pid``, ``stack.json`` (what ``down``/``status`` read).

The component definitions below (``collector()``, ``jaeger()``, ..., ``model_service()``,
``gateway()``) are the one place that says how each component starts; the end-to-end tests
import them with other ports, a temporary run directory and extra environment.

Environment: MODELOBS_RUN_DIR, MODELOBS_LOAD_RPS (default 10), MODELOBS_LOAD_MAX_SECONDS
(default 14400 = 4 h: the steady load stops by itself after that; 0 = no load).
Standard library and httpx only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
NATIVE_DIR = Path(__file__).resolve().parent
STATE_FILE = "stack.json"
BINARY_KEYS = ("OTELCOL_BIN", "JAEGER_BIN", "PROMETHEUS_BIN", "ALERTMANAGER_BIN")
DEFAULT_LOAD_RPS = 10.0
DEFAULT_LOAD_MAX_SECONDS = 4 * 3600.0
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 25


class StackError(RuntimeError):
    """A failure with a message meant for the person who ran the command."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Ports:
    """Every listening port of the stack (docs/contract.md); all bound to 127.0.0.1."""

    otlp_grpc: int = 4317
    otlp_http: int = 4318
    collector_prometheus: int = 8889
    collector_self: int = 8888
    collector_health: int = 13133
    jaeger_otlp_grpc: int = 14317
    jaeger_otlp_http: int = 14318
    jaeger_query_http: int = 16686
    jaeger_query_grpc: int = 16685
    jaeger_health: int = 13134
    jaeger_metrics: int = 8887
    prometheus: int = 9090
    alertmanager: int = 9093
    webhook: int = 9099
    loki: int = 3100
    model: int = 8000
    gateway: int = 8080

    @classmethod
    def free(cls) -> Ports:
        """A distinct free port for every field (for test stacks beside a running one)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**dict(zip(names, free_ports(len(names)), strict=True)))


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free right now (sockets held until all are picked)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


@dataclass
class StackConfig:
    """What differs between `make up` and a test stack."""

    run_dir: Path
    ports: Ports = field(default_factory=Ports)
    # Extra environment per kind of component, on top of the defaults below.
    collector_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, str] = field(default_factory=dict)
    # Prometheus rule directory (every *.yml in it); None = deploy/prometheus/rules.
    rules_dir: Path | None = None
    load_rps: float = DEFAULT_LOAD_RPS
    # The steady load stops by itself after this many seconds; 0 = no load component.
    load_max_seconds: float = DEFAULT_LOAD_MAX_SECONDS
    ready_timeout_s: float = 60.0

    def url(self, port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{port}{path}"


@dataclass
class Component:
    """How to start one background process and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    health_url: str | None = None
    ready_timeout_s: float = 60.0
    # Printed by `up`/`status`: what a person opens.
    endpoints: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- binaries


def find_binaries() -> dict[str, str]:
    """OTELCOL_BIN, JAEGER_BIN, ... from the environment or from deploy/build-all.sh --print.

    Raises StackError naming what is missing and how to build it.
    """
    found: dict[str, str] = {k: os.environ[k] for k in BINARY_KEYS if os.environ.get(k)}
    if len(found) < len(BINARY_KEYS):
        out = subprocess.run(
            ["bash", str(REPO / "deploy" / "build-all.sh"), "--print"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        for line in out.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key in BINARY_KEYS and key not in found and value:
                found[key] = value.strip().strip("'\"")
    missing = [
        k for k in BINARY_KEYS if not (found.get(k) and os.access(found.get(k, ""), os.X_OK))
    ]
    if missing:
        raise StackError(
            f"native binaries missing: {', '.join(missing)}. Build them with `make binaries` "
            "(deploy/build-all.sh; cached in ~/.cache/modelobs/bin, 7-9 min cold on 2 cores)."
        )
    return found


def modelobs_cli() -> str:
    path = Path(sys.executable).with_name("modelobs")
    if not path.exists():
        raise StackError(f"{path} not found: run `make venv` and use .venv/bin/python")
    return str(path)


# --------------------------------------------------------------------------- components


def collector(cfg: StackConfig, bins: Mapping[str, str]) -> Component:
    p, run = cfg.ports, cfg.run_dir
    env = {
        "COLLECTOR_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p.otlp_grpc}",
        "COLLECTOR_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{p.otlp_http}",
        "COLLECTOR_PROMETHEUS_EXPORTER_ENDPOINT": f"127.0.0.1:{p.collector_prometheus}",
        "COLLECTOR_SELF_METRICS_HOST": "127.0.0.1",
        "COLLECTOR_SELF_METRICS_PORT": str(p.collector_self),
        "COLLECTOR_HEALTH_ENDPOINT": f"127.0.0.1:{p.collector_health}",
        "JAEGER_OTLP_ENDPOINT": f"127.0.0.1:{p.jaeger_otlp_grpc}",
        "LOKI_OTLP_ENDPOINT": f"http://127.0.0.1:{p.loki}/otlp",
        "COLLECTOR_STORAGE_DIR": str(run / "otelcol" / "storage"),
        "COLLECTOR_FILE_EXPORT_DIR": str(run / "otelcol" / "files"),
        "TAIL_SAMPLING_DECISION_WAIT": "3s",
        "GOMEMLIMIT": "400MiB",
        **cfg.collector_env,
    }
    return Component(
        name="otelcol",
        argv=[bins["OTELCOL_BIN"], f"--config={REPO / 'otel-collector' / 'config.yaml'}"],
        env=env,
        ports=(
            p.otlp_grpc,
            p.otlp_http,
            p.collector_prometheus,
            p.collector_self,
            p.collector_health,
        ),
        health_url=cfg.url(p.collector_health, "/"),
        ready_timeout_s=cfg.ready_timeout_s,
        endpoints={
            "OTLP gRPC": f"127.0.0.1:{p.otlp_grpc}",
            "OTLP HTTP": cfg.url(p.otlp_http),
            "metrics (app + span)": cfg.url(p.collector_prometheus, "/metrics"),
        },
    )


def jaeger(cfg: StackConfig, bins: Mapping[str, str]) -> Component:
    p = cfg.ports
    env = {
        "JAEGER_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{p.jaeger_otlp_grpc}",
        "JAEGER_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{p.jaeger_otlp_http}",
        "JAEGER_QUERY_HTTP_ENDPOINT": f"127.0.0.1:{p.jaeger_query_http}",
        "JAEGER_QUERY_GRPC_ENDPOINT": f"127.0.0.1:{p.jaeger_query_grpc}",
        "JAEGER_HEALTH_ENDPOINT": f"127.0.0.1:{p.jaeger_health}",
        "JAEGER_METRICS_HOST": "127.0.0.1",
        "JAEGER_METRICS_PORT": str(p.jaeger_metrics),
    }
    return Component(
        name="jaeger",
        argv=[bins["JAEGER_BIN"], f"--config={REPO / 'deploy' / 'jaeger' / 'config.yaml'}"],
        env=env,
        ports=(
            p.jaeger_otlp_grpc,
            p.jaeger_otlp_http,
            p.jaeger_query_http,
            p.jaeger_query_grpc,
            p.jaeger_health,
            p.jaeger_metrics,
        ),
        health_url=cfg.url(p.jaeger_health, "/"),
        ready_timeout_s=cfg.ready_timeout_s,
        endpoints={"Jaeger API": cfg.url(p.jaeger_query_http, "/api/v3/services")},
    )


def prometheus(cfg: StackConfig, bins: Mapping[str, str]) -> Component:
    p = cfg.ports
    data = cfg.run_dir / "prometheus" / "data"
    return Component(
        name="prometheus",
        argv=[
            bins["PROMETHEUS_BIN"],
            f"--config.file={prometheus_config(cfg)}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{p.prometheus}",
            "--enable-feature=exemplar-storage",
            "--web.enable-lifecycle",
        ],
        ports=(p.prometheus,),
        health_url=cfg.url(p.prometheus, "/-/ready"),
        ready_timeout_s=cfg.ready_timeout_s,
        endpoints={"Prometheus API": cfg.url(p.prometheus, "/api/v1/query?query=up")},
    )


def alertmanager(cfg: StackConfig, bins: Mapping[str, str]) -> Component:
    p = cfg.ports
    return Component(
        name="alertmanager",
        argv=[
            bins["ALERTMANAGER_BIN"],
            f"--config.file={alertmanager_config(cfg)}",
            f"--storage.path={cfg.run_dir / 'alertmanager'}",
            f"--web.listen-address=127.0.0.1:{p.alertmanager}",
            "--cluster.listen-address=",
        ],
        ports=(p.alertmanager,),
        health_url=cfg.url(p.alertmanager, "/-/ready"),
        ready_timeout_s=cfg.ready_timeout_s,
        endpoints={"Alertmanager alerts": cfg.url(p.alertmanager, "/api/v2/alerts")},
    )


def webhook(cfg: StackConfig) -> Component:
    p = cfg.ports
    script = REPO / "deploy" / "alert-webhook" / "receiver.py"
    return Component(
        name="alert-webhook",
        argv=[sys.executable, "-u", str(script), "--host", "127.0.0.1", "--port", str(p.webhook)],
        ports=(p.webhook,),
        health_url=cfg.url(p.webhook, "/healthz"),
        ready_timeout_s=cfg.ready_timeout_s,
        endpoints={"received alerts": cfg.url(p.webhook, "/alerts")},
    )


def loki_standin(cfg: StackConfig) -> Component:
    """Accepts the collector's OTLP logs natively; see loki_standin.py (it is not Loki)."""
    p = cfg.ports
    script = NATIVE_DIR / "loki_standin.py"
    return Component(
        name="loki-standin",
        argv=[sys.executable, "-u", str(script), "--host", "127.0.0.1", "--port", str(p.loki)],
        ports=(p.loki,),
        health_url=cfg.url(p.loki, "/ready"),
        ready_timeout_s=cfg.ready_timeout_s,
        endpoints={"Loki stand-in (counts only)": cfg.url(p.loki, "/stats")},
    )


def service_env(cfg: StackConfig, name: str, extra: Mapping[str, str] | None = None) -> dict:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": cfg.url(cfg.ports.otlp_grpc),
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_METRIC_EXPORT_INTERVAL": "5000",
        # Spans leave each service within 1 s (SDK default 5 s), well inside the collector's
        # tail-sampling decision wait, so a kept trace arrives in Jaeger whole.
        "OTEL_BSP_SCHEDULE_DELAY": "1000",
        "OTEL_BLRP_SCHEDULE_DELAY": "1000",
        "MODELOBS_MODEL_DIR": str(cfg.run_dir / "model"),
        "MODELOBS_PREDICTION_DB": str(cfg.run_dir / f"{name}.predictions.db"),
        **cfg.service_env,
        **(extra or {}),
    }


def model_service(
    cfg: StackConfig,
    *,
    name: str = "model-service",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Component:
    port = port or cfg.ports.model
    return Component(
        name=name,
        argv=[modelobs_cli(), "serve", "model", "--host", "127.0.0.1", "--port", str(port)],
        env=service_env(cfg, name, env),
        ports=(port,),
        health_url=cfg.url(port, "/readyz"),
        ready_timeout_s=cfg.ready_timeout_s,
        endpoints={name: cfg.url(port, "/predict")},
    )


def gateway(
    cfg: StackConfig,
    *,
    name: str = "gateway",
    port: int | None = None,
    model_url: str | None = None,
    env: Mapping[str, str] | None = None,
    health_path: str = "/readyz",
) -> Component:
    """``health_path="/healthz"`` for a gateway whose model service is meant to be absent."""
    port = port or cfg.ports.gateway
    model_url = model_url or cfg.url(cfg.ports.model)
    return Component(
        name=name,
        argv=[
            modelobs_cli(),
            "serve",
            "gateway",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model-url",
            model_url,
        ],
        env=service_env(cfg, name, env),
        ports=(port,),
        health_url=cfg.url(port, health_path),
        ready_timeout_s=cfg.ready_timeout_s,
        endpoints={name: cfg.url(port, "/v1/predict")},
    )


def load(cfg: StackConfig, *, url: str | None = None, scenario: str = "steady") -> Component:
    """Steady traffic through the gateway; stops by itself after ``cfg.load_max_seconds``."""
    return Component(
        name="load",
        argv=[
            modelobs_cli(),
            "load",
            "--url",
            url or cfg.url(cfg.ports.gateway),
            "--rps",
            f"{cfg.load_rps:g}",
            "--duration",
            f"{cfg.load_max_seconds:g}",
            "--scenario",
            scenario,
            "--quiet",
        ],
        env=service_env(cfg, "load"),
    )


def components(cfg: StackConfig, bins: Mapping[str, str]) -> list[Component]:
    """The default stack, in start order."""
    out = [
        loki_standin(cfg),
        collector(cfg, bins),
        jaeger(cfg, bins),
        prometheus(cfg, bins),
        alertmanager(cfg, bins),
        webhook(cfg),
        model_service(cfg),
        gateway(cfg),
    ]
    if cfg.load_max_seconds > 0:
        out.append(load(cfg))
    return out


# --------------------------------------------------------------------------- generated configs

_TARGET_FILE = re.compile(r"files: \[targets/([\w-]+)\.yml\]")


def _is_default(cfg: StackConfig) -> bool:
    return cfg.ports == Ports() and cfg.rules_dir is None


def prometheus_config(cfg: StackConfig) -> Path:
    """deploy/prometheus/prometheus.yml as is for the default ports; otherwise a copy in the
    run directory whose file_sd targets and rule files point at this stack's."""
    source = REPO / "deploy" / "prometheus" / "prometheus.yml"
    if _is_default(cfg):
        return source
    p = cfg.ports
    job_ports = {
        "otel-collector": p.collector_prometheus,
        "otel-collector-self": p.collector_self,
        "prometheus": p.prometheus,
        "alertmanager": p.alertmanager,
        "jaeger": p.jaeger_metrics,
    }
    out_dir = cfg.run_dir / "prometheus"
    (out_dir / "targets").mkdir(parents=True, exist_ok=True)
    text = source.read_text()
    for job in set(_TARGET_FILE.findall(text)):
        if job not in job_ports:
            raise StackError(f"{source}: no port known for target file targets/{job}.yml")
        (out_dir / "targets" / f"{job}.yml").write_text(
            f'- targets: ["127.0.0.1:{job_ports[job]}"]\n'
        )
    text = _TARGET_FILE.sub(lambda m: f"files: ['{out_dir}/targets/{m.group(1)}.yml']", text)
    rules = cfg.rules_dir or REPO / "deploy" / "prometheus" / "rules"
    text, n = re.subn(r"^(\s*)- rules/\*\.yml$", rf"\1- '{rules}/*.yml'", text, flags=re.M)
    if n != 1:
        raise StackError(f"{source}: expected one `- rules/*.yml` line, found {n}")
    path = out_dir / "prometheus.yml"
    path.write_text(text)
    return path


def alertmanager_config(cfg: StackConfig) -> Path:
    """The native Alertmanager config, with the webhook port of this stack."""
    source = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
    if cfg.ports.webhook == Ports().webhook:
        return source
    old = "url: http://127.0.0.1:9099/alerts"
    text = source.read_text()
    if old not in text:
        raise StackError(f"{source}: webhook line {old!r} not found")
    path = cfg.run_dir / "alertmanager.yml"
    path.write_text(text.replace(old, f"url: http://127.0.0.1:{cfg.ports.webhook}/alerts"))
    return path


# --------------------------------------------------------------------------- processes


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def port_owner(port: int) -> str:
    """Who listens on ``port`` (from `ss`, when available)."""
    if not shutil.which("ss"):
        return "unknown process"
    out = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    ).stdout
    found = re.findall(r'users:\(\("([^"]+)",pid=(\d+)', out)
    return ", ".join(f"{name} (pid {pid})" for name, pid in found) or "unknown process"


def proc_start_time(pid: int) -> str | None:
    """Start time of ``pid`` (clock ticks since boot), to tell a reused pid from ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int, start_time: str | None) -> bool:
    current = proc_start_time(pid)
    if current is None:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z" and (start_time is None or current == start_time)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"


@dataclass
class Running:
    """One started process, as recorded in stack.json."""

    name: str
    pid: int
    start_time: str | None
    ports: list[int]
    health_url: str | None
    log: str
    endpoints: dict[str, str]

    def is_alive(self) -> bool:
        return alive(self.pid, self.start_time)


def launch(component: Component, run_dir: Path) -> tuple[subprocess.Popen[bytes], Running]:
    busy = [port for port in component.ports if port_open(port)]
    if busy:
        owners = "; ".join(f"{port}: {port_owner(port)}" for port in busy)
        raise StackError(
            f"{component.name}: port(s) already in use ({owners}). Is another stack running "
            "(`make status`, `make down`) or another program on these ports?"
        )
    log = run_dir / f"{component.name}.log"
    with open(log, "ab") as out:
        out.write(f"\n=== {datetime.now(UTC).isoformat()} start: {component.argv}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            component.argv,
            env={**os.environ, **component.env},
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (run_dir / f"{component.name}.pid").write_text(f"{proc.pid}\n")
    running = Running(
        name=component.name,
        pid=proc.pid,
        start_time=proc_start_time(proc.pid),
        ports=list(component.ports),
        health_url=component.health_url,
        log=str(log),
        endpoints=component.endpoints,
    )
    return proc, running


def wait_ready(component: Component, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the health URL answers 200; without one, until the process has lived 1 s."""
    deadline = time.monotonic() + component.ready_timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            hint = ""
            if "address already in use" in log.read_text(errors="replace").lower():
                hint = " (address already in use)"
            raise StackError(
                f"{component.name} exited with code {proc.returncode} while starting{hint}; "
                f"last lines of {log}:\n{log_tail(log)}"
            )
        if component.health_url is None:
            if time.monotonic() > deadline - component.ready_timeout_s + 1.0:
                return
        else:
            try:
                response = httpx.get(component.health_url, timeout=2)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
        time.sleep(0.2)
    raise StackError(
        f"{component.name} not ready after {component.ready_timeout_s:.0f}s "
        f"({component.health_url}: {last}); last lines of {log}:\n{log_tail(log)}"
    )


def terminate(record: Running, grace_s: float = STOP_GRACE_S) -> str:
    """SIGTERM the process group, SIGKILL after ``grace_s``. Returns what happened."""
    if not record.is_alive():
        return "not running"
    _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not record.is_alive():
            _reap(record.pid)
            return "stopped"
        time.sleep(0.1)
    _signal_group(record.pid, signal.SIGKILL)
    time.sleep(0.2)
    _reap(record.pid)
    return f"killed after {grace_s:.0f}s"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # each component leads its own session/group
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# --------------------------------------------------------------------------- the stack


class Stack:
    """The processes of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.state_path = run_dir / STATE_FILE

    def recorded(self) -> list[Running]:
        try:
            data = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return []
        return [Running(**item) for item in data["components"]]

    def _save(self, records: Sequence[Running]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        payload = {"components": [dataclasses.asdict(r) for r in records]}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2))
        tmp.replace(self.state_path)

    def up(self, parts: Iterable[Component], say: Any = print) -> list[Running]:
        """Start each component in order and wait for it; on failure stop what was started."""
        existing = self.recorded()
        if existing:
            # The load stops by itself (MODELOBS_LOAD_MAX_SECONDS): not a failure.
            dead = [r.name for r in existing if not r.is_alive() and r.name != "load"]
            if not dead:
                say(f"already up ({len(existing)} processes, run dir {self.run_dir})")
                return existing
            raise StackError(
                f"stack in {self.run_dir} is partly running (dead: {', '.join(dead)}); "
                "run `make down` first"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started: list[Running] = []
        try:
            for component in parts:
                t0 = time.monotonic()
                proc, record = launch(component, self.run_dir)
                started.append(record)
                self._save(started)
                wait_ready(component, proc, Path(record.log))
                say(
                    f"  {component.name:<16} ready in {time.monotonic() - t0:4.1f}s  pid {proc.pid}"
                )
        except BaseException:
            self._stop(started, say=lambda _m: None)
            self.state_path.unlink(missing_ok=True)
            raise
        return started

    def add(self, component: Component) -> Running:
        """Start one more component into an up stack (tests: a second service instance)."""
        proc, record = launch(component, self.run_dir)
        records = [*self.recorded(), record]
        self._save(records)
        try:
            wait_ready(component, proc, Path(record.log))
        except BaseException:
            terminate(record)
            self._save(records[:-1])
            raise
        return record

    def _stop(self, records: Sequence[Running], say: Any) -> list[str]:
        problems: list[str] = []
        for record in reversed(records):
            outcome = terminate(record)
            say(f"  {record.name:<16} {outcome}")
        for record in records:
            if record.is_alive():
                problems.append(f"{record.name} (pid {record.pid}) still alive")
        deadline = time.monotonic() + 5
        busy = [(r.name, p) for r in records for p in r.ports]
        while busy and time.monotonic() < deadline:
            busy = [(name, p) for name, p in busy if port_open(p)]
            if busy:
                time.sleep(0.2)
        problems += [f"port {p} of {name} still open ({port_owner(p)})" for name, p in busy]
        return problems

    def down(self, say: Any = print) -> None:
        records = self.recorded()
        if not records:
            say(f"nothing recorded in {self.state_path}: not running")
            return
        problems = self._stop(records, say)
        if problems:
            raise StackError("down left things behind: " + "; ".join(problems))
        self.state_path.unlink(missing_ok=True)
        for record in records:
            (self.run_dir / f"{record.name}.pid").unlink(missing_ok=True)
        say("all stopped; no process or port left behind")

    def status(self, say: Any = print) -> bool:
        """Print each component's state; True when everything recorded runs."""
        records = self.recorded()
        if not records:
            say(f"not running (no {self.state_path})")
            return False
        ok = True
        for record in records:
            state = "running" if record.is_alive() else "DEAD"
            health = ""
            if record.health_url and record.is_alive():
                try:
                    code = httpx.get(record.health_url, timeout=2).status_code
                    health = "healthy" if code == 200 else f"unhealthy (HTTP {code})"
                except httpx.HTTPError as exc:
                    health = f"unhealthy ({type(exc).__name__})"
            elif record.name == "load" and not record.is_alive():
                state = "finished"
            ok = ok and (record.is_alive() or record.name == "load")
            ports = ",".join(map(str, record.ports)) or "-"
            say(f"  {record.name:<16} {state:<8} pid {record.pid:<7} ports {ports:<34} {health}")
        return ok


# --------------------------------------------------------------------------- summary


def jaeger_recent_trace(query_url: str, service: str = "gateway") -> tuple[str, int] | None:
    """(trace id, span count) of the most recent kept trace of ``service``, or None."""
    now = datetime.now(UTC)
    params = {
        "query.service_name": service,
        "query.start_time_min": (now - timedelta(minutes=15)).isoformat(),
        "query.start_time_max": (now + timedelta(minutes=1)).isoformat(),
        "query.num_traces": "20",
    }
    response = httpx.get(f"{query_url}/api/v3/traces", params=params, timeout=5)
    if response.status_code != 200:
        return None
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in iter_spans(response.json()):
        by_trace.setdefault(span["traceId"], []).append(span)
    # Prefer traces whose model-service spans arrived too (each SDK exports on its own timer).
    complete = {t: s for t, s in by_trace.items() if len({x["_service"] for x in s}) > 1}
    candidates = complete or by_trace
    if not candidates:
        return None
    trace_id = max(
        candidates, key=lambda t: max(int(x.get("startTimeUnixNano", 0)) for x in candidates[t])
    )
    return trace_id, len(candidates[trace_id])


def iter_spans(payload: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """Every span of a Jaeger v3 answer (OTLP JSON under ``result``), with its service name
    added as ``_service``."""
    for resource_spans in payload.get("result", {}).get("resourceSpans", []):
        attributes = resource_spans.get("resource", {}).get("attributes", [])
        service = next(
            (a["value"].get("stringValue") for a in attributes if a.get("key") == "service.name"),
            None,
        )
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                yield {**span, "_service": service}


def prom_query(prom_url: str, query: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prom_url}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def summary(cfg: StackConfig, timeout_s: float = 120.0, say: Any = print) -> bool:
    """Wait (bounded) until a trace is in Jaeger and rate/p99 are in Prometheus; print them."""
    p = cfg.ports
    jaeger_url, prom_url = cfg.url(p.jaeger_query_http), cfg.url(p.prometheus)
    rate_q = (
        "sum by (service_name) (rate(http_server_request_duration_seconds_count"
        '{http_route!~"/healthz|/readyz"}[1m]))'
    )
    p99_q = (
        "histogram_quantile(0.99, sum by (service_name, le) (rate("
        'http_server_request_duration_seconds_bucket{http_route!~"/healthz|/readyz"}[1m])))'
    )
    deadline = time.monotonic() + timeout_s
    trace, rates, p99s = None, [], []
    while time.monotonic() < deadline:
        try:
            trace = trace or jaeger_recent_trace(jaeger_url)
            rates = prom_query(prom_url, rate_q)
            p99s = [r for r in prom_query(prom_url, p99_q) if r["value"][1] != "NaN"]
        except httpx.HTTPError:
            pass
        if trace and len(rates) >= 2 and len(p99s) >= 2:  # gateway and model-service
            break
        time.sleep(2)
    if trace:
        say(
            f"  recent trace    {trace[0]} ({trace[1]} spans): "
            f"{jaeger_url}/api/v3/traces/{trace[0]}"
        )
    for r in rates:
        say(f"  request rate    {r['metric'].get('service_name')}: {float(r['value'][1]):.2f}/s")
    for r in p99s:
        say(
            f"  p99 latency     {r['metric'].get('service_name')}: "
            f"{float(r['value'][1]) * 1000:.1f} ms"
        )
    if not (trace and rates and p99s):
        missing = [n for n, v in (("trace", trace), ("rate", rates), ("p99", p99s)) if not v]
        say(f"  telemetry not complete after {timeout_s:.0f}s: no {', '.join(missing)} yet")
        return False
    return True


# --------------------------------------------------------------------------- command line


def default_config() -> StackConfig:
    run_dir = Path(os.environ.get("MODELOBS_RUN_DIR") or REPO / "var" / "run")
    if not run_dir.is_absolute():
        run_dir = REPO / run_dir
    return StackConfig(
        run_dir=run_dir,
        load_rps=float(os.environ.get("MODELOBS_LOAD_RPS") or DEFAULT_LOAD_RPS),
        load_max_seconds=float(
            os.environ.get("MODELOBS_LOAD_MAX_SECONDS") or DEFAULT_LOAD_MAX_SECONDS
        ),
    )


def print_endpoints(records: Sequence[Running], say: Any = print) -> None:
    say("endpoints:")
    for record in records:
        for label, url in record.endpoints.items():
            say(f"  {label:<28} {url}")
    if records:
        say(f"logs, pid files, data: {Path(records[0].log).parent}")


def cmd_up(cfg: StackConfig) -> int:
    stack = Stack(cfg.run_dir)
    if stack.recorded():
        records = stack.up([])
        print_endpoints(records)
        return 0
    bins = find_binaries()
    parts = components(cfg, bins)
    print(f"starting the native stack in {cfg.run_dir}")
    records = stack.up(parts)
    print_endpoints(records)
    if cfg.load_max_seconds > 0:
        print(
            f"load: {cfg.load_rps:g} req/s, stops by itself after {cfg.load_max_seconds:g}s "
            "(MODELOBS_LOAD_MAX_SECONDS)"
        )
    print("waiting for telemetry to flow (bounded)...")
    summary(cfg)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    cfg = default_config()
    try:
        if args.command == "up":
            return cmd_up(cfg)
        stack = Stack(cfg.run_dir)
        if args.command == "down":
            stack.down()
            return 0
        ok = stack.status()
        if ok:
            print_endpoints(stack.recorded())
        return 0 if ok or not stack.recorded() else 1
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stack: interrupted; started processes were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
