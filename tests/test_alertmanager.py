"""Alertmanager routing: the inhibit rule silences real alert pairs, checked on a real Alertmanager.

The alerts posted are the ones deploy/prometheus/rules/modelobs.yml defines (their names and
labels are read from it), so a renamed alert or a changed `slo`/`severity` label breaks this test
instead of leaving an inhibit rule that matches nothing. Each configuration file
(native and compose) runs in its own Alertmanager on a free port, with the real route and
inhibit rules and the receivers emptied (nothing is sent anywhere).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from ._native_bins import require_binary
from .processes import wait_ready
from .servers import free_port
from .waiting import poll_until

REPO = Path(__file__).resolve().parents[1]
AM_DIR = REPO / "deploy" / "alertmanager"
CONFIGS = [AM_DIR / "alertmanager.yml", AM_DIR / "alertmanager.compose.yml"]
RULES_FILE = REPO / "deploy" / "prometheus" / "rules" / "modelobs.yml"
SERVICE = "model-service"
OTHER_SERVICE = "gateway"
INHIBIT_DEADLINE_S = 30


def _rule_alerts() -> dict[str, dict[str, str]]:
    """alertname -> the static labels the rule gives it."""
    doc = yaml.safe_load(RULES_FILE.read_text())
    return {
        rule["alert"]: dict(rule.get("labels") or {})
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def _slo_pairs() -> dict[str, tuple[str, str]]:
    """slo -> (critical alert, warning alert) of that SLO, from the rule file."""
    by_slo: dict[str, dict[str, str]] = {}
    for name, labels in _rule_alerts().items():
        if "slo" in labels:
            by_slo.setdefault(labels["slo"], {})[labels["severity"]] = name
    return {slo: (sev["critical"], sev["warning"]) for slo, sev in by_slo.items()}


def _without_receivers(config: Path, out: Path) -> Path:
    """The config with every receiver's integrations removed: same route, same inhibit rules."""
    doc = yaml.safe_load(config.read_text())
    doc["receivers"] = [{"name": r["name"]} for r in doc["receivers"]]
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@pytest.fixture(params=CONFIGS, ids=lambda p: p.name)
def alertmanager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    binary = require_binary("ALERTMANAGER_BIN", "alertmanager")
    config = _without_receivers(request.param, tmp_path / "alertmanager.yml")
    port = free_port()
    log = tmp_path / "alertmanager.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/-/ready", proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _alert(name: str, **labels: str) -> dict:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, **_rule_alerts()[name], **labels},
        "annotations": {"summary": f"test alert {name}"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def _key(labels: dict[str, str]) -> tuple[str, str]:
    return labels["alertname"], labels.get("service_name", "")


def test_every_slo_has_a_page_and_a_ticket():
    pairs = _slo_pairs()
    assert set(pairs) == {"availability", "latency"}, pairs


def test_page_inhibits_the_ticket_of_the_same_slo_and_service(alertmanager: str):
    pairs = _slo_pairs()
    posted = [_alert(name, service_name=SERVICE) for pair in pairs.values() for name in pair]
    # Controls the inhibit rule must leave alone: the ticket of another service (its page is
    # not firing), and a critical and a warning alert with neither `slo` nor `service_name`
    # (`equal` counts a label missing on both sides as equal).
    availability_ticket = pairs["availability"][1]
    posted += [
        _alert(availability_ticket, service_name=OTHER_SERVICE),
        _alert("ScrapeTargetDown", job="otel-collector", instance="127.0.0.1:8889"),
        _alert("OtelCollectorExporterQueueFull", job="otel-collector", exporter="otlp_grpc/jaeger"),
    ]
    response = httpx.post(f"{alertmanager}/api/v2/alerts", json=posted, timeout=5)
    assert response.status_code == 200, response.text

    inhibited = {(ticket, SERVICE): (page, SERVICE) for page, ticket in pairs.values()}
    by_key: dict[tuple[str, str], dict] = {}

    def settled() -> bool:
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        by_key.clear()
        by_key.update({_key(a["labels"]): a for a in alerts})
        return len(by_key) == len(posted) and all(
            by_key[target]["status"]["inhibitedBy"] for target in inhibited
        )

    poll_until(settled, INHIBIT_DEADLINE_S, poll_s=0.2)

    assert len(by_key) == len(posted), f"Alertmanager has {sorted(by_key)}"
    for target, source in inhibited.items():
        status = by_key[target]["status"]
        assert status["state"] == "suppressed", (target, status)
        assert status["inhibitedBy"] == [by_key[source]["fingerprint"]], (target, status)
    for key, alert in by_key.items():
        if key in inhibited:
            continue
        assert alert["status"]["state"] == "active", (key, alert["status"])
        assert not alert["status"]["inhibitedBy"], (key, alert["status"])
