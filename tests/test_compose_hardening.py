"""Static security checks of docker-compose.yml and the Dockerfile (no Docker engine here:
the files are parsed, not run), and the image tags that must exist:

* secrets only from the environment (.env), never in the files or the image
* every container non-root (one exemption, with its reason and no capability but CHOWN),
  with a read-only root filesystem, no capabilities, no-new-privileges and a memory limit
* the collector's OTLP receivers published on loopback only, no host networking
* the collector, Jaeger and Alertmanager image tags are the releases of the Go modules the
  native stack builds (Prometheus: tests/test_compose.py); every other image tag (Grafana,
  Loki, busybox, the Python and Go bases) is cited with its release in the README
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
# Our collector distribution's image (the gateway collectors in the Helm chart).
COLLECTOR_DOCKERFILE = (REPO / "otel-collector" / "Dockerfile").read_text()
README = (REPO / "README.md").read_text()

# The one container that starts as root, and why.
ROOT_EXEMPT = {"probe-tools": "hands the named volumes to uid 10001 (chown) at first start"}
MEMORY = re.compile(r"^(\d+)([kmg])$", re.IGNORECASE)
GO_BUILT = (
    "otel/opentelemetry-collector-contrib",
    "jaegertracing/jaeger",
    "prom/prometheus",
    "prom/alertmanager",
)
MODELOBS_IMAGES = ("modelobs/",)


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return {k: "" if v is None else str(v) for k, v in env.items()}


@pytest.mark.parametrize("name", SERVICES)
def test_container_runs_as_non_root(name: str) -> None:
    service = SERVICES[name]
    user = str(service.get("user", ""))
    if name in ROOT_EXEMPT:
        assert set(service.get("cap_drop", [])) == {"ALL"}, name
        assert set(service.get("cap_add", [])) <= {"CHOWN"}, name
        return
    assert user, f"{name}: no user: (the image's default may be root)"
    uid = user.split(":", 1)[0]
    assert uid not in ("0", "root"), f"{name} runs as root"
    assert uid.isdigit(), f"{name}: numeric uid, so the check cannot be fooled by a name"


@pytest.mark.parametrize("name", SERVICES)
def test_container_is_locked_down(name: str) -> None:
    service = SERVICES[name]
    assert service.get("read_only") is True, f"{name}: root filesystem not read-only"
    assert "ALL" in service.get("cap_drop", []), f"{name}: capabilities not dropped"
    assert "no-new-privileges:true" in service.get("security_opt", []), name
    assert service.get("privileged") is not True, name
    assert service.get("network_mode") != "host", f"{name}: host networking"


@pytest.mark.parametrize("name", SERVICES)
def test_container_has_a_memory_limit(name: str) -> None:
    limit = SERVICES[name].get("mem_limit")
    assert limit, f"{name}: no mem_limit"
    match = MEMORY.match(str(limit))
    assert match and int(match.group(1)) > 0, f"{name}: mem_limit {limit!r}"


def test_gomemlimit_under_the_container_limit() -> None:
    factor = {"k": 2**10, "m": 2**20, "g": 2**30}
    for name, service in SERVICES.items():
        gomemlimit = _env(service).get("GOMEMLIMIT")
        if not gomemlimit:
            continue
        number, unit = re.fullmatch(r"(\d+)(MiB|GiB)", gomemlimit).groups()  # type: ignore[union-attr]
        soft = int(number) * (2**20 if unit == "MiB" else 2**30)
        size, suffix = MEMORY.match(SERVICES[name]["mem_limit"]).groups()  # type: ignore[union-attr]
        assert soft < int(size) * factor[suffix.lower()], name


def test_collector_receivers_are_published_on_loopback_only() -> None:
    published = {}
    for port in SERVICES["otel-collector"].get("ports", []):
        host_ip, _host_port, container_port = str(port).split(" ")[0].rsplit(":", 2)
        published[container_port] = host_ip
    assert published.get("4317") == "127.0.0.1" and published.get("4318") == "127.0.0.1"
    assert set(published.values()) == {"127.0.0.1"}
    for name, service in SERVICES.items():
        assert not service.get("expose") or name != "otel-collector"


def test_secrets_come_from_the_environment_only() -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (REPO / "docker-compose.yml").read_text()))
    assert {"GRAFANA_ADMIN_PASSWORD", "MODELOBS_API_KEY"} <= required
    for name in ("gateway", "model-service", "load"):
        assert _env(SERVICES[name])["MODELOBS_API_KEY"].startswith("${MODELOBS_API_KEY:?"), name
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^MODELOBS_API_KEY=$", example, re.M), ".env.example must ship no key"
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert not tracked.strip(), ".env is committed"
    # Nothing secret baked into the image.
    for line in DOCKERFILE.splitlines():
        if re.match(r"^\s*(ENV|ARG)\b", line):
            assert not re.search(r"PASSWORD|TOKEN|SECRET|API_?KEY", line, re.I), line


def test_the_service_image_runs_as_its_own_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")


# ----------------------------------------------------------------------- image tags


def _image(name: str) -> str:
    return SERVICES[name]["image"]


def _tag(image: str) -> str:
    return image.rsplit(":", 1)[1]


def test_collector_image_is_the_release_built_natively() -> None:
    manifest = yaml.safe_load((REPO / "otel-collector" / "manifest.yaml").read_text())
    versions = {
        entry["gomod"].split()[1]
        for kind in ("receivers", "processors", "exporters", "extensions", "connectors")
        for entry in manifest.get(kind) or []
        # Not our own components (a `path:` in the repository, a placeholder version).
        if entry["gomod"].split()[1].startswith("v0.") and "path" not in entry
    }
    assert len(versions) == 1, f"collector modules at several releases: {versions}"
    assert _tag(_image("otel-collector")) == versions.pop().removeprefix("v")


def _go_module_version(build_dir: str, module: str) -> str:
    gomod = (REPO / "deploy" / build_dir / "build" / "go.mod").read_text()
    match = re.search(rf"^\s*{re.escape(module)} (v\S+)", gomod, re.M)
    assert match, f"deploy/{build_dir}/build/go.mod does not pin {module}"
    return match.group(1)


def test_alertmanager_image_is_the_release_built_natively() -> None:
    version = _go_module_version("alertmanager", "github.com/prometheus/alertmanager")
    assert _tag(_image("alertmanager")) == version


def test_jaeger_image_is_the_release_built_natively() -> None:
    """Jaeger releases v1.x (the Go module) and v2.y (the image) together; its changelog
    pairs them ("v1.76.0 / v2.13.0"): read it from the module the native build uses."""
    version = _go_module_version("jaeger", "github.com/jaegertracing/jaeger")
    downloaded = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/jaegertracing/jaeger@{version}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO / "deploy" / "jaeger" / "build",
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        check=False,
    )
    assert downloaded.returncode == 0, downloaded.stderr[-1000:]
    changelog = Path(json.loads(downloaded.stdout)["Dir"]) / "CHANGELOG.md"
    pair = re.search(rf"^{re.escape(version)} / v(2\.\d+\.\d+)", changelog.read_text(), re.M)
    assert pair, f"Jaeger's CHANGELOG pairs no v2 release with {version}"
    assert _tag(_image("jaeger")) == pair.group(1)


def _other_images() -> set[str]:
    compose_images = {svc["image"] for svc in SERVICES.values()}
    base_images = set(re.findall(r"^FROM\s+(\S+:\S+)", DOCKERFILE + COLLECTOR_DOCKERFILE, re.M))
    return {
        image
        for image in compose_images | base_images
        if not image.startswith(GO_BUILT + MODELOBS_IMAGES)
    }


def test_every_other_image_tag_is_cited_in_the_readme() -> None:
    others = _other_images()
    assert {i.split(":")[0] for i in others} >= {"grafana/grafana", "grafana/loki", "busybox"}
    section = README.split("### Image tags", 1)
    assert len(section) == 2, "README has no '### Image tags' section"
    rows = [line for line in section[1].split("\n## ", 1)[0].splitlines() if line.startswith("| `")]
    cited = {re.match(r"\| `([^`]+)`", row).group(1): row for row in rows}  # type: ignore[union-attr]
    missing = others - set(cited)
    assert not missing, f"image tags with no citation in the README: {sorted(missing)}"
    for image in others:
        assert re.search(r"\d{4}-\d{2}(-\d{2})?", cited[image]), f"{image}: no release date"
