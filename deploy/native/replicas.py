"""The native stack with several model-service replicas: `make up REPLICAS=2`.

In place of the single model service: PostgreSQL (the shared prediction store, its own
process, deploy/native/postgres_process.py), N model services writing to it with their
embedded monitor off (``MODELOBS_MONITOR=off``), one monitor (`modelobs serve monitor`)
computing drift and quality over all of their predictions from the store, and the gateway
spreading requests over the replicas (``--model-url`` with every replica's URL). The first
replica takes the stack's model port and trains the shared model on a first start; the
others start once it is ready. Everything else (collectors, Jaeger, Prometheus, load) is
the stack it is applied to, the default or the scaled-out one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from .components import SPECS, Ports, StackConfig, resolve
from .net import free_ports
from .supervisor import Process

POSTGRES = "postgres"
MONITOR = "model-monitor"
MODEL = "model-service"
GATEWAY = "gateway"
DATABASE = "modelobs"


@dataclass(frozen=True)
class ReplicaPorts:
    """Where the replicated part of the stack listens."""

    models: tuple[int, ...]
    monitor: int
    postgres: int
    postgres_health: int

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.postgres}/{DATABASE}"


# `make up`'s fixed ports (docs/contract.md): the monitor's default port, then the rest.
MONITOR_PORT, POSTGRES_PORT, POSTGRES_HEALTH_PORT = 8002, 5433, 5434


def _fixed_ports(count: int) -> Iterator[int]:
    """Replicas 2.. on 8001, 8003, 8004, ... (8002 is the monitor's), then the monitor and
    PostgreSQL."""
    replicas = (port for port in range(8001, 8001 + count + 1) if port != MONITOR_PORT)
    yield from (next(replicas) for _ in range(count - 1))
    yield from (MONITOR_PORT, POSTGRES_PORT, POSTGRES_HEALTH_PORT)


def replica_ports(
    cfg: StackConfig, count: int, picked: Iterator[int] | None = None
) -> ReplicaPorts:
    """The first replica on the stack's model port; the rest, the monitor and PostgreSQL
    on ``picked`` ports: by default the fixed ones when the stack has its default ports
    (`make up`), else free ones (a test's stack beside it)."""
    if count < 1:
        raise ValueError(f"REPLICAS={count}: at least 1")
    if picked is None:
        fixed = cfg.ports == Ports()
        picked = _fixed_ports(count) if fixed else iter(free_ports(count + 2))
    others = tuple(next(picked) for _ in range(count - 1))
    return ReplicaPorts(
        models=(cfg.ports.model, *others),
        monitor=next(picked),
        postgres=next(picked),
        postgres_health=next(picked),
    )


def replica_name(index: int) -> str:
    return f"{MODEL}-{index + 1}"


def replica_process(
    cfg: StackConfig,
    bins: Mapping[str, str],
    index: int,
    ports: ReplicaPorts,
    env: Mapping[str, str] | None = None,
) -> Process:
    """Replica ``index`` (also to start it again after a stop: same port, same store)."""
    after = ("otelcol", POSTGRES) if index == 0 else (POSTGRES, replica_name(0))
    return resolve(
        SPECS[MODEL],
        cfg,
        bins,
        name=replica_name(index),
        params={"port": str(ports.models[index])},
        env={
            "MODELOBS_PREDICTION_DB": ports.database_url,
            "MODELOBS_MONITOR": "off",
            **(env or {}),
        },
        depends_on=after,
    )


def with_replicas(
    processes: list[Process], cfg: StackConfig, bins: Mapping[str, str], ports: ReplicaPorts
) -> list[Process]:
    """``processes`` (a whole stack) with its model service replaced by PostgreSQL,
    ``len(ports.models)`` replicas and a monitor, and its gateway sent to every replica."""
    single = next(p for p in processes if p.name == MODEL)
    collector = tuple(d for d in single.depends_on if d != MODEL)  # otelcol, or the agent
    count = len(ports.models)
    replicas = [replica_process(cfg, bins, i, ports) for i in range(count)]
    replicas[0].depends_on = (*collector, POSTGRES)
    names = tuple(r.name for r in replicas)
    urls = ",".join(cfg.url(port) for port in ports.models)
    added = [
        resolve(
            SPECS[POSTGRES],
            cfg,
            bins,
            params={
                "port": str(ports.postgres),
                "health": str(ports.postgres_health),
                "database": DATABASE,
            },
        ),
        *replicas,
        resolve(
            SPECS[MONITOR],
            cfg,
            bins,
            params={"port": str(ports.monitor)},
            env={"MODELOBS_PREDICTION_DB": ports.database_url},
            # It waits for the model the first replica trains; ready once it has it.
            depends_on=(*collector, POSTGRES, names[0]),
        ),
    ]
    out: list[Process] = []
    for process in processes:
        if process.name == MODEL:
            out.extend(added)
            continue
        if process.name == GATEWAY:
            process = resolve(
                SPECS[GATEWAY], cfg, bins, params={"model_url": urls}, depends_on=names
            )
        process.depends_on = tuple(
            dep for name in process.depends_on for dep in (names if name == MODEL else (name,))
        )
        out.append(process)
    return out
