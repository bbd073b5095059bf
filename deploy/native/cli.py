"""The commands behind `make up`, `make status` and `make down`.

    python -m deploy.native up       # collector, Jaeger, Prometheus, Alertmanager, webhook
                                     # receiver, VictoriaLogs, model service, gateway and a
                                     # steady, time-bounded load; then a telemetry summary
    python -m deploy.native status   # each process: running / DEAD / finished, its health
    python -m deploy.native down     # stop everything `up` started

Everything runs in the background with its output, pid file and data under the run
directory (MODELOBS_RUN_DIR, default var/run). MODELOBS_LOAD_RPS (default 10) and
MODELOBS_LOAD_MAX_SECONDS (default 14400 = 4 h; 0 = no load) shape the load.
MODELOBS_GATEWAYS=2 scales the collector out: an agent and two gateway collectors
(otel-collector/agent.yaml, gateway.yaml) instead of the single one. MODELOBS_REPLICAS=2
(`make up REPLICAS=2`) runs PostgreSQL, two model-service replicas behind the gateway and
one monitor instead of the single model service (replicas.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .binaries import BinariesMissing, find_binaries
from .components import LOAD, StackConfig, default_stack
from .readiness import probe
from .replicas import replica_ports, with_replicas
from .scaled import gateway_ports, scaled_stack
from .summary import summary
from .supervisor import Running, Supervisor, SupervisorError


def print_endpoints(records: Sequence[Running]) -> None:
    print("endpoints:")
    for record in records:
        for label, url in record.endpoints.items():
            print(f"  {label:<28} {url}")
    if records:
        print(f"logs, pid files, data: {Path(records[0].log).parent}")


def up(cfg: StackConfig) -> int:
    supervisor = Supervisor(cfg.run_dir)
    if supervisor.recorded():
        print_endpoints(supervisor.start([]))
        return 0
    bins = find_binaries()
    if cfg.gateways:
        processes = scaled_stack(cfg, bins, gateway_ports(cfg, cfg.gateways))
    else:
        processes = default_stack(cfg, bins)
    if cfg.replicas:
        processes = with_replicas(processes, cfg, bins, replica_ports(cfg, cfg.replicas))
    print(f"starting the native stack in {cfg.run_dir}")
    print_endpoints(supervisor.start(processes))
    if any(p.name == LOAD.name for p in processes):
        print(
            f"load: {cfg.load_rps:g} req/s, stops by itself after {cfg.load_max_seconds:g}s "
            "(MODELOBS_LOAD_MAX_SECONDS)"
        )
    print("waiting for telemetry to flow (bounded)...")
    p = cfg.ports
    summary(cfg.url(p.jaeger_query_http), cfg.url(p.prometheus), cfg.url(p.logs))
    return 0


def status(cfg: StackConfig) -> int:
    """0 when every recorded process runs (or finished by design), or nothing is recorded."""
    supervisor = Supervisor(cfg.run_dir)
    records = supervisor.recorded()
    if not records:
        print(f"not running (no {supervisor.state_path})")
        return 0
    for record in records:
        alive = record.is_alive()
        state = "running" if alive else ("finished" if record.may_exit else "DEAD")
        health = ""
        if alive and record.ready_url:
            problem = probe(record.ready_url)
            health = "healthy" if problem is None else f"unhealthy ({problem})"
        ports = ",".join(map(str, record.ports)) or "-"
        print(f"  {record.name:<16} {state:<8} pid {record.pid:<7} ports {ports:<34} {health}")
    if supervisor.dead():
        return 1
    print_endpoints(records)
    return 0


def down(cfg: StackConfig) -> int:
    Supervisor(cfg.run_dir).stop()
    return 0


COMMANDS = {"up": up, "status": status, "down": down}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.native", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("command", choices=list(COMMANDS))
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](StackConfig.from_env())
    except (SupervisorError, BinariesMissing, LookupError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stack: interrupted; started processes were stopped", file=sys.stderr)
        return 130
