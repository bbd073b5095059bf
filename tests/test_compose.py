"""Static checks of docker-compose.yml (no Docker engine here: the file is parsed, not run).

* every bind-mounted host file or directory exists in the repository
* every image is pinned: a tag that is not `latest`, or a digest
* every published port is bound to 127.0.0.1
* no literal secrets: values of password/token/key/secret variables are ${VAR} references
* every service has a health check, and every depends_on waits for service_healthy
* the collector gets the endpoint variables otel-collector/config.yaml reads, and shares its
  tail-sampling variables with the services; Jaeger's Monitor tab reads compose's Prometheus
* Prometheus' image version matches the Go module the native stack builds
* only the load generator builds the Dockerfile's `loadgen` target; the rest get the
  default `service` stage, which leaves the load generator out
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|TOKEN|SECRET|API_?KEY|PRIVATE_?KEY)", re.IGNORECASE)
VAR_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict:
    assert COMPOSE_FILE.is_file(), "docker-compose.yml missing"
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    assert compose.get("services"), "no services"
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            key, _, value = str(item).partition("=")
            out[key] = value
        return out
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _volumes(service: dict) -> list[tuple[str, str]]:
    """(source, target) of every volume entry, short or long syntax."""
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, dict):
            out.append((str(vol.get("source", "")), str(vol.get("target", ""))))
        else:
            parts = str(vol).split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return out


def test_expected_services_present(services):
    expected = {
        "otel-collector",
        "jaeger",
        "prometheus",
        "alertmanager",
        "loki",
        "grafana",
        "model-service",
        "gateway",
        "load",
        "alert-webhook",
    }
    missing = expected - set(services)
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_bind_mounts_exist(compose, services):
    named = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for source, target in _volumes(svc):
            if source.startswith((".", "/")):
                path = (REPO / source).resolve() if source.startswith(".") else Path(source)
                assert path.exists(), f"{name}: mounted host path {source} -> {target} missing"
                assert REPO in path.parents or path == REPO, (
                    f"{name}: bind mount {source} points outside the repository"
                )
            else:
                assert source in named, f"{name}: volume {source!r} is not a declared named volume"


def test_images_pinned(services):
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name}: no image (services that build must also name a pinned image)"
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        assert ":" in last, f"{name}: image {image} has no tag"
        tag = last.split(":", 1)[1]
        assert tag and tag != "latest", f"{name}: image {image} is not pinned"
        assert not re.fullmatch(r"v?\d+", tag), f"{name}: image {image}: a major-only tag floats"


def test_ports_bound_to_loopback(services):
    for name, svc in services.items():
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: port {port} not on 127.0.0.1"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} not on 127.0.0.1"


def test_no_literal_secrets(services):
    for name, svc in services.items():
        for key, value in _env(svc).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                assert VAR_REF.match(value), (
                    f"{name}: {key} must be a ${{VAR}} reference (from .env), not a literal"
                )
    grafana = _env(services["grafana"])
    assert grafana.get("GF_SECURITY_ADMIN_PASSWORD", "").startswith("${GRAFANA_ADMIN_PASSWORD:?"), (
        "Grafana's admin password must be required from .env (${GRAFANA_ADMIN_PASSWORD:?...})"
    )


def test_env_example_lists_required_variables():
    example = REPO / ".env.example"
    assert example.is_file(), ".env.example missing"
    text = example.read_text()
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", COMPOSE_FILE.read_text()))
    for var in required:
        assert re.search(rf"^{var}=", text, re.MULTILINE), f".env.example does not list {var}"
    assert not re.search(r"^GRAFANA_ADMIN_PASSWORD=\S", text, re.MULTILINE), (
        ".env.example must not ship a Grafana password"
    )


def test_healthchecks_present(services):
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable"), f"{name}: no health check"
        test = hc.get("test")
        assert test and test != ["NONE"], f"{name}: empty health check"


def test_depends_on_waits_for_healthy(services):
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        assert isinstance(deps, dict), (
            f"{name}: depends_on must use the long form with condition: service_healthy"
        )
        for dep, spec in deps.items():
            assert dep in services, f"{name}: depends on unknown service {dep}"
            assert (spec or {}).get("condition") == "service_healthy", (
                f"{name}: depends_on {dep} must use condition: service_healthy"
            )


def test_collector_gets_the_variables_its_config_reads(services):
    config = (REPO / "otel-collector" / "config.yaml").read_text()
    read = set(re.findall(r"\$\{env:([A-Z0-9_]+)", config))
    env = _env(services["otel-collector"])
    for var in ("JAEGER_OTLP_ENDPOINT", "LOGS_OTLP_ENDPOINT"):
        assert var in read, f"otel-collector/config.yaml no longer reads {var}"
        assert var in env, f"otel-collector service does not set {var}"
    unknown = {k for k in env if k not in read and k != "GOMEMLIMIT"}
    assert not unknown, f"collector env sets variables its config does not read: {sorted(unknown)}"
    mounts = dict(_volumes(services["otel-collector"]))
    assert mounts.get("./otel-collector/config.yaml"), (
        "collector must mount otel-collector/config.yaml"
    )


def test_collector_and_services_share_the_tail_sampling_policy(services):
    # The services' exemplar filter (telemetry/exemplars.py) must mirror the collector.
    policy = {k: v for k, v in _env(services["otel-collector"]).items() if k.startswith("TAIL_")}
    assert set(policy) == {
        "TAIL_SAMPLING_PERCENT",
        "TAIL_SAMPLING_LATENCY_MS",
        "TAIL_SAMPLING_HASH_SALT",
    }
    for name in ("model-service", "gateway"):
        env = _env(services[name])
        assert {k: env.get(k) for k in policy} == policy, name


def test_jaeger_monitor_tab_reads_compose_prometheus(services):
    config = (REPO / "deploy" / "jaeger" / "config.yaml").read_text()
    assert "${env:JAEGER_PROMETHEUS_URL" in config
    assert _env(services["jaeger"]).get("JAEGER_PROMETHEUS_URL") == "http://prometheus:9090"


def test_services_use_otlp_env(services):
    for name in ("model-service", "gateway"):
        env = _env(services[name])
        assert env.get("OTEL_EXPORTER_OTLP_ENDPOINT") == "http://otel-collector:4317", name
        assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == "grpc", name
        assert env.get("OTEL_SEMCONV_STABILITY_OPT_IN") == "http", name
        assert env.get("OTEL_METRIC_EXPORT_INTERVAL") == "5000", name


def test_prometheus_image_matches_built_module(services):
    gomod = REPO / "deploy" / "prometheus" / "build" / "go.mod"
    assert gomod.is_file(), "deploy/prometheus/build/go.mod (the pinned Prometheus) is missing"
    match = re.search(r"github\.com/prometheus/prometheus v0\.(\d+)\.(\d+)", gomod.read_text())
    assert match, "no github.com/prometheus/prometheus in deploy/prometheus/build/go.mod"
    minor_code, patch = match.groups()  # v0.316.0 == Prometheus 3.16.0
    expected = f"v{minor_code[0]}.{int(minor_code[1:])}.{patch}"
    image = services["prometheus"]["image"]
    assert image.endswith(f":{expected}"), f"prometheus image {image}, module builds {expected}"


def test_same_config_files_as_native_stack(services):
    mounts = {svc: dict(_volumes(services[svc])) for svc in services}
    assert "./deploy/prometheus/prometheus.yml" in mounts["prometheus"]
    assert "./deploy/prometheus/rules" in mounts["prometheus"]
    assert "./deploy/jaeger/config.yaml" in mounts["jaeger"]
    assert "./dashboards" in mounts["grafana"]
    assert "./deploy/grafana/provisioning" in mounts["grafana"]


def test_only_the_load_generator_builds_the_loadgen_target(services):
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", DOCKERFILE.read_text(), re.M | re.I)
    assert stages and stages[-1] == "service", "the default (last) stage must be the server"
    built = {name: svc["build"] for name, svc in services.items() if svc.get("build")}
    assert "load" in built and "model-service" in built
    for name, build in built.items():
        target = build.get("target") if isinstance(build, dict) else None
        if name == "load":
            assert target == "loadgen" and target in stages, f"load builds {target!r}"
            assert services[name]["image"] != services["model-service"]["image"]
        else:
            assert target in (None, "service"), f"{name}: builds {target!r}, not the server"
