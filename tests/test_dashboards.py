"""Grafana dashboards and provisioning: structure, datasource references, PromQL validity.

* every dashboard file is valid JSON with a uid, a title and a recent schemaVersion;
  uids are unique across dashboards; panel ids are unique within a dashboard
* every panel and every target names its datasource by uid, and every uid referenced by a
  dashboard or a provisioning file is provisioned in datasources.yaml
* the datasource correlations are wired (exemplars -> Jaeger, traces -> logs and metrics,
  Loki trace_id -> Jaeger) and the dashboard provider loads the mounted directory
* every template variable a query uses is defined (or is a Grafana macro); the variables
  the contract asks for exist
* every PromQL expression, variables substituted (tests/dashboard_queries.py), parses:
  all of them are written into a throw-away rule file and checked with `promtool check rules`
* every metric name a dashboard queries is in docs/contract.md, a recording rule, or a
  collector self-metric / scrape metric
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from modelobs.monitoring.drift import DriftSettings

from ._native_bins import require_binary
from .dashboard_queries import (
    BUILTINS,
    DASHBOARDS_DIR,
    iter_panels,
    prometheus_queries,
    variables_used,
)
from .grafana_provisioning import DATASOURCES_FILE
from .grafana_provisioning import provisioned_datasources as _provisioned
from .grafana_provisioning import unescape as _unescape
from .promql import promtool_rejects, unknown_metric_names

REPO = Path(__file__).resolve().parents[1]
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"
PROVIDERS_FILE = PROVISIONING / "dashboards" / "dashboards.yaml"
CONTRACT_UIDS = {"prometheus", "jaeger", "loki", "alertmanager"}
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))
MIN_SCHEMA_VERSION = 39


def _dash(path: Path) -> dict:
    return json.loads(path.read_text())


def test_dashboards_exist():
    names = {p.name for p in DASHBOARD_FILES}
    for name in ("service-overview.json", "model-health.json", "telemetry-pipeline.json"):
        assert name in names, f"dashboards/{name} missing"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path):
    dash = _dash(path)
    assert isinstance(dash.get("uid"), str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert dash.get("title")
    assert dash.get("schemaVersion", 0) >= MIN_SCHEMA_VERSION, "schemaVersion too old"
    assert dash.get("id") in (None, 0) or "id" not in dash, "do not commit a database id"
    ids = [p.get("id") for p in iter_panels(dash.get("panels") or [])]
    assert all(isinstance(i, int) for i in ids), f"{path.name}: panel without integer id"
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"{path.name}: duplicate panel ids {dupes}"
    for panel in iter_panels(dash.get("panels") or []):
        grid = panel.get("gridPos") or {}
        assert {"h", "w", "x", "y"} <= set(grid), f"{path.name}: panel {panel['id']} no gridPos"
        assert grid["x"] + grid["w"] <= 24, f"{path.name}: panel {panel['id']} wider than grid"


def test_dashboard_uids_unique():
    uids = [_dash(p)["uid"] for p in DASHBOARD_FILES]
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"


def _datasource_refs(obj, where: str) -> list[tuple[str, object]]:
    """Every 'datasource' value in a JSON tree, with a location."""
    out = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "datasource":
                out.append((where, value))
            out.extend(_datasource_refs(value, f"{where}.{key}"))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.extend(_datasource_refs(value, f"{where}[{i}]"))
    return out


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_datasources_by_provisioned_uid(path):
    provisioned = _provisioned()
    dash = _dash(path)
    for where, ref in _datasource_refs(dash, path.name):
        assert isinstance(ref, dict), f"{where}: datasource must be {{type, uid}}, got {ref!r}"
        uid = ref.get("uid")
        if uid == "-- Grafana --":  # built-in annotations
            continue
        assert uid in provisioned, f"{where}: datasource uid {uid!r} is not provisioned"
        assert ref.get("type") == provisioned[uid]["type"], f"{where}: type/uid mismatch"
    for panel in iter_panels(dash.get("panels") or []):
        if panel.get("type") == "row":
            continue
        ds = panel.get("datasource")
        assert isinstance(ds, dict) and ds.get("uid"), (
            f"{path.name}: panel {panel['id']} ({panel.get('title')}) has no datasource uid"
        )
        for target in panel.get("targets") or []:
            tds = target.get("datasource") or ds
            assert tds.get("uid") in provisioned, (
                f"{path.name}: panel {panel['id']} target {target.get('refId')} datasource"
            )


def test_provisioned_datasources_and_correlations():
    ds = _provisioned()
    assert set(ds) == CONTRACT_UIDS, f"provisioned uids {set(ds)} != contract {CONTRACT_UIDS}"
    assert {d["type"] for d in ds.values()} == {"prometheus", "jaeger", "loki", "alertmanager"}

    prom = ds["prometheus"]["jsonData"]
    dests = prom["exemplarTraceIdDestinations"]
    assert any(d["name"] == "trace_id" and d["datasourceUid"] == "jaeger" for d in dests)

    jaeger = ds["jaeger"]["jsonData"]
    logs = jaeger["tracesToLogsV2"]
    assert logs["datasourceUid"] == "loki"
    assert logs.get("spanStartTimeShift") and logs.get("spanEndTimeShift")
    if logs.get("customQuery"):
        # Grafana ignores filterByTraceID with a custom query: the query filters itself.
        query = _unescape(logs["query"])
        assert "${__trace.traceId}" in query and "trace_id" in query, query
    else:
        assert logs.get("filterByTraceID") is True
    metrics = jaeger["tracesToMetrics"]
    assert metrics["datasourceUid"] == "prometheus"
    assert metrics.get("queries"), "tracesToMetrics needs queries"
    for q in metrics["queries"]:
        assert "$__tags" in _unescape(q["query"]), q
    # Jaeger's /api/traces (what Grafana reads) carries service.name as the process'
    # serviceName, never as a tag: a mapping for it matches nothing
    # (tests/e2e/test_grafana_links.py checks the links against a real trace).
    for link in (logs, metrics):
        keys = [tag["key"] for tag in link["tags"]]
        assert keys and "service.name" not in keys, keys
    assert jaeger["nodeGraph"]["enabled"] is True

    fields = ds["loki"]["jsonData"]["derivedFields"]
    trace = [f for f in fields if f.get("datasourceUid") == "jaeger"]
    assert trace, "Loki derivedFields must link to Jaeger"
    assert trace[0]["matcherType"] == "label" and trace[0]["matcherRegex"] == "trace_id"
    assert _unescape(trace[0]["url"]) == "${__value.raw}"

    # every uid any provisioning file points at is provisioned
    text = DATASOURCES_FILE.read_text()
    for uid in re.findall(r"datasourceUid:\s*['\"]?([\w-]+)", text):
        assert uid in ds, f"datasources.yaml refers to unprovisioned uid {uid}"


def test_dashboard_provider_loads_mounted_dir():
    doc = yaml.safe_load(PROVIDERS_FILE.read_text())
    assert doc["apiVersion"] == 1
    provider = doc["providers"][0]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = [str(v) for v in compose["services"]["grafana"]["volumes"]]
    assert any(m.startswith("./dashboards:") and f":{path}" in m for m in mounts), (
        f"docker-compose must mount ./dashboards at {path}"
    )


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_variables_defined(path):
    dash = _dash(path)
    defined = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    assert "service" in defined, f"{path.name}: no $service variable"
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            assert var.get("datasource", {}).get("uid") in _provisioned()
    for panel in iter_panels(dash.get("panels") or []):
        texts = [t.get("expr", "") for t in panel.get("targets") or []]
        texts.append(panel.get("title", ""))
        for text in texts:
            unknown = variables_used(text) - defined - set(BUILTINS)
            assert not unknown, f"{path.name}: panel {panel['id']} uses undefined {unknown}"


def test_model_health_has_required_panels():
    dash = _dash(DASHBOARDS_DIR / "model-health.json")
    names = {v["name"] for v in dash["templating"]["list"]}
    assert {"service", "model_version"} <= names
    logs = [p for p in iter_panels(dash["panels"]) if p.get("type") == "logs"]
    assert logs and logs[0]["datasource"]["uid"] == "loki"
    assert logs[0]["targets"][0]["expr"] == '{service_name="$service"}'
    exprs = " ".join(q.raw for q in prometheus_queries() if q.dashboard_uid == dash["uid"])
    for metric in (
        "modelobs_predictions_total",
        "modelobs_inference_duration_seconds_bucket",
        "modelobs_validation_failures_total",
        "modelobs_model_accuracy",
        "modelobs_model_f1",
        "modelobs_label_delay_seconds_bucket",
        "modelobs_drift_ks_statistic",
        "modelobs_drift_p_value",
        "modelobs_drift_psi",
        "modelobs_drift_detected",
        "modelobs_drift_share",
        "modelobs_drift_window_size",
        "modelobs_model_estimated_accuracy",
        "modelobs_model_estimated_precision",
        "modelobs_model_estimated_recall",
        "modelobs_model_estimation_window_size",
        "modelobs:alert_threshold:model_estimated_accuracy_min",
    ):
        assert metric in exprs, f"model-health does not chart {metric}"


def _panel(dash: dict, title: str) -> dict:
    (panel,) = [p for p in iter_panels(dash["panels"]) if p.get("title") == title]
    return panel


def test_model_health_sets_estimated_beside_realized_accuracy():
    dash = _dash(DASHBOARDS_DIR / "model-health.json")
    exprs = [t["expr"] for t in _panel(dash, "Estimated vs realized accuracy")["targets"]]
    assert any("modelobs_model_estimated_accuracy" in e for e in exprs)
    assert any(re.search(r"\bmodelobs_model_accuracy\b", e) for e in exprs)
    assert "modelobs:alert_threshold:model_estimated_accuracy_min" in exprs


def test_model_health_marks_fault_flags_with_annotations():
    dash = _dash(DASHBOARDS_DIR / "model-health.json")
    flags = [a for a in dash["annotations"]["list"] if a.get("name") == "Fault flags"]
    assert flags and flags[0]["enable"], "no enabled fault-flag annotation"
    assert flags[0]["datasource"] == {"type": "prometheus", "uid": "prometheus"}
    assert "modelobs_feature_flag_active" in flags[0]["expr"]
    # the flag key names the annotation and its runbook page
    assert "{{feature_flag_key}}" in flags[0]["titleFormat"]
    assert flags[0]["tagKeys"] == "feature_flag_key"


def _recorded_constants() -> dict[str, float]:
    out = {}
    for path in (REPO / "deploy" / "prometheus" / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found = re.fullmatch(r"vector\(([\d.]+)\)", str(rule.get("expr", "")).strip())
                if "record" in rule and found:
                    out[rule["record"]] = float(found.group(1))
    return out


def test_drift_panels_draw_the_detector_s_own_thresholds():
    """The dashed lines are the thresholds the drift detector decides with."""
    settings = DriftSettings()
    constants = _recorded_constants()
    expected = {
        "modelobs:drift_threshold:p_value": settings.alpha,
        "modelobs:drift_threshold:psi": settings.psi_threshold,
        "modelobs:drift_threshold:ks_statistic": settings.ks_threshold,
    }
    assert {k: constants.get(k) for k in expected} == expected
    dash = _dash(DASHBOARDS_DIR / "model-health.json")
    for title, statistic, rule in (
        ("KS statistic per feature", "modelobs_drift_ks_statistic", "ks_statistic"),
        ("p-value per feature", "modelobs_drift_p_value", "p_value"),
        ("PSI per feature", "modelobs_drift_psi", "psi"),
    ):
        exprs = " ".join(t["expr"] for t in _panel(dash, title)["targets"])
        assert statistic in exprs and f"modelobs:drift_threshold:{rule}" in exprs, title


def test_latency_panels_have_exemplars():
    for q in prometheus_queries():
        if q.panel_type != "timeseries":
            continue
        if "histogram_quantile" in q.raw and (
            "http_server_request_duration_seconds_bucket" in q.raw
            or "modelobs_inference_duration_seconds_bucket" in q.raw
        ):
            assert q.exemplar, f"exemplars off: {q.where}"


def test_promql_parses(tmp_path):
    """All dashboard expressions, substituted, must be valid PromQL (promtool parses them)."""
    promtool = require_binary("PROMTOOL_BIN", "promtool")
    queries = prometheus_queries()
    assert queries, "no PromQL found in dashboards"
    complaint = promtool_rejects(promtool, [q.expr for q in queries], tmp_path)
    if complaint:
        # name the failing panel, not just the expression
        where = [q.where for q in queries if q.expr in complaint]
        pytest.fail("invalid PromQL:\n" + complaint + "\n" + "\n".join(where))


def test_trace_to_metrics_queries_parse(tmp_path):
    """The tracesToMetrics queries, with $__tags as Grafana fills it (two labels, or none
    when a span lacks both tags), are valid PromQL and read known metrics."""
    promtool = require_binary("PROMTOOL_BIN", "promtool")
    metrics = _provisioned()["jaeger"]["jsonData"]["tracesToMetrics"]
    exprs = []
    for q in metrics["queries"]:
        for tags in ('service_namespace="modelobs", service_instance_id="x"', ""):
            exprs.append(_unescape(q["query"]).replace("$__tags", tags))
        assert not unknown_metric_names(exprs[-1]), (q["name"], unknown_metric_names(exprs[-1]))
    complaint = promtool_rejects(promtool, exprs, tmp_path)
    assert complaint is None, f"invalid trace-to-metrics PromQL:\n{complaint}"


def test_dashboard_metric_names_are_known():
    unknown = {(n, q.where) for q in prometheus_queries() for n in unknown_metric_names(q.expr)}
    assert not unknown, "metric names not in docs/contract.md or the rules:\n" + "\n".join(
        f"{n}: {w}" for n, w in sorted(unknown)
    )
