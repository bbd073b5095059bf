"""Each fault-flag scenario, drilled end to end on the native stack by the real command:
``modelobs drill SCENARIO`` switches the flag on, the expected alert fires in Alertmanager and
reaches the webhook receiver, the output leads from the panel query and the exemplar (or trace
search) to a trace with the flag on the right span and to that trace's log lines, and once
the flag is off the alert resolves. The same evidence is then checked through the APIs, and
``modelobs trace ID`` draws that trace on its own."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
import pytest

from modelobs.drills import backends as api
from modelobs.drills.scenarios import SCENARIOS
from modelobs.drills.waterfall import FLAG_KEY, FLAG_VARIANT, attribute_map
from modelobs.flags import store
from modelobs.flags.definitions import BY_KEY, OFF
from tests.processes import MODELOBS
from tests.waiting import wait_until

from .conftest import ACCURACY_MIN, DrillStack

pytestmark = [pytest.mark.e2e, pytest.mark.scenarios]

FIRE_TIMEOUT_S = 180
RESOLVE_TIMEOUT_S = 180
DRILLED = (
    "slow-inference",
    "inference-errors",
    "failing-hop",
    "memory-leak",
    "feature-shift",
    "label-shift",
)


def modelobs(stack: DrillStack, *args: str, timeout_s: float) -> subprocess.CompletedProcess:
    b = stack.backends
    return subprocess.run(
        [MODELOBS, *args, "--jaeger", b.jaeger, "--logs", b.logs],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def block(out: str, title: str, indent: str) -> str:
    """The lines indented by ``indent`` right after the line starting with ``title``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    body = []
    for line in lines[start + 1 :]:
        if not line.startswith(indent) or line.startswith(indent + " "):
            break
        body.append(line)
    return "\n".join(body)


def wait_for(check, what: str, timeout_s: float = 60.0):
    return wait_until(check, what, timeout_s, poll_s=1.0)


def test_active_flag_gauge_follows_the_file_in_both_services(drill_stack: DrillStack) -> None:
    prom = drill_stack.backends.prometheus
    query = 'sum by (service_name) (modelobs_feature_flag_active{feature_flag_key="memory-leak"})'

    def values() -> dict[str, float]:
        return {
            r["metric"]["service_name"]: float(r["value"][1]) for r in api.prom_query(prom, query)
        }

    wait_for(lambda: values() == {"gateway": 0.0, "model-service": 0.0}, "gauge at 0", 90)
    series = api.prom_query(prom, "count by (service_name) (modelobs_feature_flag_active)")
    assert {float(r["value"][1]) for r in series} == {float(len(BY_KEY))}
    store.switch(drill_stack.flags_file, "memory-leak", "on")
    try:
        wait_for(lambda: values() == {"gateway": 1.0, "model-service": 1.0}, "gauge at 1")
    finally:
        store.switch(drill_stack.flags_file, "memory-leak", OFF)
    wait_for(lambda: values() == {"gateway": 0.0, "model-service": 0.0}, "gauge back at 0")


