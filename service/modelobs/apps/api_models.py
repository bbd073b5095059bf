"""The HTTP API's bodies as pydantic models: what /openapi.json documents and requests meet.

Request models are built when an app starts, from the loaded model's feature schema, so the
documented contract is the very one the model service validates against. The gateway forwards
bytes without validating them; it builds the same envelopes around a generic record.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
)
from typing_extensions import TypedDict

from ..model.data import EXAMPLE_RECORD
from ..model.schema import Feature, ModelSchema
from .errors import Reason

REF_TEMPLATE = "#/components/schemas/{model}"
PREDICTION_ID_MAX_LENGTH = 64
_CLOSED = ConfigDict(extra="forbid")

Number = Annotated[float, Strict(), AllowInfNan(False)]
# pydantic's multiple_of check (documented as multipleOf: 1) accepts 3 and 3.0 and refuses 2.5;
# it tolerates a floating-point error (2.0000000001 passes). An exact check in Python per value
# took a third longer on a 256-record batch.
WholeNumber = Annotated[float, Strict(), AllowInfNan(False), Field(multiple_of=1)]
GenericRecord = Annotated[
    dict[str, float | str],
    Field(description="The model's features by name; GET /model on the model service lists them"),
]


class ModelRef(BaseModel):
    name: str
    version: str


class PredictionResult(BaseModel):
    prediction_id: str = Field(description="Quote it when sending feedback")
    prediction: str = Field(description="The predicted class")
    score: float = Field(ge=0, le=1, description="The predicted class's probability")
    probabilities: dict[str, float] = Field(description="Every class's probability")


class PredictResponse(BaseModel):
    """One prediction per record, in the order of the request."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": {"name": "churn-classifier", "version": "20250101T000000Z"},
                    "predictions": [
                        {
                            "prediction_id": "9b2f6c1e-8f0a-4f43-9d55-3d1f3f7f0c2a",
                            "prediction": "churn",
                            "score": 0.91,
                            "probabilities": {"stay": 0.09, "churn": 0.91},
                        }
                    ],
                }
            ]
        }
    )

    model: ModelRef
    predictions: list[PredictionResult]


class FeedbackResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "prediction_id": "9b2f6c1e-8f0a-4f43-9d55-3d1f3f7f0c2a",
                    "label": "churn",
                    "status": "recorded",
                }
            ]
        }
    )

    prediction_id: str
    label: str
    status: Literal["recorded", "unchanged"] = Field(
        description="unchanged: the same label was already recorded"
    )


class RejectionDetail(BaseModel):
    reason: Reason = Field(description="A closed set, counted in modelobs.validation.failures")
    field: str = Field(
        description="JSON path of the value at fault (records[2].contract), 'body' for the "
        "whole body, or the header at fault (content-type, x-api-key)"
    )
    message: str = Field(description="What is wrong; user values only shortened")


class RejectionBody(BaseModel):
    """The answer to a request we refuse (400, 401, 413, 415, 422)."""

    error: RejectionDetail


class ErrorDetail(BaseModel):
    reason: str = Field(
        description="unknown_prediction, label_conflict, upstream_error, upstream_unavailable, "
        "upstream_timeout, not_found, method_not_allowed, internal_error"
    )
    field: str | None = Field(default=None, description="The field at fault, when one is")
    message: str


class ErrorBody(BaseModel):
    """Any other error answer, in the same shape."""

    error: ErrorDetail


def _feature_type(feature: Feature) -> Any:
    if feature.kind == "categorical":
        kind: Any = Literal[feature.categories]
    else:
        kind = WholeNumber if feature.integer else Number
    return Annotated[kind, Field(description=feature.description or None)]


def _record_type(schema: ModelSchema | None) -> Any:
    """The record as a TypedDict: it validates straight into the dict the model encodes,
    in schema order; a model class, built and dumped per record, took 2.4 times as long on a
    256-record batch."""
    if schema is None:
        return GenericRecord
    record: Any = TypedDict(  # type: ignore[operator]
        "Record", {f.name: _feature_type(f) for f in schema.features}
    )
    record.__pydantic_config__ = ConfigDict(extra="forbid", title="Record")
    return record


class ApiContract:
    """The request models of one app: the model's schema, or a generic record when None."""

    def __init__(
        self,
        schema: ModelSchema | None,
        max_batch_size: int,
        example: Mapping[str, float | str] = EXAMPLE_RECORD,
    ) -> None:
        record = _record_type(schema)
        self.single: type[BaseModel] = create_model(
            "SingleRecord", __config__=_CLOSED, record=(record, ...)
        )
        self.batch: type[BaseModel] = create_model(
            "RecordBatch",
            __config__=_CLOSED,
            records=(Annotated[list[record], Field(min_length=1, max_length=max_batch_size)], ...),
        )
        # The batch shape first: a shape that fails copies the input into its errors, and a
        # single record is cheap to copy (trying the single shape first doubled the time a
        # 256-record batch takes).
        self.predict: TypeAdapter[Any] = TypeAdapter(
            Annotated[Union[self.batch, self.single], Field(union_mode="left_to_right")]  # noqa: UP007
        )
        label: Any = str if schema is None else Literal[schema.classes]
        self.feedback: TypeAdapter[Any] = TypeAdapter(
            create_model(
                "FeedbackRequest",
                __config__=_CLOSED,
                prediction_id=(
                    Annotated[
                        str,
                        Strict(),
                        StringConstraints(min_length=1, max_length=PREDICTION_ID_MAX_LENGTH),
                    ],
                    Field(description="From the prediction's answer"),
                ),
                label=(label, Field(description="The true class")),
            )
        )
        self.categories = {f.name: f.categories for f in schema.features} if schema else {}
        self.classes = schema.classes if schema else ()
        self.features = schema.feature_names if schema else ()
        self._examples = self._valid_examples(dict(example))

    def _valid_examples(self, record: dict[str, float | str]) -> dict[str, list[Any]]:
        """Examples for the document, kept only if this contract accepts them."""
        candidates = {
            "PredictRequest": [{"record": record}, {"records": [record, record]}],
            "FeedbackRequest": [
                {
                    "prediction_id": "9b2f6c1e-8f0a-4f43-9d55-3d1f3f7f0c2a",
                    "label": self.classes[-1] if self.classes else "churn",
                }
            ],
        }
        adapters = {"PredictRequest": self.predict, "FeedbackRequest": self.feedback}
        kept: dict[str, list[Any]] = {}
        for name, examples in candidates.items():
            try:
                for example in examples:
                    adapters[name].validate_python(example)
            except ValidationError:
                continue
            kept[name] = examples
        return kept

    @cached_property
    def components(self) -> dict[str, Any]:
        """The request schemas, as OpenAPI components (``#/components/schemas/...``)."""
        by_key, definitions = TypeAdapter.json_schemas(
            [
                ("PredictRequest", "validation", self.predict),
                ("FeedbackRequest", "validation", self.feedback),
            ],
            ref_template=REF_TEMPLATE,
        )
        schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
        schemas["PredictRequest"] = {
            "title": "PredictRequest",
            "description": "One record, or a batch of records",
            **by_key[("PredictRequest", "validation")],
        }
        for name, examples in self._examples.items():
            schemas[name] = {**schemas[name], "examples": examples}
        return schemas
