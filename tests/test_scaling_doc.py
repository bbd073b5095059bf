"""docs/scaling.md is held to the measurements it quotes (bench/results/capacity.json): every
figure in its tables is the measured one, each collector row names the telemetrygen command
that produced it, and the worked example follows from the figures by the page's formulas."""

from __future__ import annotations

import json
import math
import re

import pytest
from deploy.native import REPO

DOC = (REPO / "docs" / "scaling.md").read_text()
RESULTS = json.loads((REPO / "bench" / "results" / "capacity.json").read_text())
MODEL, GATEWAY = RESULTS["model_service"], RESULTS["collector"]["gateway"]
AGENT = RESULTS["collector"]["agent"]
SERIES = RESULTS["series_per_replica"]
SPAN_METRICS = "traces_span_metrics"
# The worked example's inputs, as the page states them.
R, GATEWAYS, EXPORT_INTERVAL_S, DECISION_WAIT_S = 1000, 2, 5, 10


def row(*cells: object) -> str:
    return "| " + " | ".join(f"{c:,}" if isinstance(c, int) else str(c) for c in cells) + " |"


def split(instance: str) -> tuple[int, int]:
    """Series of one replica: (without span metrics, span metrics)."""
    by_metric = SERIES[instance]["by_metric"]
    spans = sum(n for name, n in by_metric.items() if name.startswith(SPAN_METRICS))
    return SERIES[instance]["total"] - spans, spans


@pytest.mark.parametrize("tier", ["gateway", "agent"])
def test_collector_rows_are_the_measured_figures(tier: str) -> None:
    for signal, figure in RESULTS["collector"][tier].items():
        assert row(tier, signal, figure["per_cpu_second"]) in DOC, (tier, signal)
        command = re.sub(r"--otlp-endpoint \S+", "--otlp-endpoint $COLLECTOR", figure["command"])
        assert f"`{command}`" in DOC or tier == "agent", command


def test_the_page_names_the_command_and_the_machine() -> None:
    assert RESULTS["command"].removesuffix(" --seconds 20") in DOC
    assert f"load average about {round(RESULTS['machine']['load_average_at_start'][0])}" in DOC


def test_service_rows_are_the_measured_figures() -> None:
    model_rest, model_spans = split("bench-model-0")
    gateway_rest, gateway_spans = split("bench-gateway-0")
    per_request = MODEL["telemetry_per_request"]
    expected = [
        ("model service: predictions per CPU-second", MODEL["predictions_per_model_cpu_second"]),
        ("gateway service: requests per CPU-second", MODEL["requests_per_gateway_cpu_second"]),
        ("spans per request (both services)", round(per_request["spans"])),
        ("log records per request", round(per_request["log records"])),
        ("Prometheus series, one model-service replica", model_rest + model_spans),
        ("Prometheus series, one gateway-service replica", gateway_rest + gateway_spans),
    ]
    for label, value in expected:
        assert row(label, value) in DOC, label
    rows = DOC.split("| of which span metrics (per gateway collector that saw it) | ")
    assert [int(r.split(" |")[0]) for r in rows[1:]] == [model_spans, gateway_spans]


def test_worked_example_follows_from_the_figures() -> None:
    spans_per_request = round(MODEL["telemetry_per_request"]["spans"])
    model = math.ceil(R / (MODEL["predictions_per_model_cpu_second"] * 0.6))
    gateway = math.ceil(R / (MODEL["requests_per_gateway_cpu_second"] * 0.6))
    (model_rest, model_spans), (gateway_rest, gateway_spans) = (
        split("bench-model-0"),
        split("bench-gateway-0"),
    )
    data_points = round(
        ((model + 1) * model_rest + (gateway + 1) * gateway_rest) / EXPORT_INTERVAL_S
    )

    def cores(tier: dict) -> float:
        load = (
            spans_per_request * R / tier["spans"]["per_cpu_second"]
            + data_points / tier["histogram data points"]["per_cpu_second"]
            + R / tier["log records"]["per_cpu_second"]
        )
        return math.ceil(load / 0.5 * 100) / 100

    series = (model + 1) * (model_rest + GATEWAYS * model_spans) + (gateway + 1) * (
        gateway_rest + GATEWAYS * gateway_spans
    )
    held = DECISION_WAIT_S * R // GATEWAYS * 2
    for label, value in [
        ("model-service replicas", f"{model} + 1 spare"),
        ("gateway-service replicas", f"{gateway} + 1 spare"),
        ("metric data points per second from the services (D)", f"{data_points:,}"),
        ("agent cores, all nodes together", f"{cores(AGENT):.2f}"),
        ("Prometheus series", f"{series:,}"),
    ]:
        assert row(label, value) in DOC, label
    assert f"| gateway-collector cores | {cores(GATEWAY):.2f} (" in DOC
    assert f"(decision wait {DECISION_WAIT_S} s) | {held:,} (" in DOC
    per_core = 0.5 * GATEWAY["spans"]["per_cpu_second"] / spans_per_request
    assert f"about\n{round(per_core, -2):,.0f} requests/s of spans" in DOC
