"""The model service's own instruments (names and attributes per docs/contract.md)."""

from __future__ import annotations

from opentelemetry import metrics

from .prediction_log import FeedbackOutcome

# A linear model answers in well under a millisecond; a slow host or a fault drill in
# hundreds of milliseconds: buckets cover both ends.
INFERENCE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
SCORE_BUCKETS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)


class ModelMetrics:
    """Counts predictions and feedback, times inference, and tracks how confident the model
    is."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.predictions = meter.create_counter(
            "modelobs.predictions",
            unit="{prediction}",
            description="Predictions served, by model version and predicted class",
        )
        self.inference_duration = meter.create_histogram(
            "modelobs.inference.duration",
            unit="s",
            description="Time spent in the model's predict call, per request",
            explicit_bucket_boundaries_advisory=list(INFERENCE_BUCKETS),
        )
        self.score = meter.create_histogram(
            "modelobs.prediction.score",
            unit="1",
            description="Probability of the predicted class",
            explicit_bucket_boundaries_advisory=list(SCORE_BUCKETS),
        )
        self.feedback = meter.create_counter(
            "modelobs.feedback", unit="{label}", description="Feedback received, by outcome"
        )
        for outcome in FeedbackOutcome:  # a series at 0 for every outcome from the start
            self.feedback.add(0, {"feedback.outcome": outcome.value})
