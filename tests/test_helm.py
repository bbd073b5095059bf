"""The Helm chart (deploy/helm/modelobs), checked as far as real tools go without a cluster:
the real `helm` lints and renders it under several value sets, every rendered object is
decoded strictly into the k8s.io/api types (deploy/helm/check), every collector config in
its ConfigMaps passes the real `otelcol validate` with the environment its pod would get,
and the objects fit together (selectors, ports, probes, the agents' resolver)."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.native import REPO

from ._native_bins import otelcol_validate, require_binary

CHART = REPO / "deploy" / "helm" / "modelobs"
VALUE_SETS = {"default": None, **{p.stem: p for p in sorted((CHART / "ci").glob("*.yaml"))}}
RELEASE, NAMESPACE = "obs", "ml"
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")
# What the downward API would give the pods (POD_NAME, ...): any value of the right shape.
DOWNWARD = {"metadata.name": "pod-0", "metadata.namespace": NAMESPACE, "spec.nodeName": "node-a"}


def run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def helm() -> str:
    return require_binary("HELM_BIN", "helm")


def values_args(value_set: str) -> list[str]:
    path = VALUE_SETS[value_set]
    return ["--values", str(path)] if path else []


@functools.cache
def rendered_text(value_set: str) -> str:
    result = run(
        [helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args(value_set)]
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def rendered(value_set: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered_text(value_set)) if doc]


def of_kind(objects: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in kinds]


def named(objects: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: downward-API fields filled, a
    Secret's value a placeholder, and $(VAR) references to earlier variables expanded."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        source = var.get("valueFrom", {})
        if "secretKeyRef" in source:  # any value: the Secret is the operator's
            env[var["name"]] = f"<secret {source['secretKeyRef']['name']}>"
        elif source:
            env[var["name"]] = DOWNWARD[source["fieldRef"]["fieldPath"]]
        else:
            env[var["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), str(var["value"])
            )
    return env


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


# --------------------------------------------------------------------------- the tools


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_passes(value_set: str) -> None:
    result = run([helm(), "lint", "--strict", str(CHART), *values_args(value_set)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_decodes_strictly_into_the_kubernetes_types(value_set: str) -> None:
    result = run([require_binary("K8SCHECK_BIN", "k8scheck")], stdin=rendered_text(value_set))
    assert result.returncode == 0, result.stderr
    expected = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in rendered(value_set))
    assert sorted(result.stdout.split()) == expected


def test_the_checker_rejects_a_field_the_api_does_not_have() -> None:
    text = rendered_text("default")
    assert text.count("readOnlyRootFilesystem: true") >= 4
    broken = text.replace("readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", 1)
    result = run([require_binary("K8SCHECK_BIN", "k8scheck")], stdin=broken)
    assert result.returncode == 1
    # Case-sensitive, as the API server decodes (encoding/json alone would accept it).
    field = "spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem"
    assert f'unknown field "{field}"' in result.stderr, result.stderr


def test_values_with_a_misspelt_key_are_refused() -> None:
    result = run([helm(), "template", RELEASE, str(CHART), "--set", "modelService.replica=3"])
    assert result.returncode != 0
    assert "replica" in result.stderr, result.stderr


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_collector_configs_validate_with_their_pods_environment(
    value_set: str, tmp_path: Path
) -> None:
    objects = rendered(value_set)
    validated = []
    for workload in of_kind(objects, *WORKLOADS):
        pod = workload["spec"]["template"]["spec"]
        config_maps = {
            v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v
        }
        for container in pod["containers"]:
            config_args = [a for a in container.get("args", []) if a.startswith("--config=")]
            if not config_args:
                continue
            mounted = Path(config_args[0].removeprefix("--config="))
            mount = next(
                m for m in container["volumeMounts"] if m["mountPath"] == str(mounted.parent)
            )
            config_map = named(objects, "ConfigMap", config_maps[mount["name"]])
            config = tmp_path / f"{workload['metadata']['name']}-{mounted.name}"
            config.write_text(config_map["data"][mounted.name])
            env = container_env(container)
            # The pod's queue directory is a volume; here a writable temporary one.
            env["COLLECTOR_STORAGE_DIR"] = str(tmp_path / "storage")
            result = otelcol_validate(config, env)
            assert result.returncode == 0, f"{workload['metadata']['name']}: {result.stderr}"
            validated.append(mounted.name)
    assert sorted(validated) == ["agent.yaml", "gateway.yaml"]


def test_chart_configs_are_the_repository_collector_configs() -> None:
    for name in ("agent.yaml", "gateway.yaml"):
        chart_copy = (CHART / "files" / name).read_bytes()
        assert chart_copy == (REPO / "otel-collector" / name).read_bytes(), (
            f"deploy/helm/modelobs/files/{name} differs from otel-collector/{name}: copy it over"
        )


# --------------------------------------------------------------------------- the objects


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_workloads_are_non_root_with_limits_and_probes(value_set: str) -> None:
    for workload in of_kind(rendered(value_set), *WORKLOADS):
        name = workload["metadata"]["name"]
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, name
            port_names = {p["name"] for p in container["ports"]}
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in port_names, (name, probe)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_collector_memory_limiter_sits_below_the_container_limit(value_set: str) -> None:
    for workload in of_kind(rendered(value_set), *WORKLOADS):
        for container in containers(workload):
            env = container_env(container)
            if "COLLECTOR_MEMORY_LIMIT_MIB" not in env:
                continue
            limit = mebibytes(container["resources"]["limits"]["memory"])
            limiter = int(env["COLLECTOR_MEMORY_LIMIT_MIB"])
            assert 0.6 * limit <= limiter <= 0.85 * limit, workload["metadata"]["name"]
            assert int(env["GOMEMLIMIT"].removesuffix("MiB")) <= limiter


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_service_reaches_pods_on_named_ports(value_set: str) -> None:
    objects = rendered(value_set)
    pods = [w["spec"]["template"] for w in of_kind(objects, *WORKLOADS)]
    for service in of_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        matching = [p for p in pods if selector.items() <= p["metadata"]["labels"].items()]
        assert len(matching) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in matching[0]["spec"]["containers"] for p in c["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_agents_route_to_the_headless_gateway_service(value_set: str) -> None:
    objects = rendered(value_set)
    agent = of_kind(objects, "DaemonSet")[0]
    resolver = yaml.safe_load(container_env(containers(agent)[0])["GATEWAY_RESOLVER"])
    headless = named(objects, "Service", "-gateway-collector-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert resolver["dns"] == {
        "hostname": f"{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local",
        "port": "4317",
        "interval": "5s",
    }
    assert [p["port"] for p in headless["spec"]["ports"]] == [4317]
    gateways = named(objects, "Deployment", "-gateway-collector")
    assert (
        headless["spec"]["selector"].items()
        <= gateways["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_services_send_to_the_agent_on_their_node(value_set: str) -> None:
    objects = rendered(value_set)
    agent_service = named(objects, "Service", "-agent-collector")
    assert agent_service["spec"]["internalTrafficPolicy"] == "Local"
    endpoint = f"http://{agent_service['metadata']['name']}:4317"
    for suffix in ("-model-service", "-gateway"):
        env = container_env(containers(named(objects, "Deployment", suffix))[0])
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint, suffix
        assert env["OTEL_SERVICE_NAME"] == suffix.removeprefix("-")


def test_values_reach_the_objects() -> None:
    values = yaml.safe_load(VALUE_SETS["scaled-values"].read_text())  # type: ignore[union-attr]
    objects = rendered("scaled-values")
    replicas = {
        "-model-service": values["modelService"]["replicas"],
        "-gateway": values["gateway"]["replicas"],
        "-gateway-collector": values["gatewayCollector"]["replicas"],
    }
    for suffix, count in replicas.items():
        assert named(objects, "Deployment", suffix)["spec"]["replicas"] == count
    gateway_env = container_env(containers(named(objects, "Deployment", "-gateway-collector"))[0])
    assert gateway_env["JAEGER_OTLP_ENDPOINT"] == values["backends"]["jaeger"]["otlpEndpoint"]
    assert gateway_env["LOGS_OTLP_ENDPOINT"] == values["backends"]["logs"]["otlpEndpoint"]
    assert gateway_env["TAIL_SAMPLING_PERCENT"] == str(
        values["gatewayCollector"]["tailSampling"]["percent"]
    )
    queue = next(
        v
        for v in of_kind(objects, "DaemonSet")[0]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "queue"
    )
    assert queue["hostPath"]["path"] == values["agentCollector"]["queue"]["hostPath"]
    pdb = named(objects, "PodDisruptionBudget", "-gateway-collector")
    assert (
        pdb["spec"]["minAvailable"]
        == values["gatewayCollector"]["podDisruptionBudget"]["minAvailable"]
    )
    assert not of_kind(rendered("minimal-values"), "PodDisruptionBudget")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_terminating_gateways_drain_their_decision_window(value_set: str) -> None:
    """A terminating gateway leaves the DNS answers (agents re-resolve every 5 s), then
    decides what it holds (decision wait + the 1 s decision tick) before SIGTERM."""
    gateways = named(rendered(value_set), "Deployment", "-gateway-collector")
    pod = gateways["spec"]["template"]["spec"]
    container = pod["containers"][0]
    drain = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    decision_wait = container_env(container)["TAIL_SAMPLING_DECISION_WAIT"]
    assert decision_wait.endswith("s") and not decision_wait.endswith("ms"), decision_wait
    assert drain >= 5 + int(decision_wait.removesuffix("s")) + 1
    assert pod["terminationGracePeriodSeconds"] > drain


def chart_values(value_set: str) -> dict[str, Any]:
    """The chart's values.yaml with the value set's file laid over it (one level deep)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    path = VALUE_SETS[value_set]
    for key, value in (yaml.safe_load(path.read_text()) if path else {}).items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    return values


