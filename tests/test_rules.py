"""Prometheus rules: syntax (promtool), behaviour (promtool unit tests), and hygiene.

* ``promtool check rules`` on every deploy/prometheus/rules/*.yml
* ``promtool test rules`` on every deploy/prometheus/tests/*.yml
* ``promtool check config`` on deploy/prometheus/prometheus.yml (when that file exists)
* every alert: a ``severity`` label from the known set, ``summary``/``description``/
  ``runbook_url`` annotations, and the runbook file the URL points at exists in the repo
* every alert has promtool cases that fire it and cases that expect it quiet
* tests/rule_tuning.py renders a valid rule file in which the tuned alert really fires sooner
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ._native_bins import require_binary
from .rule_tuning import tune_rules

REPO = Path(__file__).resolve().parents[1]
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
TESTS_DIR = REPO / "deploy" / "prometheus" / "tests"
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
RUNBOOK_URL = re.compile(
    r"^https://github\.com/modelobs/modelobs/blob/main/(docs/runbooks/[^/]+\.md)$"
)
SEVERITIES = {"critical", "warning", "info"}

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted(TESTS_DIR.glob("*.yml"))


def _alerts() -> list[tuple[Path, dict]]:
    out = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out.extend((path, rule) for rule in group["rules"] if "alert" in rule)
    return out


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("PROMTOOL_BIN", "promtool")


def test_rule_and_test_files_exist():
    assert RULE_FILES, f"no rule files in {RULES_DIR}"
    assert TEST_FILES, f"no promtool test files in {TESTS_DIR}"
    assert _alerts(), "no alerting rules found"


def test_promtool_check_rules(promtool):
    res = _run([promtool, "check", "rules", *map(str, RULE_FILES)])
    assert res.returncode == 0, f"promtool check rules failed:\n{res.stdout}\n{res.stderr}"


def test_promtool_test_rules(promtool):
    res = _run([promtool, "test", "rules", *map(str, TEST_FILES)])
    assert res.returncode == 0, f"promtool test rules failed:\n{res.stdout}\n{res.stderr}"


def test_promtool_check_config(promtool):
    assert PROM_CONFIG.is_file(), f"{PROM_CONFIG.relative_to(REPO)} is missing"
    res = _run([promtool, "check", "config", str(PROM_CONFIG)])
    assert res.returncode == 0, f"promtool check config failed:\n{res.stdout}\n{res.stderr}"


@pytest.mark.parametrize("path,rule", _alerts(), ids=[rule["alert"] for _, rule in _alerts()])
def test_alert_labels_annotations_and_runbook(path, rule):
    name = rule["alert"]
    labels = rule.get("labels") or {}
    annotations = rule.get("annotations") or {}
    assert labels.get("severity") in SEVERITIES, (
        f"{name}: severity label must be one of {SEVERITIES}"
    )
    for key in ("summary", "description", "runbook_url"):
        assert str(annotations.get(key, "")).strip(), f"{name}: annotation {key!r} missing or empty"
    url = annotations["runbook_url"]
    match = RUNBOOK_URL.match(url)
    assert match, f"{name}: runbook_url {url!r} does not match {RUNBOOK_URL.pattern}"
    runbook = REPO / match.group(1)
    assert runbook.is_file(), f"{name}: runbook {runbook.relative_to(REPO)} does not exist"
    assert runbook.name == f"{name}.md", f"{name}: runbook should be docs/runbooks/{name}.md"
    assert name in runbook.read_text(), f"{name}: runbook page does not mention the alert"


def test_alert_names_unique():
    names = [rule["alert"] for _, rule in _alerts()]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"duplicate alert names: {dupes}"


def _test_cases() -> tuple[dict[str, int], dict[str, int]]:
    """alertname -> number of cases expecting it to fire / expecting it quiet."""
    fires: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text()).get("tests", []):
            for case in test.get("alert_rule_test", []) or []:
                bucket = fires if case.get("exp_alerts") else quiet
                bucket[case["alertname"]] = bucket.get(case["alertname"], 0) + 1
    return fires, quiet


def test_every_alert_has_promtool_cases():
    fires, quiet = _test_cases()
    names = {rule["alert"] for _, rule in _alerts()}
    no_fire = sorted(names - set(fires))
    no_quiet = sorted(names - set(quiet))
    assert not no_fire, f"alerts without a promtool case where they fire: {no_fire}"
    # quiet cases: one just below the threshold and one before `for:` has passed
    too_few_quiet = sorted(n for n in names if quiet.get(n, 0) < 2)
    assert not no_quiet, f"alerts without a promtool case where they stay quiet: {no_quiet}"
    assert not too_few_quiet, (
        f"alerts with fewer than two quiet cases (below threshold, before for:): {too_few_quiet}"
    )
    unknown = sorted((set(fires) | set(quiet)) - names)
    assert not unknown, f"promtool cases for alerts that do not exist: {unknown}"


def test_rule_tuning_renders_valid_rules(promtool, tmp_path):
    tuned = tmp_path / "modelobs.yml"
    tuned.write_text(tune_rules(for_all="30s", thresholds={"http_p99_latency_seconds": 0.2}))
    res = _run([promtool, "check", "rules", str(tuned)])
    assert res.returncode == 0, f"tuned rules invalid:\n{res.stdout}\n{res.stderr}"

    doc = yaml.safe_load(tuned.read_text())
    alerts = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert alerts and all(r["for"] == "30s" for r in alerts)
    original = {r["alert"]: r for _, r in _alerts()}
    for rule in alerts:
        assert rule["expr"] == original[rule["alert"]]["expr"]
        assert rule["annotations"] == original[rule["alert"]]["annotations"]

    # p99 of 0.995 s: quiet with the production threshold (1 s), fires with the tuned 0.2 s
    # threshold after the tuned 30 s `for:`.
    bucket = 'http_server_request_duration_seconds_bucket{service_name="gateway",le="%s"}'
    annotations = {
        k: v.replace("{{ $labels.service_name }}", "gateway").replace(
            "{{ $value | humanizeDuration }}", "995ms"
        )
        for k, v in original["HttpLatencyP99High"]["annotations"].items()
    }
    case = {
        "rule_files": ["modelobs.yml"],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    {"series": bucket % "0.5", "values": "0+0x40"},
                    {"series": bucket % "1", "values": "0+15x40"},
                    {"series": bucket % "+Inf", "values": "0+15x40"},
                ],
                "alert_rule_test": [
                    {"alertname": "HttpLatencyP99High", "eval_time": "15s", "exp_alerts": []},
                    {
                        "alertname": "HttpLatencyP99High",
                        "eval_time": "2m",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "warning", "service_name": "gateway"},
                                "exp_annotations": annotations,
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "tuned_test.yml"
    test_file.write_text(yaml.safe_dump(case, sort_keys=False))
    res = _run([promtool, "test", "rules", str(test_file)])
    assert res.returncode == 0, (
        f"tuned HttpLatencyP99High did not fire as expected:\n{res.stdout}\n{res.stderr}"
    )


def test_rule_tuning_rejects_unknown_names():
    with pytest.raises(KeyError):
        tune_rules(overrides_for={"NoSuchAlert": "10s"})
    with pytest.raises(KeyError):
        tune_rules(thresholds={"no_such_threshold": 1.0})
    with pytest.raises(ValueError):
        tune_rules(for_all="ten seconds")


def test_rule_metric_names_are_in_the_contract():
    """Every metric a rule reads is in docs/contract.md, a recording rule, or otelcol_*/up."""
    from .test_dashboards import _known_metric_names, _metric_names

    exact, prefixes = _known_metric_names()
    unknown = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                for name in _metric_names(rule["expr"]):
                    if name not in exact and not name.startswith(prefixes):
                        unknown.add((name, rule.get("alert") or rule.get("record")))
    assert not unknown, f"metric names not in docs/contract.md: {sorted(unknown)}"
