"""Prometheus rules: syntax (promtool), behaviour (promtool unit tests), and hygiene.

* ``promtool check rules`` on every deploy/prometheus/rules/*.yml
* ``promtool test rules`` on every deploy/prometheus/tests/*.yml
* ``promtool check config`` on deploy/prometheus/prometheus.yml (when that file exists)
* every alert: a ``severity`` label from the known set, ``summary``/``description``/
  ``runbook_url`` annotations, and the runbook file the URL points at exists in the repo
* every alert has promtool cases that fire it and cases that expect it quiet
* tests/rule_tuning.py renders a valid rule file in which the tuned alert really fires sooner
* rules with windows of 30m or more are evaluated at most once a minute
* Prometheus keeps data at least as long as the longest window a rule reads, in every
  deployment (docker-compose and the native stack)
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from ._native_bins import require_binary
from .promql import unknown_metric_names
from .rule_tuning import tune_rules

REPO = Path(__file__).resolve().parents[1]
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
TESTS_DIR = REPO / "deploy" / "prometheus" / "tests"
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
RUNBOOK_URL = re.compile(
    r"^https://github\.com/modelobs/modelobs/blob/main/(docs/runbooks/[^/]+\.md)$"
)
SEVERITIES = {"critical", "warning", "info"}

COMPOSE_FILE = REPO / "docker-compose.yml"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RETENTION_FLAG = "--storage.tsdb.retention.time"
# Prometheus' default when neither the config file nor the flag sets a retention.
DEFAULT_RETENTION = "15d"
LONG_WINDOW_S = 30 * 60
LONG_WINDOW_MIN_INTERVAL_S = 60
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
    with pytest.raises(ValueError):
        tune_rules(interval="a minute")


def test_rule_tuning_keeps_or_sets_group_intervals():
    source = {
        g["name"]: g.get("interval")
        for p in RULE_FILES
        for g in yaml.safe_load(p.read_text())["groups"]
    }
    assert {"1m"} <= set(source.values()), "expected groups with their own interval"
    kept = {g["name"]: g.get("interval") for g in yaml.safe_load(tune_rules())["groups"]}
    assert kept == source
    fast = yaml.safe_load(tune_rules(interval="5s"))["groups"]
    assert [g["name"] for g in fast] == list(source)
    assert all(g["interval"] == "5s" for g in fast)


def test_rule_metric_names_are_in_the_contract():
    """Every metric a rule reads is in docs/contract.md, a recording rule, or otelcol_*/up."""
    unknown = {
        (name, rule.get("alert") or rule.get("record"))
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        for name in unknown_metric_names(rule["expr"])
    }
    assert not unknown, f"metric names not in docs/contract.md: {sorted(unknown)}"


# --------------------------------------------------------------------------- windows


_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
# a range selector or subquery: [5m], [1h30m], [1d:5m]
_RANGE = re.compile(r"\[\s*((?:\d+(?:ms|[smhdwy]))+)\s*(?::[^\]]*)?\]")
_OFFSET = re.compile(r"\boffset\s+((?:\d+(?:ms|[smhdwy]))+)")


def _seconds(duration: str) -> float:
    """A Prometheus duration (``1h30m``, ``3d``) in seconds."""
    parts = _DURATION_PART.findall(duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def _lookback_s(expr: str) -> float:
    """How far back an expression reads: its longest range plus its longest offset."""
    ranges = [_seconds(m) for m in _RANGE.findall(expr)]
    offsets = [_seconds(m) for m in _OFFSET.findall(expr)]
    return max(ranges, default=0) + max(offsets, default=0)


def _rules_with_groups() -> list[tuple[dict, dict]]:
    return [
        (group, rule)
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _longest_rule_window() -> tuple[float, str]:
    """(seconds, rule name) of the rule that reads furthest back."""
    return max(
        (_lookback_s(rule["expr"]), rule.get("alert") or rule["record"])
        for _, rule in _rules_with_groups()
    )


def test_long_window_rules_are_evaluated_at_most_once_a_minute():
    global_interval = yaml.safe_load(PROM_CONFIG.read_text())["global"]["evaluation_interval"]
    too_often = sorted(
        (rule.get("alert") or rule["record"], group["name"], group.get("interval", global_interval))
        for group, rule in _rules_with_groups()
        if _lookback_s(rule["expr"]) >= LONG_WINDOW_S
        and _seconds(group.get("interval", global_interval)) < LONG_WINDOW_MIN_INTERVAL_S
    )
    assert not too_often, (
        "rules reading 30m or more should sit in a group with `interval: 1m` or longer "
        f"(rule, group, interval): {too_often}"
    )


def _flag(argv: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in an argument list."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _compose_prometheus_argv() -> list[str]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return [str(a) for a in compose["services"]["prometheus"]["command"]]


def _native_prometheus_argv(run_dir: Path) -> list[str]:
    """The argv the native stack starts Prometheus with (its spec in deploy/native/stack.toml)."""
    from deploy.native import components

    process = components.resolve(
        components.SPECS["prometheus"],
        components.StackConfig(run_dir=run_dir),
        {"PROMETHEUS_BIN": "prometheus"},
    )
    argv = [str(a) for a in process.argv]
    assert Path(argv[0]).name == "prometheus", f"not a Prometheus argv: {argv}"
    return argv


def _config_retention(argv: list[str]) -> str | None:
    """Retention set in the config file this argv starts Prometheus with (the native stack
    renders its own copy of deploy/prometheus/prometheus.yml; compose mounts the file)."""
    rendered = _flag(argv, "--config.file")
    config = Path(rendered) if rendered and Path(rendered).is_file() else PROM_CONFIG
    storage = yaml.safe_load(config.read_text()).get("storage") or {}
    return ((storage.get("tsdb") or {}).get("retention") or {}).get("time")


@pytest.mark.parametrize(
    "deployment", ["docker-compose", "native"], ids=["docker-compose", "native"]
)
def test_retention_covers_the_longest_rule_window(deployment, tmp_path):
    """Prometheus 3.16 takes `storage.tsdb.retention.time` from the config file over the
    (deprecated) flag; either way the data a rule reads must still be there: a [3d] rate with
    2d retention silently becomes a 2d rate."""
    argv = (
        _compose_prometheus_argv()
        if deployment == "docker-compose"
        else _native_prometheus_argv(tmp_path)
    )
    flag = _flag(argv, RETENTION_FLAG)
    effective = _config_retention(argv) or flag or DEFAULT_RETENTION
    longest_s, rule = _longest_rule_window()
    assert longest_s >= 3 * 86400, f"expected the [3d] SLO windows, longest is {rule}"
    assert _seconds(effective) >= longest_s, (
        f"{deployment}: retention {effective} is shorter than the {longest_s / 86400:g}d "
        f"window of {rule}"
    )
    # A flag the config file overrides must not tell a different, too short story either.
    if flag is not None:
        assert _seconds(flag) >= longest_s, f"{deployment}: {RETENTION_FLAG}={flag} < window"


def test_retention_is_in_the_shared_config_file():
    """One place for both deployments: prometheus.yml (mounted by compose, read natively)."""
    retention = _config_retention([])
    assert retention, f"{PROM_CONFIG.relative_to(REPO)} sets no storage.tsdb.retention.time"
    assert _seconds(retention) >= _longest_rule_window()[0]


def test_rule_tuning_shortens_range_windows_and_stays_valid(promtool, tmp_path):
    tuned = tmp_path / "modelobs.yml"
    tuned.write_text(tune_rules(windows={"5m": "30s"}))
    res = _run([promtool, "check", "rules", str(tuned)])
    assert res.returncode == 0, f"tuned rules invalid:\n{res.stdout}\n{res.stderr}"
    exprs = [r["expr"] for g in yaml.safe_load(tuned.read_text())["groups"] for r in g["rules"]]
    assert not any("[5m]" in e for e in exprs)
    assert sum("[30s]" in e for e in exprs) >= 4  # the 5-minute SLI recording rules at least
    assert any("[1h]" in e for e in exprs)  # other windows stay
    with pytest.raises(ValueError):
        tune_rules(windows={"5m": "half a minute"})