def milliseconds(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 1, "s": 1000, "m": 60000}[unit]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_gateways_run_our_distribution_with_the_journal_on_a_volume(value_set: str) -> None:
    """The gateways need trace_journal (gateway.yaml), which only our image has; its
    directory is a volume big enough for max_bytes, and it outlives the decision window."""
    values = chart_values(value_set)
    gateway = named(rendered(value_set), "Deployment", "-gateway-collector")
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    image = values["gatewayCollector"]["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"
    agent = containers(of_kind(rendered(value_set), "DaemonSet")[0])[0]
    assert agent["image"] != container["image"]

    env = container_env(container)
    directory = load_gateway_config()["processors"]["trace_journal"]["directory"]
    journal_dir = directory.replace(
        "${env:COLLECTOR_STORAGE_DIR:-/var/lib/otelcol/storage}", env["COLLECTOR_STORAGE_DIR"]
    )
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == journal_dir]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mebibytes(volume["emptyDir"]["sizeLimit"]) * 2**20 > int(env["TRACE_JOURNAL_MAX_BYTES"])
    assert (
        int(env["TRACE_JOURNAL_MAX_BYTES"])
        == values["gatewayCollector"]["traceJournal"]["maxMiB"] * 2**20
    )
    retention = milliseconds(env["TRACE_JOURNAL_RETENTION"])
    assert retention >= milliseconds(env["TAIL_SAMPLING_DECISION_WAIT"]) + 2500
    assert env["TRACE_JOURNAL_RETENTION"] == values["gatewayCollector"]["traceJournal"]["retention"]


def load_gateway_config() -> dict[str, Any]:
    return yaml.safe_load((CHART / "files" / "gateway.yaml").read_text())


def test_a_journal_shorter_than_the_decision_window_is_refused() -> None:
    result = run(
        [
            helm(),
            "template",
            RELEASE,
            str(CHART),
            "--set",
            "gatewayCollector.tailSampling.decisionWait=30s",
            "--set",
            "gatewayCollector.traceJournal.retention=30s",
        ]
    )
    assert result.returncode != 0
    assert "gatewayCollector.traceJournal.retention (30s)" in result.stderr, result.stderr
