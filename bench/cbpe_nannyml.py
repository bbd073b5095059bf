"""Comparison (not a timing): the model service's estimated accuracy against NannyML's CBPE on
the same windows, and both against the realized accuracy the labels give.

The windows are the shifted populations of tests/test_performance_estimation.py
(modelobs.model.shifts): none, covariate shifts of growing strength, a feature-defined
covariate shift, and label shifts. NannyML is fitted on labelled reference rows of unshifted
customers (six windows, the fewest it takes without a warning; its CBPE calibrates the scores on
them), then estimates the analysis windows, one chunk each. Needs the optional dependency group
(a large tree, kept out of `make venv`):

    UV_PROJECT_ENVIRONMENT=.venv-cbpe uv sync --frozen --extra cbpe-compare
    .venv-cbpe/bin/python bench/cbpe_nannyml.py            # about half a minute

Writes bench/results/cbpe_nannyml.json.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

# NannyML reports usage to a third-party analytics host unless told not to.
os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"

import nannyml
import numpy as np
import pandas as pd

from modelobs.model import data, shifts
from modelobs.model.train import train
from modelobs.monitoring.performance_estimation import estimate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import write_results

WINDOW = 5000
SHIFTS: dict[str, Callable[[data.Dataset, int], data.Dataset]] = {
    "none": lambda pool, seed: shifts.resample(pool, np.ones(len(pool)), WINDOW, seed),
    "covariate: uncertain customers x0.5": lambda p, s: shifts.uncertain_customers(
        p, 0.5, WINDOW, s
    ),
    "covariate: uncertain customers x1": lambda p, s: shifts.uncertain_customers(p, 1, WINDOW, s),
    "covariate: uncertain customers x2": lambda p, s: shifts.uncertain_customers(p, 2, WINDOW, s),
    "covariate: new customers (tenure ~6 months)": lambda p, s: shifts.new_customers(
        p, 6, WINDOW, s
    ),
    "label: churners 10%": lambda p, s: shifts.churn_share(p, 0.1, WINDOW, s),
    "label: churners 80%": lambda p, s: shifts.churn_share(p, 0.8, WINDOW, s),
}


def frame(probabilities: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "y_pred_proba": probabilities[:, 1],
            "y_pred": probabilities.argmax(axis=1),
            "y_true": labels,
        }
    )


def main() -> int:
    bundle = train()
    pool = data.generate(100_000, seed=11)

    def scored(window: data.Dataset) -> np.ndarray:
        return bundle.estimator.predict_proba(bundle.encoder.encode_columns(window.columns))

    reference = shifts.resample(pool, np.ones(len(pool)), 6 * WINDOW, 100)
    cbpe = nannyml.CBPE(
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="y_true",
        metrics=["accuracy"],
        chunk_size=WINDOW,
        problem_type="classification_binary",
    )
    cbpe.fit(frame(scored(reference), reference.labels))

    windows = {name: draw(pool, 7) for name, draw in SHIFTS.items()}
    scores = {name: scored(window) for name, window in windows.items()}
    analysis = pd.concat(
        [frame(scores[name], window.labels) for name, window in windows.items()],
        ignore_index=True,
    )
    result = cbpe.estimate(analysis).filter(period="analysis").to_df()
    theirs_by_chunk = result[("accuracy", "value")].tolist()
    assert len(theirs_by_chunk) == len(windows), "one NannyML chunk per window"

    rows = []
    for (name, window), theirs in zip(windows.items(), theirs_by_chunk, strict=True):
        probabilities = scores[name]
        realized = float((probabilities.argmax(axis=1) == window.labels).mean())
        ours = estimate(data.CLASSES, probabilities).accuracy
        rows.append(
            {
                "window": name,
                "realized_accuracy": round(realized, 4),
                "modelobs_estimate": round(ours, 4),
                "nannyml_cbpe_estimate": round(float(theirs), 4),
                "modelobs_minus_realized": round(ours - realized, 4),
                "nannyml_minus_realized": round(float(theirs) - realized, 4),
                "modelobs_minus_nannyml": round(ours - float(theirs), 4),
            }
        )
    width = max(len(r["window"]) for r in rows)
    print(f"{'window':{width}s}  realized  modelobs  nannyml")
    for r in rows:
        print(
            f"{r['window']:{width}s}  {r['realized_accuracy']:.3f}     "
            f"{r['modelobs_estimate']:.3f}     {r['nannyml_cbpe_estimate']:.3f}"
        )
    out = write_results(
        "cbpe_nannyml",
        {
            "window_rows": WINDOW,
            "nannyml_version": nannyml.__version__,
            "calibration": bundle.calibration.to_dict(),
            "windows": rows,
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
