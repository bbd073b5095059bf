"""Save and load a model bundle: estimator, schema, calibration report, and a reference sample
for drift."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import CALIBRATION_FORMAT, CalibrationReport, serving_predict_proba
from .features import Encoder
from .schema import ModelSchema

ESTIMATOR_FILE = "model.pkl"
SCHEMA_FILE = "schema.json"
REFERENCE_FILE = "reference.npz"
CALIBRATION_FILE = "calibration.json"


class ModelNotFoundError(FileNotFoundError):
    """No complete model bundle in the directory."""


class ModelOutdatedError(ModelNotFoundError):
    """A bundle saved before its probabilities were calibrated (or with another calibration
    format): the estimated accuracy cannot trust it, so it is retrained."""


@dataclass
class ModelBundle:
    """A trained model ready to serve."""

    schema: ModelSchema
    estimator: Any
    reference: dict[str, np.ndarray]
    calibration: CalibrationReport

    def __post_init__(self) -> None:
        self.encoder = Encoder(self.schema)
        self._predict_proba = serving_predict_proba(self.estimator)

    def predict_proba(self, records: list[dict[str, float | str]]) -> np.ndarray:
        return self._predict_proba(self.encoder.encode(records))


def save(bundle: ModelBundle, directory: Path) -> None:
    """Write atomically: a crash mid-save never leaves a half bundle behind."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=directory.parent))
    try:
        with open(staging / ESTIMATOR_FILE, "wb") as fh:
            pickle.dump(bundle.estimator, fh, protocol=pickle.HIGHEST_PROTOCOL)
        (staging / SCHEMA_FILE).write_text(json.dumps(bundle.schema.to_dict(), indent=2))
        (staging / CALIBRATION_FILE).write_text(json.dumps(bundle.calibration.to_dict(), indent=2))
        np.savez_compressed(
            staging / REFERENCE_FILE,
            **{
                k: np.asarray(v, dtype=object if v.dtype == object else v.dtype)
                for k, v in bundle.reference.items()
            },
        )
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def load(directory: Path) -> ModelBundle:
    """Load a bundle this project wrote (the pickle is trusted: it is our own artifact)."""
    files = [directory / ESTIMATOR_FILE, directory / SCHEMA_FILE, directory / REFERENCE_FILE]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise ModelNotFoundError(f"no model in {directory} (missing {', '.join(missing)})")
    calibration = _calibration(directory)
    schema = ModelSchema.from_dict(json.loads((directory / SCHEMA_FILE).read_text()))
    with open(directory / ESTIMATOR_FILE, "rb") as fh:
        estimator = pickle.load(fh)
    with np.load(directory / REFERENCE_FILE, allow_pickle=True) as npz:
        reference = {name: npz[name] for name in npz.files}
    return ModelBundle(
        schema=schema, estimator=estimator, reference=reference, calibration=calibration
    )


def _calibration(directory: Path) -> CalibrationReport:
    path = directory / CALIBRATION_FILE
    if not path.exists():
        raise ModelOutdatedError(
            f"the model in {directory} was saved before probabilities were calibrated "
            f"(no {CALIBRATION_FILE}); the estimated accuracy needs calibrated probabilities: "
            "retrain it (`modelobs train`)"
        )
    data = json.loads(path.read_text())
    if data.get("format") != CALIBRATION_FORMAT:
        raise ModelOutdatedError(
            f"the model in {directory} has calibration format {data.get('format')!r}, "
            f"this version reads {CALIBRATION_FORMAT}: retrain it (`modelobs train`)"
        )
    return CalibrationReport.from_dict(data)
