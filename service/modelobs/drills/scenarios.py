"""One drill per fault flag: the flag and variant it switches on, the alert that must fire,
and where the evidence is (the panel's query, the exemplar or trace search that leads to a
trace, the span that must carry the flag, further gauges to read).

The panel queries are the dashboards' and runbooks' own expressions with the service filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

P99 = "service_name:http_server_request_duration_seconds:p99_rate5m"
ERROR_RATIO = "service_name:http_server_request_errors:ratio_rate5m"
HTTP_BUCKETS = "http_server_request_duration_seconds_bucket"
ESTIMATED_ACCURACY = (
    "estimated accuracy (label-free, from the calibrated probabilities)",
    'modelobs_model_estimated_accuracy{service_name="model-service"}',
)


@dataclass(frozen=True)
class DrillScenario:
    name: str
    flag: str
    variant: str
    alert: str
    service: str
    what: str
    panel_query: str
    # Exemplars of this selector lead to a trace; pick the slowest or the newest.
    exemplar_selector: str | None = None
    exemplar_pick: str = "newest"
    # Without exemplars (a fault that is not slow or failing): Jaeger's search by attribute.
    trace_search: dict[str, str] = field(default_factory=dict)
    # The span (by name, in ``service``) that must carry the flag.
    flagged_span: str = ""
    evidence: tuple[tuple[str, str], ...] = ()


def _svc(service: str) -> str:
    return f'{{service_name="{service}"}}'


SCENARIOS: dict[str, DrillScenario] = {
    s.name: s
    for s in (
        DrillScenario(
            name="slow-inference",
            flag="inference-latency",
            variant="on",
            alert="HttpLatencyP99High",
            service="model-service",
            what="a share of model inference calls is slowed",
            panel_query=P99 + _svc("model-service"),
            exemplar_selector=f'{HTTP_BUCKETS}{{service_name="model-service",http_route="/predict"}}',
            exemplar_pick="slowest",
            flagged_span="model inference",
        ),
        DrillScenario(
            name="inference-errors",
            flag="inference-errors",
            variant="on",
            alert="HttpErrorRatioHigh",
            service="model-service",
            what="a share of model inference calls fails",
            panel_query=ERROR_RATIO + _svc("model-service"),
            exemplar_selector=(
                f'{HTTP_BUCKETS}{{service_name="model-service",http_response_status_code="500"}}'
            ),
            flagged_span="model inference",
        ),
        DrillScenario(
            name="failing-hop",
            flag="model-hop",
            variant="failing",
            alert="HttpErrorRatioHigh",
            service="gateway",
            what="the gateway cannot reach the model service",
            panel_query=ERROR_RATIO + _svc("gateway"),
            exemplar_selector=(
                f'{HTTP_BUCKETS}{{service_name="gateway",http_response_status_code="503"}}'
            ),
            flagged_span="POST",
        ),
        DrillScenario(
            name="slow-hop",
            flag="model-hop",
            variant="slow",
            alert="HttpLatencyP99High",
            service="gateway",
            what="the gateway's calls to the model service are slowed",
            panel_query=P99 + _svc("gateway"),
            exemplar_selector=f'{HTTP_BUCKETS}{{service_name="gateway",http_route="/v1/predict"}}',
            exemplar_pick="slowest",
            flagged_span="POST",
        ),
        DrillScenario(
            name="memory-leak",
            flag="memory-leak",
            variant="on",
            alert="ProcessMemoryGrowing",
            service="model-service",
            what="the model service keeps memory for every prediction",
            panel_query=(
                "max by (service_name, service_instance_id) "
                '(deriv(process_memory_usage_bytes{service_name="model-service"}[15m]))'
            ),
            trace_search={"feature_flag.key": "memory-leak"},
            flagged_span="model inference",
            evidence=(
                (
                    "resident memory",
                    'process_memory_usage_bytes{service_name="model-service"}',
                ),
            ),
        ),
        DrillScenario(
            name="feature-shift",
            flag="feature-shift",
            variant="on",
            alert="ModelDriftDetected",
            service="model-service",
            what="the load generator's inputs move (monthly_charges, tenure_months +2 sd)",
            panel_query=(
                'max by (feature_name) (modelobs_drift_detected{service_name="model-service"})'
            ),
            trace_search={"feature_flag.key": "feature-shift"},
            flagged_span="POST /predict",
            evidence=(
                (
                    "PSI of the shifted features",
                    'modelobs_drift_psi{service_name="model-service",'
                    'feature_name=~"monthly_charges|tenure_months"}',
                ),
                (
                    "KS statistic of the shifted features",
                    'modelobs_drift_ks_statistic{service_name="model-service",'
                    'feature_name=~"monthly_charges|tenure_months"}',
                ),
                ("share of drifted features", 'modelobs_drift_share{service_name="model-service"}'),
                ESTIMATED_ACCURACY,
            ),
        ),
        DrillScenario(
            name="label-shift",
            flag="label-shift",
            variant="on",
            alert="ModelAccuracyLow",
            service="model-service",
            what="the labels coming back say 'churn' far more often than the model predicts",
            panel_query='modelobs_model_accuracy{service_name="model-service"}',
            trace_search={"feature_flag.key": "label-shift"},
            flagged_span="POST /feedback",
            evidence=(
                (
                    "labels accepted per second",
                    'sum(rate(modelobs_feedback_total{service_name="model-service",'
                    'feedback_outcome="accepted"}[1m]))',
                ),
                ESTIMATED_ACCURACY,
                (
                    "predicted churn share (label-free: it does not move under label shift)",
                    'sum(rate(modelobs_predictions_total{prediction_class="churn"}[1m])) '
                    "/ sum(rate(modelobs_predictions_total[1m]))",
                ),
            ),
        ),
    )
}
