"""Turn validated records into the model's numeric matrix (one-hot for categories)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .schema import ModelSchema


class Encoder:
    """Column layout fixed by the schema, so training and serving encode identically."""

    def __init__(self, schema: ModelSchema) -> None:
        self._plan: list[tuple[str, int, dict[str, int] | None]] = []
        width = 0
        for feature in schema.features:
            if feature.kind == "categorical":
                index = {c: width + i for i, c in enumerate(feature.categories)}
                self._plan.append((feature.name, width, index))
                width += len(feature.categories)
            else:
                self._plan.append((feature.name, width, None))
                width += 1
        self.width = width

    def encode(self, records: Sequence[Mapping[str, float | str]]) -> np.ndarray:
        matrix = np.zeros((len(records), self.width), dtype=np.float64)
        for row, record in enumerate(records):
            for name, column, categories in self._plan:
                value = record[name]
                if categories is None:
                    matrix[row, column] = value
                else:
                    matrix[row, categories[value]] = 1.0  # type: ignore[index]
        return matrix

    def encode_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Vectorised encoding of a column-oriented data set (training)."""
        n = len(next(iter(columns.values())))
        matrix = np.zeros((n, self.width), dtype=np.float64)
        for name, column, categories in self._plan:
            values = columns[name]
            if categories is None:
                matrix[:, column] = values.astype(np.float64)
            else:
                for category, col in categories.items():
                    matrix[:, col] = values == category
        return matrix
