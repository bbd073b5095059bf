"""otel-collector/Dockerfile, our collector distribution's image (the Helm chart's gateway
collectors run it for trace_journal), checked statically (no Docker engine here): it builds
the committed manifest with ocb at the manifest's release and our components beside it,
into a static binary in an image that runs as a non-root user."""

from __future__ import annotations

import re

import yaml
from deploy.native import REPO

COLLECTOR_DIR = REPO / "otel-collector"
DOCKERFILE = (COLLECTOR_DIR / "Dockerfile").read_text()


def stages() -> list[str]:
    """The Dockerfile's stages, each from its FROM line on."""
    return re.split(r"^(?=FROM )", DOCKERFILE, flags=re.M)[1:]


def manifest_release() -> str:
    manifest = yaml.safe_load((COLLECTOR_DIR / "manifest.yaml").read_text())
    return {
        e["gomod"].split()[1]
        for e in manifest["processors"]
        if e["gomod"].startswith("go.opentelemetry.io/collector/")
    }.pop()


def test_ocb_is_the_manifest_release_as_in_build_sh() -> None:
    ocb = re.search(r"^ARG OCB_VERSION=(\S+)", DOCKERFILE, re.M)
    build_sh = re.search(r'^OCB_VERSION="(\S+)"', (COLLECTOR_DIR / "build.sh").read_text(), re.M)
    assert ocb and build_sh
    assert ocb.group(1) == build_sh.group(1) == manifest_release()


def test_it_builds_the_manifest_with_our_components() -> None:
    build = stages()[0]
    assert re.search(r"^COPY manifest\.yaml ", build, re.M)
    manifest = yaml.safe_load((COLLECTOR_DIR / "manifest.yaml").read_text())
    local = [e["path"] for e in manifest["processors"] if "path" in e]
    assert local, "the manifest has no local component"
    for path in local:
        top = path.removeprefix("./").split("/")[0]
        assert re.search(rf"^COPY {top} \./{top}$", build, re.M), path
    assert "builder --config manifest.yaml --skip-compilation" in build
    assert "CGO_ENABLED=0 go build -trimpath" in build


def test_go_base_is_at_least_the_go_the_builds_need() -> None:
    tools = (REPO / "deploy" / "lib" / "tools.sh").read_text()
    needed = re.search(r'^GO_MIN_VERSION="(\d+)\.(\d+)"', tools, re.M)
    base = re.search(r"^FROM golang:(\d+)\.(\d+)\.\d+-\S+ AS build", DOCKERFILE, re.M)
    assert needed and base
    assert tuple(map(int, base.groups())) >= tuple(map(int, needed.groups()))


def test_runtime_is_the_static_binary_as_a_non_root_user() -> None:
    runtime = stages()[-1]
    assert runtime.startswith("FROM scratch")
    user = re.findall(r"^USER (\d+):(\d+)$", runtime, re.M)
    assert user and all(int(i) > 0 for i in user[-1])
    entry = re.search(r'^ENTRYPOINT \["(\S+)"\]', runtime, re.M)
    assert entry and re.search(
        rf"^COPY --from=build \S+ {re.escape(entry.group(1))}$", runtime, re.M
    )
    # The storage directory (persistent queues, trace journal) belongs to that user.
    assert re.search(rf"--chown={user[-1][0]}:{user[-1][1]} \S+ /var/lib/otelcol/storage", runtime)
