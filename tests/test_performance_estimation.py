"""Label-free performance estimation (CBPE): the expected confusion matrix, the estimate against
realized accuracy under covariate shift (tracks) and label shift (disagrees), the gauges the
model service exports, and the calibration stored with the model.

Tolerance: on windows of 5000 predictions the estimated accuracy is within 0.03 of the realized
accuracy under covariate shift (sampling noise of the realized accuracy alone is about 0.006 per
standard deviation; the rest is the calibration's error, see the model's calibration.json), and
per-class precision and recall within 0.05.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from loguru import logger

from modelobs.apps import model_service
from modelobs.model import data, shifts, store
from modelobs.model.store import ModelBundle
from modelobs.monitoring.performance_estimation import Estimate, binary_rows, estimate

from .conftest import VALID_RECORD, Stack, make_settings
from .waiting import wait_until

WINDOW = 5000
ACCURACY_TOLERANCE = 0.03
PER_CLASS_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def pool() -> data.Dataset:
    """Fresh customers the model never saw (another seed than training)."""
    return data.generate(100_000, seed=11)


def _estimate_and_realized(bundle: ModelBundle, window: data.Dataset) -> tuple[Estimate, dict]:
    probabilities = bundle.estimator.predict_proba(bundle.encoder.encode_columns(window.columns))
    predicted, truth = probabilities.argmax(axis=1), window.labels
    realized: dict = {"accuracy": float((predicted == truth).mean())}
    for index, name in enumerate(data.CLASSES):
        hits = float(((predicted == index) & (truth == index)).sum())
        realized[("precision", name)] = hits / (predicted == index).sum()
        realized[("recall", name)] = hits / (truth == index).sum()
    return estimate(data.CLASSES, probabilities), realized


def test_estimate_is_the_expected_confusion_matrix() -> None:
    rows = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    found = estimate(("stay", "churn"), rows)
    assert found.size == 4
    assert found.accuracy == pytest.approx((0.9 + 0.8 + 0.6 + 0.7) / 4)
    # stay predicted twice (0.9, 0.6); churn twice (0.8, 0.7)
    assert found.precision == {
        "stay": pytest.approx((0.9 + 0.6) / 2),
        "churn": pytest.approx((0.8 + 0.7) / 2),
    }
    # expected stayers: 0.9 + 0.2 + 0.6 + 0.3; expected churners: 0.1 + 0.8 + 0.4 + 0.7
    assert found.recall == {
        "stay": pytest.approx(1.5 / 2.0),
        "churn": pytest.approx(1.5 / 2.0),
    }


def test_a_class_never_predicted_has_no_precision() -> None:
    found = estimate(("stay", "churn"), np.array([[0.9, 0.1], [0.7, 0.3]]))
    assert found.precision["churn"] is None
    assert found.recall["churn"] == pytest.approx(0.0)


def test_stored_scores_give_back_the_probability_rows() -> None:
    """The prediction store keeps (class, score): enough for a two-class model's estimate."""
    rows = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    stored = [(("stay", "churn")[r.argmax()], float(r.max())) for r in rows]
    rebuilt = binary_rows(("stay", "churn"), stored)
    assert np.allclose(rebuilt, rows)
    assert estimate(("stay", "churn"), np.array(rebuilt)) == estimate(("stay", "churn"), rows)
    with pytest.raises(ValueError, match="2 classes"):
        binary_rows(("a", "b", "c"), stored)


def test_rows_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(ValueError, match="2 probabilities"):
        estimate(("stay", "churn"), np.array([[0.2, 0.3, 0.5]]))


@pytest.mark.parametrize("strength", [0.5, 1.0, 2.0])
def test_estimate_tracks_realized_accuracy_under_covariate_shift(
    bundle: ModelBundle, pool: data.Dataset, strength: float
) -> None:
    unshifted, _ = _estimate_and_realized(
        bundle, shifts.resample(pool, np.ones(len(pool)), WINDOW, 1)
    )
    shifted = shifts.uncertain_customers(pool, strength, WINDOW, seed=2)
    found, realized = _estimate_and_realized(bundle, shifted)
    # the shift really costs accuracy, and the estimate sees it without a label
    assert realized["accuracy"] < unshifted.accuracy - 0.04
    assert found.accuracy < unshifted.accuracy - 0.04
    assert found.accuracy == pytest.approx(realized["accuracy"], abs=ACCURACY_TOLERANCE)
    for kind in ("precision", "recall"):
        values = getattr(found, kind)
        for name in data.CLASSES:
            assert values[name] == pytest.approx(realized[(kind, name)], abs=PER_CLASS_TOLERANCE), (
                kind,
                name,
            )


