"""The native stack scaled out: one agent collector (otel-collector/agent.yaml) where the single
collector would be, forwarding by trace id to N gateway collectors (gateway.yaml) on free
ports. `MODELOBS_GATEWAYS=2 make up` runs it; so does the scale-out end-to-end test.

The first gateway's Prometheus exporter takes the single collector's port, so the rendered
prometheus.yml scrapes it unchanged; the other gateways (and every gateway's own metrics)
are added to the rendered file_sd target files of the same jobs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import render
from .components import SPECS, StackConfig, default_stack, resolve
from .net import free_ports
from .supervisor import Process

AGENT = "otelcol-agent"
GATEWAY = "otelcol-gateway"
SINGLE = "otelcol"


@dataclass(frozen=True)
class GatewayPorts:
    """Where one gateway collector listens."""

    grpc: int
    http: int
    prom: int
    self: int
    health: int

    def params(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.__dict__.items()}


def gateway_ports(
    cfg: StackConfig, count: int, picked: Iterator[int] | None = None
) -> list[GatewayPorts]:
    """Ports for ``count`` gateways (from ``picked``, default free ones); the first exports
    metrics on the stack's collector_prometheus port."""
    picked = picked or iter(free_ports(5 * count))
    ports = []
    for index in range(count):
        grpc, http, prom, own, health = (next(picked) for _ in range(5))
        if index == 0:
            prom = cfg.ports.collector_prometheus
        ports.append(GatewayPorts(grpc, http, prom, own, health))
    return ports


def gateway_name(index: int) -> str:
    return f"{GATEWAY}-{index + 1}"


def gateway_process(
    cfg: StackConfig,
    bins: Mapping[str, str],
    index: int,
    ports: GatewayPorts,
    env: Mapping[str, str] | None = None,
) -> Process:
    """Gateway ``index`` (also to start it again after a stop: same ports, same queue)."""
    return resolve(
        SPECS[GATEWAY], cfg, bins, name=gateway_name(index), params=ports.params(), env=env
    )


def _add_targets(target_file: Path, addresses: list[str]) -> None:
    groups = yaml.safe_load(target_file.read_text())
    groups.append({"targets": addresses})
    target_file.write_text(yaml.safe_dump(groups, sort_keys=False))


def prometheus_config(cfg: StackConfig, gateways: list[GatewayPorts]) -> Path:
    """The stack's prometheus.yml with every gateway's metrics and own metrics as targets."""
    path = render.prometheus_config(cfg.run_dir, cfg.ports, cfg.rules_dir)
    targets = path.parent / "targets"
    _add_targets(targets / "otel-collector.yml", [f"{render.HOST}:{g.prom}" for g in gateways[1:]])
    _add_targets(targets / "otel-collector-self.yml", [f"{render.HOST}:{g.self}" for g in gateways])
    return path


def scaled_stack(
    cfg: StackConfig, bins: Mapping[str, str], gateways: list[GatewayPorts]
) -> list[Process]:
    """The default stack with the single collector replaced by an agent and ``gateways``."""
    hostnames = ", ".join(f'"{render.HOST}:{g.grpc}"' for g in gateways)
    names = tuple(gateway_name(i) for i in range(len(gateways)))
    processes = [
        *(gateway_process(cfg, bins, i, ports) for i, ports in enumerate(gateways)),
        resolve(SPECS[AGENT], cfg, bins, params={"gateways": hostnames}, depends_on=names),
    ]
    for process in default_stack(cfg, bins):
        if process.name == SINGLE:
            continue
        if process.name == "prometheus":
            process = resolve(
                SPECS["prometheus"],
                cfg,
                bins,
                params={"prometheus_yml": str(prometheus_config(cfg, gateways))},
            )
        process.depends_on = tuple(
            dep for name in process.depends_on for dep in ((AGENT,) if name == SINGLE else (name,))
        )
        processes.append(process)
    return processes
