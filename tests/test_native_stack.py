"""deploy/native: the component table, config rendering, and the supervisor and CLI on real
processes (start, status from another process, stop of the whole process group)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml
from deploy.native import REPO, components, render
from deploy.native.binaries import STACK_KEYS, find_binary
from deploy.native.net import free_ports, port_open
from deploy.native.readiness import NotReady, wait_ready
from deploy.native.supervisor import Process, Running, Supervisor, SupervisorError, start_order

from .waiting import poll_until

FAKE_BINS = {key: f"/opt/{key.lower()}" for key in STACK_KEYS}


def quiet(_message: str) -> None:
    pass


def until(condition: Callable[[], bool], timeout_s: float = 15) -> bool:
    return bool(poll_until(condition, timeout_s, poll_s=0.05))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def cfg(tmp_path: Path) -> components.StackConfig:
    ports, _ = components.Ports.free()
    return components.StackConfig(run_dir=tmp_path / "run", ports=ports)


# --------------------------------------------------------------------------- declarations


def checked_start_order(processes: list[Process]) -> list[str]:
    """The names in start order, once every name is unique and every dependency names a
    process that starts before its dependant."""
    names = [p.name for p in processes]
    assert len(set(names)) == len(names)
    ordered = [p.name for p in start_order(processes)]
    for process in processes:
        for dependency in process.depends_on:
            assert dependency in names, f"{process.name} depends on unknown {dependency}"
            assert ordered.index(dependency) < ordered.index(process.name)
    return ordered


def test_every_dependency_names_a_component_and_starts_first(cfg: components.StackConfig) -> None:
    ordered = checked_start_order(components.default_stack(cfg, FAKE_BINS))
    assert ordered[-1] == "load"


def test_resolved_components_use_the_stack_ports_and_run_dir(
    cfg: components.StackConfig,
) -> None:
    by_name = {p.name: p for p in components.default_stack(cfg, FAKE_BINS)}
    collector = by_name["otelcol"]
    assert collector.argv[0] == "/opt/otelcol_bin"
    assert collector.env["COLLECTOR_OTLP_GRPC_ENDPOINT"] == f"127.0.0.1:{cfg.ports.otlp_grpc}"
    assert collector.env["COLLECTOR_STORAGE_DIR"] == f"{cfg.run_dir}/otelcol/storage"
    assert collector.ready_url == f"http://127.0.0.1:{cfg.ports.collector_health}/"
    gateway = by_name["gateway"]
    assert gateway.argv[-2:] == ["--model-url", f"http://127.0.0.1:{cfg.ports.model}"]
    assert gateway.ports == (cfg.ports.gateway,)
    assert gateway.env["MODELOBS_PREDICTION_DB"] == f"{cfg.run_dir}/gateway.predictions.db"
    every_port = {port for p in by_name.values() for port in p.ports}
    assert every_port == set(vars(cfg.ports).values())


def test_an_instance_overrides_name_port_and_environment(cfg: components.StackConfig) -> None:
    process = components.resolve(
        components.SPECS["gateway"],
        cfg,
        name="gateway-2",
        params={"port": "12345"},
        env={"X": "{literal}"},
        ready="http://127.0.0.1:{port}/healthz",
    )
    assert process.name == "gateway-2"
    assert process.ports == (12345,)
    assert process.ready_url == "http://127.0.0.1:12345/healthz"
    assert process.endpoints == {"gateway-2": "http://127.0.0.1:12345/v1/predict"}
    assert process.env["X"] == "{literal}"  # extra environment is taken literally


def test_no_load_component_when_the_load_is_off(tmp_path: Path) -> None:
    cfg = components.StackConfig(run_dir=tmp_path, load_max_seconds=0)
    assert "load" not in {p.name for p in components.default_stack(cfg, FAKE_BINS)}


def test_stack_toml_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "stack.toml"
    path.write_text('[[component]]\nname = "x"\nprogram = "true"\nready_url = "http://x/"\n')
    with pytest.raises(ValueError, match=r"component 'x'.*ready_url"):
        components.load_specs(path)


def test_shared_environment_sets_reach_every_service(tmp_path: Path) -> None:
    cfg = components.StackConfig(run_dir=tmp_path)
    for name in ("model-service", "gateway", "load"):
        env = components.resolve(components.SPECS[name], cfg).env
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4317", name


def test_start_order_rejects_a_cycle() -> None:
    a = Process("a", ["true"], depends_on=("b",))
    b = Process("b", ["true"], depends_on=("a",))
    with pytest.raises(SupervisorError, match="cycle"):
        start_order([a, b])


# --------------------------------------------------------------------------- rendering


def _targets(path: Path) -> list[str]:
    return [t for group in yaml.safe_load(path.read_text()) for t in group["targets"]]


def test_prometheus_config_points_at_this_stacks_ports_and_rules(
    cfg: components.StackConfig, tmp_path: Path
) -> None:
    path = render.prometheus_config(cfg.run_dir, cfg.ports, tmp_path / "rules")
    doc = yaml.safe_load(path.read_text())
    assert doc["rule_files"] == [f"{tmp_path / 'rules'}/*.yml"]
    files = {
        cfg["job_name"]: cfg["file_sd_configs"][0]["files"][0] for cfg in doc["scrape_configs"]
    }
    p = cfg.ports
    assert _targets(Path(files["otel-collector"])) == [f"127.0.0.1:{p.collector_prometheus}"]
    assert _targets(Path(files["jaeger"])) == [f"127.0.0.1:{p.jaeger_metrics}"]
    alerting = doc["alerting"]["alertmanagers"][0]["file_sd_configs"][0]["files"][0]
    assert _targets(Path(alerting)) == [f"127.0.0.1:{p.alertmanager}"]
    # Everything else is the shipped file's.
    shipped = yaml.safe_load(render.PROMETHEUS_YML.read_text())
    assert doc["global"] == shipped["global"]


def test_default_ports_render_what_the_shipped_files_say(tmp_path: Path) -> None:
    ports = components.Ports()
    doc = yaml.safe_load(render.prometheus_config(tmp_path, ports).read_text())
    for job in doc["scrape_configs"]:
        rendered = Path(job["file_sd_configs"][0]["files"][0])
        shipped = render.PROMETHEUS_YML.parent / "targets" / rendered.name
        assert _targets(rendered) == _targets(shipped)
    assert doc["rule_files"] == [f"{render.PROMETHEUS_YML.parent / 'rules'}/*.yml"]
    am = yaml.safe_load(render.alertmanager_config(tmp_path, ports).read_text())
    assert am == yaml.safe_load(render.ALERTMANAGER_YML.read_text())


def test_alertmanager_webhook_url_follows_the_webhook_port(cfg: components.StackConfig) -> None:
    doc = yaml.safe_load(render.alertmanager_config(cfg.run_dir, cfg.ports).read_text())
    urls = [h["url"] for r in doc["receivers"] for h in r.get("webhook_configs", [])]
    assert urls == [f"http://127.0.0.1:{cfg.ports.webhook}/alerts"]


def test_an_address_outside_the_stack_is_refused() -> None:
    with pytest.raises(ValueError, match="not a native stack address"):
        render.restack_address("10.0.0.1:9093", render.port_map(components.Ports()))


# --------------------------------------------------------------------------- processes

SLEEPER = "import threading; threading.Event().wait(300)"  # a child that only has to live
# The leader starts a child in its own process group, then exits: the child is left behind.
ORPHANER = (
    "import subprocess, sys; "
    f"subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]); print('child started', flush=True)"
)


def test_supervisor_starts_reports_and_stops_a_real_receiver(
    cfg: components.StackConfig,
) -> None:
    webhook = components.resolve(components.SPECS["alert-webhook"], cfg)
    supervisor = Supervisor(cfg.run_dir)
    (record,) = supervisor.start([webhook], say=quiet)
    assert port_open(cfg.ports.webhook)

    # Another command reads the state file and finds the same, live process.
    (again,) = Supervisor(cfg.run_dir).recorded()
    assert again.pid == record.pid and again.is_alive()
    status = _cli("status", cfg.run_dir)
    assert status.returncode == 0, status.stderr
    assert "alert-webhook" in status.stdout and "running" in status.stdout
    assert "healthy" in status.stdout

    down = _cli("down", cfg.run_dir)
    assert down.returncode == 0, down.stderr
    assert "no process or port left behind" in down.stdout
    assert gone(record.pid)
    assert not port_open(cfg.ports.webhook)
    assert not (cfg.run_dir / "stack.json").exists()


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    me = psutil.Process()
    stranger = Running("x", me.pid, me.create_time() - 1000, [], None, "", {})
    assert not stranger.is_alive()
    assert stranger.group() == []


def test_stop_also_ends_what_an_exited_leader_left_behind(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    leader = Process("orphaner", [sys.executable, "-c", ORPHANER], may_exit=True)
    (record,) = supervisor.start([leader], say=quiet)
    assert until(lambda: not record.is_alive())
    assert until(lambda: len(record.group()) == 1), "the child should still run"
    (child,) = record.group()

    supervisor.stop(say=quiet)

    assert until(lambda: gone(child.pid))
    assert record.group() == []


def test_a_failed_start_stops_what_was_started(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    sleeper = Process("sleeper", [sys.executable, "-c", SLEEPER])
    broken = Process(
        "broken",
        [sys.executable, "-c", "import sys; print('boom', flush=True); sys.exit(3)"],
        ready_url=f"http://127.0.0.1:{port}/",
        depends_on=("sleeper",),
    )
    supervisor = Supervisor(tmp_path)
    with pytest.raises(SupervisorError, match=r"broken exited with code 3") as failure:
        supervisor.start([broken, sleeper], say=quiet)
    assert "boom" in str(failure.value)
    for name in ("sleeper", "broken"):
        assert gone(int((tmp_path / f"{name}.pid").read_text())), name
    assert supervisor.recorded() == []


def test_wait_ready_names_a_process_that_never_answers(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    log = tmp_path / "sleeper.log"
    log.write_text("starting\n")
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER])
    try:
        with pytest.raises(NotReady, match=r"sleeper not ready after 1s .*ConnectError"):
            wait_ready(f"http://127.0.0.1:{port}/", proc, log, timeout_s=1, name="sleeper")
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- the rest


def test_a_binary_named_in_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "promtool"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PROMTOOL_BIN", str(fake))
    assert find_binary("PROMTOOL_BIN") == str(fake)
    monkeypatch.setenv("PROMTOOL_BIN", str(tmp_path / "absent"))
    assert find_binary("PROMTOOL_BIN") != str(tmp_path / "absent")


def _cli(command: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.native", command],
        cwd=REPO,
        env={**os.environ, "MODELOBS_RUN_DIR": str(run_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_status_of_a_stack_that_is_not_running(tmp_path: Path) -> None:
    result = _cli("status", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not running" in result.stdout