def test_estimate_tracks_a_feature_defined_shift(bundle: ModelBundle, pool: data.Dataset) -> None:
    found, realized = _estimate_and_realized(bundle, shifts.new_customers(pool, 6, WINDOW, 3))
    assert found.accuracy == pytest.approx(realized["accuracy"], abs=ACCURACY_TOLERANCE)


def test_estimate_and_realized_accuracy_disagree_under_label_shift(
    bundle: ModelBundle, pool: data.Dataset
) -> None:
    """Churners from 39 % to 80 % of traffic, each class's customers as before: P(label |
    features) changed, which calibrated probabilities cannot know (runbook
    ModelEstimatedAccuracyLow, 'Estimate and realized accuracy disagree')."""
    found, realized = _estimate_and_realized(bundle, shifts.churn_share(pool, 0.8, WINDOW, 4))
    assert found.accuracy - realized["accuracy"] > ACCURACY_TOLERANCE
    # the class that grew is predicted less often than it occurs: its recall is overestimated
    assert found.recall["churn"] - realized[("recall", "churn")] > PER_CLASS_TOLERANCE


def test_model_service_exports_the_estimate_of_its_answers(stack: Stack) -> None:
    records = [VALID_RECORD] * 3 + [{**VALID_RECORD, "tenure_months": 60, "contract": "two-year"}]
    r = httpx.post(f"{stack.model_url}/predict", json={"records": records})
    assert r.status_code == 200
    answers = r.json()["predictions"]
    assert {a["prediction"] for a in answers} == {"churn", "stay"}, "both classes predicted"

    # The embedded monitor reads the answers back from the store (flushed every 0.1 s,
    # polled every 0.2 s): wait until its estimation window holds all of them.
    def window_full() -> dict | None:
        points = stack.model.metric_points()
        sizes = points.get("modelobs.model.estimation_window.size", (None, []))[1]
        return points if sizes and sizes[0].value == len(records) else None

    points = wait_until(
        window_full, f"estimation window never reached {len(records)}", timeout_s=30, poll_s=0.05
    )
    (accuracy,) = points["modelobs.model.estimated_accuracy"][1]
    assert accuracy.value == pytest.approx(np.mean([a["score"] for a in answers]), abs=1e-5)
    assert accuracy.attributes["model.version"]
    (size,) = points["modelobs.model.estimation_window.size"][1]
    assert size.value == len(records)
    precision = {
        p.attributes["class"]: p.value for p in points["modelobs.model.estimated_precision"][1]
    }
    recall = {p.attributes["class"]: p.value for p in points["modelobs.model.estimated_recall"][1]}
    for name in data.CLASSES:
        chosen = [a["score"] for a in answers if a["prediction"] == name]
        assert precision[name] == pytest.approx(np.mean(chosen), abs=1e-5)
        expected = sum(a["probabilities"][name] for a in answers)
        assert recall[name] == pytest.approx(sum(chosen) / expected, abs=1e-5)


def test_the_calibration_is_saved_with_the_model(bundle: ModelBundle, model_dir: Path) -> None:
    report = store.load(model_dir).calibration
    assert report == bundle.calibration
    assert report.method == "sigmoid" and report.calibration_rows > 0 and report.test_rows > 0
    # the training-time check of the estimate on held-out rows
    assert report.estimated_accuracy == pytest.approx(report.accuracy, abs=ACCURACY_TOLERANCE)


@pytest.fixture
def old_model(model_dir: Path, tmp_path: Path) -> Path:
    """A bundle as this project saved it before calibration: no calibration.json."""
    old = tmp_path / "old-model"
    shutil.copytree(model_dir, old)
    (old / store.CALIBRATION_FILE).unlink()
    return old


def test_a_model_saved_before_calibration_is_refused_with_the_reason(old_model: Path) -> None:
    with pytest.raises(store.ModelOutdatedError, match=r"before probabilities were calibrated"):
        store.load(old_model)


def test_the_service_retrains_a_model_saved_before_calibration(
    old_model: Path, tmp_path: Path
) -> None:
    old = old_model
    said: list[str] = []
    sink = logger.add(lambda message: said.append(str(message)), level="INFO")
    try:
        bundle = model_service.load_or_train(make_settings(old, tmp_path))
    finally:
        logger.remove(sink)
    assert (old / store.CALIBRATION_FILE).exists()
    assert store.load(old).calibration == bundle.calibration
    assert any("before probabilities were calibrated" in line for line in said), said
