"""The native stack's components (declared once, as data, in stack.toml) made into the
processes of one stack: its ports, run directory and binaries filled in.

A ``Spec`` says what a component runs, with which arguments and environment, where it
listens, how to tell it is ready and what it needs first; ``resolve`` fills its placeholders
for one ``StackConfig``, optionally as another instance (other name, port, environment).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import REPO, render
from .net import free_ports
from .supervisor import Process


@dataclass(frozen=True)
class Ports:
    """Every listening port of the stack (docs/contract.md); all bound to 127.0.0.1."""

    otlp_grpc: int = 4317
    otlp_http: int = 4318
    collector_prometheus: int = 8889
    collector_self: int = 8888
    collector_health: int = 13133
    collector_pprof: int = 1777
    collector_zpages: int = 55679
    jaeger_otlp_grpc: int = 14317
    jaeger_otlp_http: int = 14318
    jaeger_query_http: int = 16686
    jaeger_query_grpc: int = 16685
    jaeger_health: int = 13134
    jaeger_metrics: int = 8887
    prometheus: int = 9090
    alertmanager: int = 9093
    webhook: int = 9099
    logs: int = 9428
    model: int = 8000
    gateway: int = 8080

    @classmethod
    def free(cls, extra: int = 0) -> tuple[Ports, list[int]]:
        """Free ports for every field, and ``extra`` more, all distinct (a stack beside
        `make up`'s, and its additional services)."""
        names = [f.name for f in dataclasses.fields(cls)]
        picked = free_ports(len(names) + extra)
        return cls(**dict(zip(names, picked, strict=False))), picked[len(names) :]


STACK_TOML = Path(__file__).with_name("stack.toml")
DEFAULT_LOAD_RPS = 10.0
DEFAULT_LOAD_MAX_SECONDS = 4 * 3600.0


@dataclass
class StackConfig:
    """What differs between `make up` and a test or benchmark stack."""

    run_dir: Path
    ports: Ports = field(default_factory=Ports)
    # Extra environment per declared component name (e.g. "otelcol", "model-service"),
    # on top of the spec's; instances of a spec get its entry too.
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Prometheus rule directory (every *.yml in it); None = deploy/prometheus/rules.
    rules_dir: Path | None = None
    load_rps: float = DEFAULT_LOAD_RPS
    # The steady load stops by itself after this many seconds; 0 = no load component.
    load_max_seconds: float = DEFAULT_LOAD_MAX_SECONDS
    ready_timeout_s: float = 60.0
    # Scaled out: an agent collector and this many gateway collectors (scaled.py); 0 = the
    # single collector.
    gateways: int = 0
    # Model-service replicas over PostgreSQL with one monitor (replicas.py); 0 = the single
    # model service with its embedded monitor and SQLite.
    replicas: int = 0

    @classmethod
    def from_env(cls) -> StackConfig:
        """`make up`'s stack: MODELOBS_RUN_DIR (default var/run), MODELOBS_LOAD_RPS,
        MODELOBS_LOAD_MAX_SECONDS (0 = no load), MODELOBS_GATEWAYS (0 = one collector),
        MODELOBS_REPLICAS (0 = one model service)."""
        run_dir = Path(os.environ.get("MODELOBS_RUN_DIR") or "var/run")
        return cls(
            run_dir=run_dir if run_dir.is_absolute() else REPO / run_dir,
            load_rps=float(os.environ.get("MODELOBS_LOAD_RPS") or DEFAULT_LOAD_RPS),
            load_max_seconds=float(
                os.environ.get("MODELOBS_LOAD_MAX_SECONDS") or DEFAULT_LOAD_MAX_SECONDS
            ),
            gateways=int(os.environ.get("MODELOBS_GATEWAYS") or 0),
            replicas=int(os.environ.get("MODELOBS_REPLICAS") or 0),
        )

    def url(self, port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{port}{path}"


@dataclass(frozen=True)
class Spec:
    """One component as declared in stack.toml (its header lists the keys and placeholders)."""

    name: str
    program: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ready: str | None = None
    ports: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    endpoints: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    may_exit: bool = False
    # Declared but not part of the default stack (started by whoever asks for it).
    optional: bool = False


def load_specs(path: Path = STACK_TOML) -> dict[str, Spec]:
    """Every ``[[component]]`` of ``path`` by name, in declaration order."""
    doc = tomllib.loads(path.read_text())
    env_sets = doc.get("env_sets", {})
    specs: dict[str, Spec] = {}
    for declared in doc["component"]:
        item = dict(declared)
        env: dict[str, str] = {}
        for set_name in item.pop("env_sets", []):
            env.update(env_sets[set_name])
        env.update(item.pop("env", {}))
        for key in ("args", "ports", "depends_on"):
            item[key] = tuple(item.get(key, ()))
        for key in ("endpoints", "params"):
            item[key] = MappingProxyType(item.get(key, {}))
        try:
            spec = Spec(**item, env=MappingProxyType(env))
        except TypeError as exc:
            raise ValueError(f"{path}: component {item.get('name')!r}: {exc}") from None
        specs[spec.name] = spec
    return specs


SPECS = load_specs()
# The default stack is every declared component (the load only when it is on).
LOAD = SPECS["load"]


# --------------------------------------------------------------------------- resolution


class _Context(dict[str, str]):
    """Placeholder values; rendered configs and the modelobs script are looked up on first
    use, so a stack without Prometheus renders no prometheus.yml."""

    def __init__(self, cfg: StackConfig, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.cfg = cfg

    def __missing__(self, key: str) -> str:
        cfg = self.cfg
        if key == "prometheus_yml":
            value = render.prometheus_config(cfg.run_dir, cfg.ports, cfg.rules_dir)
        elif key == "alertmanager_yml":
            value = render.alertmanager_config(cfg.run_dir, cfg.ports)
        elif key == "modelobs":
            value = Path(sys.executable).with_name("modelobs")
            if not value.exists():
                raise LookupError(f"{value} not found: run `make venv` and use .venv/bin/python")
        else:
            raise LookupError(f"no value for placeholder {{{key}}}")
        self[key] = str(value)
        return self[key]


def context(cfg: StackConfig, bins: Mapping[str, str]) -> _Context:
    values: dict[str, Any] = {
        **dataclasses.asdict(cfg.ports),
        **bins,
        "run_dir": cfg.run_dir,
        "repo": REPO,
        "python": sys.executable,
        "load_rps": f"{cfg.load_rps:g}",
        "load_max_seconds": f"{cfg.load_max_seconds:g}",
    }
    return _Context(cfg, {k: str(v) for k, v in values.items()})


def resolve(
    spec: Spec,
    cfg: StackConfig,
    bins: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    params: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    ready: str | None = None,
    depends_on: tuple[str, ...] | None = None,
) -> Process:
    """``spec`` as a process of the stack ``cfg``; keywords make another instance of it
    (another name, port, model URL, environment, ready check or dependencies)."""
    ctx = context(cfg, bins or {})
    ctx["name"] = name or spec.name
    for key, value in {**spec.params, **(params or {})}.items():
        ctx[key] = str(value).format_map(ctx)

    def fill(text: str) -> str:
        try:
            return text.format_map(ctx)
        except LookupError as exc:
            raise LookupError(f"{ctx['name']}: {exc.args[0]}") from None

    ready_url = ready if ready is not None else spec.ready
    return Process(
        name=ctx["name"],
        argv=[fill(spec.program), *(fill(a) for a in spec.args)],
        # The extra environment is taken literally (no placeholders).
        env={
            **{k: fill(v) for k, v in spec.env.items()},
            **cfg.extra_env.get(spec.name, {}),
            **(env or {}),
        },
        ports=tuple(int(fill(p)) for p in spec.ports),
        ready_url=fill(ready_url) if ready_url else None,
        ready_timeout_s=cfg.ready_timeout_s,
        depends_on=depends_on if depends_on is not None else spec.depends_on,
        endpoints={fill(k): fill(v) for k, v in spec.endpoints.items()},
        may_exit=spec.may_exit,
    )


def service_pair(
    cfg: StackConfig,
    *,
    suffix: str,
    model_port: int,
    gateway_port: int,
    model_env: Mapping[str, str] | None = None,
    gateway_env: Mapping[str, str] | None = None,
    model_after: tuple[str, ...] | None = None,
) -> list[Process]:
    """Another model service (``model-service<suffix>``) and a gateway in front of it
    (``gateway<suffix>``); ``model_after`` replaces the model service's dependencies (e.g.
    the first model service, which trains the shared model)."""
    model = resolve(
        SPECS["model-service"],
        cfg,
        name=f"model-service{suffix}",
        params={"port": str(model_port)},
        env=model_env,
        depends_on=model_after,
    )
    gateway = resolve(
        SPECS["gateway"],
        cfg,
        name=f"gateway{suffix}",
        params={"port": str(gateway_port), "model_url": cfg.url(model_port)},
        env=gateway_env,
        depends_on=(model.name,),
    )
    return [model, gateway]


def default_stack(cfg: StackConfig, bins: Mapping[str, str]) -> list[Process]:
    """Every declared component for ``cfg`` (no load when ``cfg.load_max_seconds`` is 0)."""
    specs = [
        s for s in SPECS.values() if not s.optional and (s is not LOAD or cfg.load_max_seconds > 0)
    ]
    return [resolve(spec, cfg, bins) for spec in specs]