def test_load_generator_traffic_is_marked_synthetic(drill_stack: DrillStack) -> None:
    b = drill_stack.backends
    marked = wait_for(
        lambda: api.prom_query(
            b.prometheus,
            'sum by (synthetic_request) (modelobs_predictions_total{synthetic_request="true"})',
        ),
        "predictions counted with synthetic_request=true",
    )
    assert float(marked[0]["value"][1]) > 0
    # A request of our own (no baggage) is counted as real traffic.
    response = httpx.post(
        f"{drill_stack.cfg.url(drill_stack.cfg.ports.gateway)}/v1/predict",
        json={
            "record": {
                "tenure_months": 3,
                "monthly_charges": 80.5,
                "support_calls": 1,
                "age": 40,
                "data_usage_gb": 5.0,
                "contract": "month-to-month",
                "payment_method": "mailed-check",
            }
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    wait_for(
        lambda: api.prom_query(
            b.prometheus, 'modelobs_predictions_total{synthetic_request="false"}'
        ),
        "a real request counted with synthetic_request=false",
    )
    records = wait_for(
        lambda: api.logs_query(b.logs, "event:prediction AND synthetic_request:true", limit=5),
        "prediction log records carrying synthetic_request=true",
    )
    assert all(r.get("synthetic_request") == "true" for r in records)


@pytest.mark.parametrize("name", DRILLED)
def test_drill(drill_stack: DrillStack, name: str) -> None:
    s = SCENARIOS[name]
    b = drill_stack.backends
    started = time.monotonic()
    result = modelobs(
        drill_stack,
        "drill", name,
        "--flags-file", str(drill_stack.flags_file),
        "--prometheus", b.prometheus,
        "--alertmanager", b.alertmanager,
        "--webhook", str(b.webhook),
        "--fire-timeout", str(FIRE_TIMEOUT_S),
        "--resolve-timeout", str(RESOLVE_TIMEOUT_S),
        timeout_s=FIRE_TIMEOUT_S + RESOLVE_TIMEOUT_S + 240,
    )  # fmt: skip
    out = result.stdout
    print(f"\n{name}: {time.monotonic() - started:.0f}s\n{out}")
    assert result.returncode == 0, (
        f"modelobs drill {name} failed:\n{out}\n{result.stderr[-3000:]}\n"
        f"prometheus log:\n{drill_stack.log_tail('prometheus')}"
    )
    # The flag is off again in the file, whatever happened.
    assert store.variants(drill_stack.flags_file)[s.flag] == OFF

    # Alert: fired for the right service, reached the webhook, resolved after the switch-off.
    assert re.search(rf"FIRING {s.alert} \{{.*service_name=\"{s.service}\"", out), out
    assert "webhook receiver notified: yes" in out
    assert re.search(r"resolved after \d+s \(Alertmanager and webhook\)", out), out
    payloads = api.webhook_payloads(str(b.webhook))
    statuses = {
        a["status"]
        for p in payloads
        for a in p["alerts"]
        if a["labels"].get("alertname") == s.alert and a["labels"].get("service_name") == s.service
    }
    assert statuses == {"firing", "resolved"}

    # Panel query with its value, then the trace it leads to.
    assert f"[3/7] panel query: {s.panel_query}" in out
    panel = block(out, "[3/7]", "  ")
    assert re.search(r"^  \{.*\} = [0-9.e+-]+$", panel, re.M), out
    trace_id = re.search(r"^\[5/7\] trace ([0-9a-f]{32})", out, re.M).group(1)
    if s.exemplar_selector:
        exemplar = re.search(r"exemplar trace_id=([0-9a-f]{32}) value=([0-9.]+)", out)
        assert exemplar and exemplar.group(1) == trace_id, out
        if s.exemplar_pick == "slowest":
            # The slowed request itself: at least the flag's delay.
            assert float(exemplar.group(2)) >= BY_KEY[s.flag].variants[s.variant]["delay_ms"] / 1000

    # The waterfall shows the flag on the span it affected.
    flagged_lines = [
        line for line in out.splitlines() if line.rstrip().endswith(f"{s.flag}={s.variant}")
    ]
    assert any(s.flagged_span in line and s.service in line for line in flagged_lines), out

    # Independently, through Jaeger: the same trace has the flag on that span.
    spans = api.jaeger_trace(b.jaeger, trace_id)
    on_span = [
        sp
        for sp in spans
        if sp["_service"] == s.service
        and sp["name"] == s.flagged_span
        and attribute_map(sp).get(FLAG_KEY) == s.flag
    ]
    assert on_span and attribute_map(on_span[0])[FLAG_VARIANT] == s.variant

    # Its log records, by trace id, in the log store, and in the drill's output.
    records = api.logs_query(b.logs, api.trace_logs_query(trace_id))
    assert records and all(r.get("trace_id") == trace_id for r in records)
    assert re.search(r"^\[6/7\] logs: trace_id:" + trace_id, out, re.M)
    assert "(no log records" not in out

    # Scenario-specific evidence from the panel's gauges.
    if name == "feature-shift":
        psi = re.findall(r'feature_name="(\w+)".*\} = ([0-9.e+-]+)', block(out, "PSI of", "    "))
        assert {f for f, v in psi if float(v) > 0.2} >= {"monthly_charges", "tenure_months"}, out
    if name == "label-shift":
        accuracy = [float(v) for v in re.findall(r"\} = ([0-9.e+-]+)", panel)]
        assert accuracy and min(accuracy) < ACCURACY_MIN, out
        # Label shift moves realized accuracy, not the label-free estimate.
        estimated = re.findall(r"\} = ([0-9.e+-]+)", block(out, "estimated accuracy", "    "))
        assert estimated and float(estimated[0]) > ACCURACY_MIN > min(accuracy), out
    if name == "memory-leak":
        growth = [float(v) for v in re.findall(r"\} = ([0-9.e+-]+)", panel)]
        assert growth and max(growth) > 0, out  # bytes per second, growing

    # The same trace on its own: `modelobs trace ID`.
    view = modelobs(drill_stack, "trace", trace_id, timeout_s=60)
    assert view.returncode == 0, view.stderr
    assert view.stdout.startswith(f"trace {trace_id}: {len(spans)} spans")
    assert any(
        s.flagged_span in line and line.rstrip().endswith(f"{s.flag}={s.variant}")
        for line in view.stdout.splitlines()
    )
    assert f"logs ({len(records)} records, LogsQL trace_id:{trace_id})" in view.stdout
