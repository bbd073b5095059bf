"""`modelobs serve --workers N`: what several workers cannot serve correctly is refused with a
reason, the model service's monitor is moved out of the workers, and a pinned
service.instance.id is made unique per worker. (Two real workers and their series in the
collector's output: tests/e2e/test_worker_processes.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelobs import cli, workers
from modelobs.model import store
from modelobs.telemetry.instance import WORKERS_ENV, instance_attributes
from modelobs.telemetry.providers import build_resource

from .conftest import make_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (WORKERS_ENV, workers.MONITOR_ENV, "OTEL_METRICS_EXPORTER"):
        monkeypatch.setenv(name, "")  # restored (or removed) after the test
        monkeypatch.delenv(name)
    return monkeypatch


def test_pull_mode_with_several_workers_is_refused(clean_env, capsys, model_dir: Path) -> None:
    clean_env.setenv("OTEL_METRICS_EXPORTER", "otlp,prometheus")
    code = cli.main(["serve", "model", "--workers", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "OTEL_METRICS_EXPORTER=prometheus" in err and "one worker per port" in err


def test_an_embedded_monitor_with_several_workers_is_refused(clean_env, capsys) -> None:
    clean_env.setenv(workers.MONITOR_ENV, "embedded")
    assert cli.main(["serve", "model", "--workers", "2"]) == 2
    assert "MODELOBS_MONITOR=off" in capsys.readouterr().err


def test_several_workers_turn_the_embedded_monitor_off_and_load_the_model_once(
    clean_env, model_dir: Path, tmp_path: Path
) -> None:
    fresh = tmp_path / "model"  # no model yet: the parent trains it, before any worker runs
    notes = workers.prepare_workers("model", 2, make_settings(fresh, tmp_path))
    assert os.environ[workers.MONITOR_ENV] == "off"
    assert os.environ[WORKERS_ENV] == "2"
    assert any("serve monitor" in note for note in notes)
    assert store.load(fresh).schema.name == "churn-classifier"  # there for every worker


def test_one_worker_changes_nothing(clean_env, model_dir: Path, tmp_path: Path) -> None:
    assert workers.prepare_workers("model", 1, make_settings(model_dir, tmp_path)) == []
    assert workers.MONITOR_ENV not in os.environ and WORKERS_ENV not in os.environ


def test_a_pinned_instance_id_is_made_unique_per_worker(clean_env) -> None:
    clean_env.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-7")
    assert build_resource("model-service", "dev").attributes["service.instance.id"] == "pod-7"
    clean_env.setenv(WORKERS_ENV, "2")
    pid = os.getpid()
    assert instance_attributes({"service.instance.id": "pod-7"}) == {
        "service.instance.id": f"pod-7-{pid}"
    }
    assert build_resource("gateway", "dev").attributes["service.instance.id"] == f"pod-7-{pid}"


def test_without_a_pinned_id_every_process_gets_a_random_one(clean_env) -> None:
    clean_env.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    first = build_resource("model-service", "dev").attributes["service.instance.id"]
    second = build_resource("model-service", "dev").attributes["service.instance.id"]
    assert first != second and len(first) == 36
