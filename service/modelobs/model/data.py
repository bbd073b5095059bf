"""A deterministic synthetic churn data set: nothing is downloaded, every run is identical.

Customers of a subscription service, with numeric and categorical features whose
relation to churn is known, so drift scenarios can shift them on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schema import Feature

FEATURES: tuple[Feature, ...] = (
    Feature("tenure_months", "numeric", integer=True, description="months as a customer"),
    Feature("monthly_charges", "numeric", description="current monthly bill"),
    Feature("support_calls", "numeric", integer=True, description="calls in the last 90 days"),
    Feature("age", "numeric", integer=True, description="customer age in years"),
    Feature("data_usage_gb", "numeric", description="mobile data used last month"),
    Feature(
        "contract",
        "categorical",
        categories=("month-to-month", "one-year", "two-year"),
        description="contract type",
    ),
    Feature(
        "payment_method",
        "categorical",
        categories=("card", "bank-transfer", "electronic-check", "mailed-check"),
        description="how the customer pays",
    ),
)
CLASSES: tuple[str, ...] = ("stay", "churn")

# A valid request record (a likely churner), for docs, tests and benchmarks.
EXAMPLE_RECORD: dict[str, float | str] = {
    "tenure_months": 3,
    "monthly_charges": 99.5,
    "support_calls": 4,
    "age": 30,
    "data_usage_gb": 3.3,
    "contract": "month-to-month",
    "payment_method": "card",
}


@dataclass(frozen=True)
class Dataset:
    """Column-oriented records and their labels (indices into CLASSES)."""

    columns: dict[str, np.ndarray]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def records(self, start: int = 0, stop: int | None = None) -> list[dict[str, float | str]]:
        """Rows as JSON-ready dicts, e.g. for the load generator."""
        stop = len(self) if stop is None else stop
        out: list[dict[str, float | str]] = []
        for i in range(start, stop):
            row: dict[str, float | str] = {}
            for f in FEATURES:
                value = self.columns[f.name][i]
                if f.kind == "categorical":
                    row[f.name] = str(value)
                elif f.integer:
                    row[f.name] = int(value)
                else:
                    row[f.name] = round(float(value), 2)
            out.append(row)
        return out


def generate(n: int, seed: int = 7, shift: dict[str, float] | None = None) -> Dataset:
    """Draw ``n`` customers. ``shift`` adds that many standard deviations to numeric features."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    tenure = np.clip(rng.gamma(2.0, 14.0, n), 0, 120).round()
    charges = np.clip(rng.normal(70.0, 25.0, n), 15, 200).round(2)
    calls = rng.poisson(1.5, n).astype(float)
    age = np.clip(rng.normal(45, 14, n), 18, 95).round()
    usage = np.clip(rng.lognormal(1.5, 0.6, n), 0, 100).round(2)
    contract = rng.choice(np.array(FEATURES[5].categories, dtype=object), n, p=[0.55, 0.25, 0.20])
    payment = rng.choice(
        np.array(FEATURES[6].categories, dtype=object), n, p=[0.35, 0.25, 0.30, 0.10]
    )
    columns: dict[str, np.ndarray] = {
        "tenure_months": tenure,
        "monthly_charges": charges,
        "support_calls": calls,
        "age": age,
        "data_usage_gb": usage,
        "contract": contract,
        "payment_method": payment,
    }
    # Labels follow the unshifted features: a shift moves what the model sees, not the truth.
    prob = 1.0 / (1.0 + np.exp(-churn_logit(columns)))
    labels = (rng.random(n) < prob).astype(np.int64)
    for name, sds in shift.items():
        col = columns[name]
        columns[name] = col + sds * float(np.std(col))
    return Dataset(columns=columns, labels=labels)


def churn_logit(columns: dict[str, np.ndarray]) -> np.ndarray:
    """The true log-odds of churn given the features: P(label | features) of this data set,
    which a covariate shift keeps and a label shift changes."""
    return (
        -1.2
        - 0.04 * (columns["tenure_months"] - 24)
        + 0.025 * (columns["monthly_charges"] - 70)
        + 0.45 * (columns["support_calls"] - 1.5)
        - 0.01 * (columns["age"] - 45)
        + 1.3 * (columns["contract"] == "month-to-month")
        - 0.8 * (columns["contract"] == "two-year")
        + 0.6 * (columns["payment_method"] == "electronic-check")
    )
