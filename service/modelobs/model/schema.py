"""The feature schema: what a valid record looks like, saved next to the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FeatureKind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class Feature:
    """One input feature. Numeric features may be restricted to integers."""

    name: str
    kind: FeatureKind
    categories: tuple[str, ...] = ()
    integer: bool = False
    description: str = ""


@dataclass(frozen=True)
class ModelSchema:
    """Everything a caller needs to build a valid request, and the model's identity."""

    name: str
    version: str
    features: tuple[Feature, ...]
    classes: tuple[str, ...]
    trained_at: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(f).items()}
            for f in self.features
        ]
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSchema:
        features = tuple(
            Feature(
                name=f["name"],
                kind=f["kind"],
                categories=tuple(f.get("categories", ())),
                integer=bool(f.get("integer", False)),
                description=f.get("description", ""),
            )
            for f in data["features"]
        )
        return cls(
            name=data["name"],
            version=data["version"],
            features=features,
            classes=tuple(data["classes"]),
            trained_at=data.get("trained_at", ""),
            metrics=dict(data.get("metrics", {})),
        )
