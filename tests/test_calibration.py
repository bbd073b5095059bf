"""The request path's calibrated probabilities (model/calibration.py's serving_predict_proba)
are scikit-learn's, bit for bit, and anything the fast path does not cover falls back to
scikit-learn itself."""

from __future__ import annotations

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from modelobs.model.calibration import serving_predict_proba
from modelobs.model.data import generate
from modelobs.model.store import ModelBundle


def test_served_probabilities_equal_scikit_learns_bit_for_bit(bundle: ModelBundle) -> None:
    rows = [
        *generate(3000, seed=11).records(),
        *generate(1000, seed=12, shift={"monthly_charges": 3.0, "tenure_months": -2.0}).records(),
    ]
    x = bundle.encoder.encode(rows)
    expected = bundle.estimator.predict_proba(x)
    served = serving_predict_proba(bundle.estimator)
    assert served is not bundle.estimator.predict_proba  # the fast path is the one tested
    assert np.array_equal(served(x), expected)
    # One row at a time, as the service mostly calls it (against scikit-learn on that row:
    # a one-row product may round differently from the same row inside a batch).
    for row in rows[::97]:
        one = bundle.encoder.encode([row])
        assert np.array_equal(bundle.predict_proba([row]), bundle.estimator.predict_proba(one))


def test_extreme_scores_stay_probabilities(bundle: ModelBundle) -> None:
    x = bundle.encoder.encode(generate(10, seed=3).records()) * 1e6
    served = serving_predict_proba(bundle.estimator)(x)
    assert np.array_equal(served, bundle.estimator.predict_proba(x))
    assert ((served >= 0) & (served <= 1)).all()


def test_what_the_fast_path_does_not_cover_is_scikit_learns_own() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 3))
    y2 = (x[:, 0] > 0).astype(int)
    y3 = np.digitize(x[:, 0], [-0.5, 0.5])
    fitted = LogisticRegression().fit(x, y2)
    no_decision = DecisionTreeClassifier(max_depth=3).fit(x, y2)
    multiclass = LogisticRegression().fit(x, y3)
    cases = [
        CalibratedClassifierCV(FrozenEstimator(fitted), method="isotonic").fit(x, y2),
        CalibratedClassifierCV(FrozenEstimator(no_decision), method="sigmoid").fit(x, y2),
        CalibratedClassifierCV(FrozenEstimator(multiclass), method="sigmoid").fit(x, y3),
        CalibratedClassifierCV(LogisticRegression(), method="sigmoid", cv=3).fit(x, y2),
        fitted,
    ]
    for model in cases:
        assert serving_predict_proba(model) == model.predict_proba
