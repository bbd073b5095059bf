"""Train the churn classifier on the deterministic data set, calibrate its probabilities on
held-out rows, and save it with its schema and calibration report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from . import data
from .calibration import calibrate
from .features import Encoder
from .schema import ModelSchema
from .store import ModelBundle, save

REFERENCE_SIZE = 5000


def train(
    name: str = "churn-classifier",
    version: str = "1.0.0",
    n_samples: int = 20_000,
    seed: int = 7,
) -> ModelBundle:
    """Fit on a deterministic draw (three fifths), calibrate on the next fifth, and measure on
    the last fifth: the metrics saved in the schema and the calibration report."""
    dataset = data.generate(n_samples, seed=seed)
    schema = ModelSchema(name=name, version=version, features=data.FEATURES, classes=data.CLASSES)
    encoder = Encoder(schema)
    x = encoder.encode_columns(dataset.columns)
    y = dataset.labels
    fit_rows, split = int(n_samples * 0.6), int(n_samples * 0.8)
    classifier = Pipeline(
        [("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=500))]
    )
    classifier.fit(x[:fit_rows], y[:fit_rows])
    estimator, calibration = calibrate(
        classifier, x[fit_rows:split], y[fit_rows:split], x[split:], y[split:]
    )
    predicted = estimator.predict(x[split:])
    metrics = {
        "accuracy": round(float(accuracy_score(y[split:], predicted)), 4),
        "f1": round(float(f1_score(y[split:], predicted)), 4),
    }
    schema = ModelSchema(
        name=name,
        version=version,
        features=data.FEATURES,
        classes=data.CLASSES,
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        metrics=metrics,
    )
    reference_rows = np.arange(min(REFERENCE_SIZE, fit_rows))
    reference = {k: v[reference_rows] for k, v in dataset.columns.items()}
    return ModelBundle(
        schema=schema, estimator=estimator, reference=reference, calibration=calibration
    )


def train_and_save(directory: Path, **kwargs: object) -> ModelBundle:
    bundle = train(**kwargs)  # type: ignore[arg-type]
    save(bundle, directory)
    return bundle
