"""Shifted populations drawn from the synthetic data set by resampling its rows, for proving the
estimated accuracy (tests/test_performance_estimation.py, bench/cbpe_nannyml.py).

Resampling rows with weights that depend only on the features is a covariate shift: the
features' mix changes while P(label | features) stays the data set's. Weights that depend only
on the label are a label shift: the class mix changes while P(features | label) stays.
"""

from __future__ import annotations

import numpy as np

from .data import Dataset, churn_logit


def resample(dataset: Dataset, weights: np.ndarray, n: int, seed: int) -> Dataset:
    """``n`` rows drawn with replacement, each with probability proportional to its weight."""
    weights = np.asarray(weights, dtype=float)
    rows = np.random.default_rng(seed).choice(len(dataset), n, p=weights / weights.sum())
    return Dataset(
        columns={name: column[rows] for name, column in dataset.columns.items()},
        labels=dataset.labels[rows],
    )


def uncertain_customers(dataset: Dataset, strength: float, n: int, seed: int) -> Dataset:
    """A covariate shift towards customers whose churn is a coin toss (true log-odds near 0),
    e.g. a campaign bringing in borderline customers: accuracy falls as ``strength`` grows,
    while P(label | features) is unchanged."""
    weights = np.exp(-strength * np.abs(churn_logit(dataset.columns)))
    return resample(dataset, weights, n, seed)


def new_customers(dataset: Dataset, months: float, n: int, seed: int) -> Dataset:
    """A covariate shift towards short tenures (weight ``exp(-tenure / months)``)."""
    weights = np.exp(-dataset.columns["tenure_months"] / months)
    return resample(dataset, weights, n, seed)


def churn_share(dataset: Dataset, share: float, n: int, seed: int) -> Dataset:
    """A label shift: churners make up ``share`` of the rows, each class's features as before."""
    churners = dataset.labels == 1
    weights = np.where(churners, share / churners.mean(), (1 - share) / (1 - churners.mean()))
    return resample(dataset, weights, n, seed)
