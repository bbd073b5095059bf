"""deploy/native/replicas.py: `make up REPLICAS=2` declares PostgreSQL, two model-service
replicas writing to it with their monitor off, one monitor and the gateway over both, in an
order where everything starts after what it needs; also on the scaled-out collector."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from deploy.native import REPO, components, replicas, scaled
from deploy.native.supervisor import Process

from modelobs.settings import Settings

from .test_native_stack import FAKE_BINS, checked_start_order


@pytest.fixture
def cfg(tmp_path: Path) -> components.StackConfig:
    ports, _ = components.Ports.free()
    return components.StackConfig(run_dir=tmp_path / "run", ports=ports, replicas=2)


def option(process: Process, flag: str) -> str:
    return process.argv[process.argv.index(flag) + 1]


def test_two_replicas_a_monitor_and_postgres_replace_the_single_model_service(
    cfg: components.StackConfig,
) -> None:
    ports = replicas.replica_ports(cfg, 2)
    stack = replicas.with_replicas(components.default_stack(cfg, FAKE_BINS), cfg, FAKE_BINS, ports)
    by_name = {p.name: p for p in stack}
    ordered = checked_start_order(stack)
    assert "model-service" not in by_name
    first, second = by_name["model-service-1"], by_name["model-service-2"]
    assert [option(first, "--port"), option(second, "--port")] == [str(p) for p in ports.models]
    assert option(first, "--port") == str(cfg.ports.model)
    for replica in (first, second):
        assert replica.env["MODELOBS_PREDICTION_DB"] == ports.database_url
        assert replica.env["MODELOBS_MONITOR"] == "off"
    # The first replica trains the model; the second and the monitor start after it.
    assert ordered.index("model-service-1") < ordered.index("model-service-2")
    assert ordered.index("model-service-1") < ordered.index("model-monitor")
    assert ordered.index("postgres") < ordered.index("model-service-1")
    monitor = by_name["model-monitor"]
    assert monitor.argv[1:3] == ["serve", "monitor"]
    assert monitor.env["MODELOBS_PREDICTION_DB"] == ports.database_url
    assert option(by_name["gateway"], "--model-url") == ",".join(
        f"http://127.0.0.1:{p}" for p in ports.models
    )
    assert ordered[-1] == "load"
    postgres = by_name["postgres"]
    assert postgres.ports == (ports.postgres, ports.postgres_health)
    assert postgres.ready_url == f"http://127.0.0.1:{ports.postgres_health}/"


def test_replicas_compose_with_the_scaled_out_collector(cfg: components.StackConfig) -> None:
    gateways = scaled.gateway_ports(cfg, 2)
    base = scaled.scaled_stack(cfg, FAKE_BINS, gateways)
    stack = replicas.with_replicas(base, cfg, FAKE_BINS, replicas.replica_ports(cfg, 3))
    checked_start_order(stack)
    by_name = {p.name: p for p in stack}
    assert {"model-service-1", "model-service-2", "model-service-3"} <= set(by_name)
    assert "otelcol-agent" in by_name["model-service-1"].depends_on
    assert "otelcol" not in {d for p in stack for d in p.depends_on}


def test_make_up_takes_the_contract_s_ports(tmp_path: Path) -> None:
    cfg = components.StackConfig(run_dir=tmp_path, replicas=3)
    ports = replicas.replica_ports(cfg, 3)
    assert ports.models == (8000, 8001, 8003)
    assert (ports.monitor, ports.postgres, ports.postgres_health) == (8002, 5433, 5434)
    contract = (REPO / "docs" / "contract.md").read_text()
    assert "| monitor (`modelobs serve monitor`" in contract and "| 8002 |" in contract
    assert "| PostgreSQL (`make up REPLICAS=N`) | 5433 |" in contract


def test_replicas_come_from_the_environment_and_make(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELOBS_REPLICAS", "2")
    assert components.StackConfig.from_env().replicas == 2
    dry = subprocess.run(
        ["make", "-n", "up", "REPLICAS=2"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "MODELOBS_REPLICAS=2 .venv/bin/python -m deploy.native up" in dry.stdout
    with pytest.raises(ValueError, match="at least 1"):
        replicas.replica_ports(components.StackConfig(run_dir=Path("x")), 0)


def test_the_readme_documents_replicas_workers_and_the_gateway_settings() -> None:
    readme = (REPO / "README.md").read_text()
    assert "`make up REPLICAS=2`" in readme
    assert "`serve model --workers N`" in readme
    defaults = Settings.model_fields
    for variable, field in (
        ("MODELOBS_MODEL_URLS", "model_urls"),
        ("MODELOBS_UPSTREAM_SKIP_S", "upstream_skip_s"),
    ):
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{variable}`"))
        default = defaults[field].default
        assert (str(default) if default is not None else "unset") in row.split("|")[2], row
