"""The Helm chart's monitor and replicas: with a shared PostgreSQL store, one monitor pod
(never two at once) reads it and the model-service replicas run with their monitor off;
without one, the chart renders no monitor and refuses more than one model-service process.
Rendered by the real `helm` (tests/test_helm.py has the lint and strict-decode checks,
which cover these objects under every value set)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from .test_helm import (
    CHART,
    NAMESPACE,
    RELEASE,
    VALUE_SETS,
    containers,
    helm,
    named,
    of_kind,
    rendered,
    run,
)


def env_of(workload: dict[str, Any]) -> dict[str, Any]:
    """Name → value, or the valueFrom source for variables taken from elsewhere."""
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in containers(workload)[0]["env"]}


def render_with(*sets: str) -> subprocess.CompletedProcess[str]:
    argv = [helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        argv += ["--set", item]
    return run(argv)


def test_default_values_run_one_monitor_over_the_shared_store() -> None:
    objects = rendered("default")
    monitor = named(objects, "Deployment", "-model-monitor")
    model = named(objects, "Deployment", "-model-service")
    assert monitor["spec"]["replicas"] == 1
    assert monitor["spec"]["strategy"] == {"type": "Recreate"}
    [container] = containers(monitor)
    assert container["args"][:2] == ["serve", "monitor"]
    [init] = monitor["spec"]["template"]["spec"]["initContainers"]
    assert init["args"][0] == "train"
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    monitor_env, model_env = env_of(monitor), env_of(model)
    assert monitor_env["OTEL_SERVICE_NAME"] == "model-monitor"
    assert monitor_env["MODELOBS_PREDICTION_DB"].startswith("postgresql://")
    assert model_env["MODELOBS_PREDICTION_DB"] == monitor_env["MODELOBS_PREDICTION_DB"]
    assert model_env["MODELOBS_MONITOR"] == "off"
    assert named(objects, "Service", "-model-monitor")["spec"]["ports"][0]["port"] == 8002


def test_scaled_values_reach_the_monitor_and_the_replicas() -> None:
    values = yaml.safe_load(VALUE_SETS["scaled-values"].read_text())  # type: ignore[union-attr]
    objects = rendered("scaled-values")
    model = named(objects, "Deployment", "-model-service")
    args = containers(model)[0]["args"]
    assert args[args.index("--workers") + 1] == str(values["modelService"]["workers"])
    secret = {"secretKeyRef": {"name": values["predictionStore"]["existingSecret"], "key": "url"}}
    monitor = named(objects, "Deployment", "-model-monitor")
    for workload in (model, monitor):
        assert env_of(workload)["MODELOBS_PREDICTION_DB"] == secret
    assert env_of(monitor)["MODELOBS_DRIFT_WINDOW"] == "5000"
    assert containers(monitor)[0]["ports"][0]["containerPort"] == values["monitor"]["port"]


def test_one_process_keeps_sqlite_and_its_monitor_inside() -> None:
    objects = rendered("minimal-values")
    assert not [o for o in objects if o["metadata"]["name"].endswith("-model-monitor")]
    model_env = env_of(named(objects, "Deployment", "-model-service"))
    assert model_env["MODELOBS_PREDICTION_DB"] == "/var/lib/modelobs/predictions.db"
    assert model_env["MODELOBS_MONITOR"] == "embedded"
    assert len(of_kind(objects, "Deployment")) == 3  # model service, gateway, gateway collector


@pytest.mark.parametrize(
    "sets", [("modelService.replicas=2",), ("modelService.replicas=1", "modelService.workers=2")]
)
def test_several_processes_without_a_shared_store_are_refused(sets: tuple[str, ...]) -> None:
    result = render_with("predictionStore.url=", *sets)
    assert result.returncode != 0
    assert "need a shared prediction store" in result.stderr


def test_a_store_url_that_is_not_postgresql_is_refused() -> None:
    result = render_with("predictionStore.url=mysql://db/modelobs")
    assert result.returncode != 0
    assert "predictionStore" in result.stderr
