"""The model service: validates records, predicts, and tells the three pillars about it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from loguru import logger
from opentelemetry import trace

from ..flags.client import FaultFlags
from ..flags.faults import InferenceFaults
from ..flags.metrics import register_active_gauge
from ..model import store
from ..model.store import ModelBundle
from ..model.train import train_and_save
from ..monitoring.drift.events import log_drift_change
from ..monitoring.model_metrics import ModelMetrics
from ..monitoring.model_monitor import ModelMonitor
from ..monitoring.store import FeedbackOutcome, PredictionRow, new_prediction_id, open_store
from ..settings import Settings, get_settings
from ..telemetry import Telemetry, run_as, synthetic
from ..telemetry.bound_instruments import bind
from ..telemetry.logs import log_event
from .api_docs import answers, document_contract, json_body
from .api_models import ApiContract, FeedbackResponse, PredictResponse
from .errors import error_body, guarded
from .idempotency import IdempotentAnswers
from .monitor_routes import NoMonitor, add_monitor_routes
from .request_body import read_json_body
from .security import api_key_check, install_security
from .service_app import create_service_app, start_telemetry
from .slow_clients import install_slow_client_guards
from .validation import RequestValidator

SERVICE_NAME = "model-service"
MONITOR_ELSEWHERE = NoMonitor(
    404,
    "monitor_elsewhere",
    "drift and quality are served by the separate monitor (MODELOBS_MONITOR=off): "
    "GET /drift or /quality on `modelobs serve monitor` (port 8002 by default)",
    "The monitor runs apart (MODELOBS_MONITOR=off)",
)


@dataclass
class Prediction:
    prediction_id: str
    label: str
    score: float
    probabilities: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "prediction_id": self.prediction_id,
            "prediction": self.label,
            "score": self.score,
            "probabilities": self.probabilities,
        }


def load_or_train(settings: Settings) -> ModelBundle:
    """The service trains a model on first start when none exists."""
    try:
        return store.load(settings.model_dir)
    except store.ModelNotFoundError as missing:
        logger.bind(event="model_training", model_dir=str(settings.model_dir)).info(
            "{}; training one", missing
        )
        return train_and_save(settings.model_dir, name=settings.model_name)


class ModelService:
    """The request-path logic, kept apart from routing so it reads top to bottom."""

    def __init__(self, bundle: ModelBundle, settings: Settings, telemetry: Telemetry) -> None:
        self.bundle = bundle
        self.settings = settings
        self.telemetry = telemetry
        self.tracer = telemetry.tracer
        self.metrics = ModelMetrics(telemetry.meter)
        self.flags = FaultFlags(settings.flags_file, settings.flags_poll_ms)
        register_active_gauge(telemetry.meter, self.flags)
        self.faults = InferenceFaults(self.flags)
        self.validator = RequestValidator(bundle.schema, settings.max_batch_size)
        schema = bundle.schema
        self.model_attributes = {"model.name": schema.name, "model.version": schema.version}
        # Per class and per synthetic_request (true/false: bounded, telemetry/synthetic.py).
        class_attributes = {
            (label, mark): {
                **self.model_attributes,
                "prediction.class": label,
                synthetic.SYNTHETIC_KEY: mark,
            }
            for label in schema.classes
            for mark in ("true", "false")
        }
        # Bound once per attribute set: the request path's recordings skip the SDK's
        # per-call attribute work (telemetry/bound_instruments.py).
        self._bound_inference = bind(self.metrics.inference_duration, self.model_attributes)
        self._bound_per_class = {
            key: (bind(self.metrics.predictions, attrs), bind(self.metrics.score, attrs))
            for key, attrs in class_attributes.items()
        }
        meter = telemetry.meter
        self.prediction_log = open_store(settings, meter)
        # Drift and quality come from the store, never from the request path: here when
        # embedded, else in `modelobs serve monitor` over every replica's predictions.
        self.monitor: ModelMonitor | None = None
        if settings.monitor == "embedded":
            self.monitor = ModelMonitor(
                bundle, settings, meter, self.prediction_log, run_as(telemetry, log_drift_change)
            )
        self.answers = IdempotentAnswers(
            meter,
            window_s=settings.idempotency_window_s,
            max_entries=settings.idempotency_max_entries,
            max_bytes=settings.idempotency_max_bytes,
            max_body_bytes=settings.max_body_bytes,
        )

    def start(self) -> None:
        self.prediction_log.start()
        if self.monitor is not None:
            self.monitor.start()

    def stop(self) -> None:
        """After uvicorn has finished in-flight requests: nothing answered is lost."""
        if self.monitor is not None:
            self.monitor.stop()
        self.prediction_log.stop()
        self.flags.close()

    def feedback(self, body: bytes) -> tuple[int, dict[str, Any]]:
        prediction_id, label = self.validator.feedback(body)
        outcome, row = self.prediction_log.label(prediction_id, label)
        self.metrics.feedback.add(1, {"feedback.outcome": outcome.value})
        log = logger.bind(
            event="feedback", outcome=outcome.value, **{"prediction.id": prediction_id}
        )
        if outcome is FeedbackOutcome.UNKNOWN_ID:
            log.warning("feedback for unknown prediction")
            return 404, error_body(
                "unknown_prediction", "no prediction with this id", "prediction_id"
            )
        assert row is not None
        if outcome is FeedbackOutcome.CONFLICT:
            log.warning("conflicting label for prediction")
            return 409, error_body(
                "label_conflict",
                f"prediction already labelled {row.true_label!r}",
                "label",
            )
        if outcome is FeedbackOutcome.ACCEPTED:
            delay = (row.labelled_at or time.time()) - row.created_at
            log.bind(**{"label.delay_s": round(delay, 3)}).info("label recorded")
        return 200, {
            "prediction_id": prediction_id,
            "label": label,
            "status": "recorded" if outcome is FeedbackOutcome.ACCEPTED else "unchanged",
        }

    async def answer_predict(self, request: Request) -> Response:
        """The whole answer to POST /predict: predictions, or the error of a failure."""
        predictions = await guarded(lambda: self.predict(request), "prediction failed")
        if isinstance(predictions, JSONResponse):
            return predictions
        schema = self.bundle.schema
        return JSONResponse(
            {
                "model": {"name": schema.name, "version": schema.version},
                "predictions": [p.to_json() for p in predictions],
            }
        )

    async def predict(self, request: Request) -> list[Prediction]:
        # One child span, the model's own time; reading the body and recording are told by
        # the server span, the rejection log and the per-prediction log (docs/contract.md).
        body = await read_json_body(request, self.settings.max_body_bytes)
        records = self.validator.records(body)
        with self.tracer.start_as_current_span(
            "model inference", attributes=self.model_attributes
        ) as span:
            span.set_attribute("modelobs.batch.size", len(records))
            await self.faults.apply(span)
            start = time.perf_counter()
            probabilities = self.bundle.predict_proba(records)
            elapsed = time.perf_counter() - start
            self._bound_inference.record(elapsed)
        predictions = self._to_predictions(probabilities)
        self._record(records, predictions, elapsed)
        return predictions

    def _to_predictions(self, probabilities: Any) -> list[Prediction]:
        classes = self.bundle.schema.classes
        out: list[Prediction] = []
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            out.append(
                Prediction(
                    prediction_id=new_prediction_id(),  # time-ordered: see feedback
                    label=classes[best],
                    score=round(row[best], 6),
                    probabilities={c: round(p, 6) for c, p in zip(classes, row, strict=True)},
                )
            )
        return out

    def _record(
        self, records: list[dict[str, float | str]], predictions: list[Prediction], elapsed: float
    ) -> None:
        """Metrics and one log record per prediction (features only when allowed)."""
        version = self.bundle.schema.version
        now = time.time()
        context = trace.get_current_span().get_span_context()
        trace_id = format(context.trace_id, "032x") if context.is_valid else None
        self.prediction_log.submit(
            PredictionRow(p.prediction_id, now, version, r, p.label, p.score, trace_id)
            for r, p in zip(records, predictions, strict=True)
        )
        mark = synthetic.synthetic_attribute()
        for record, prediction in zip(records, predictions, strict=True):
            predictions_count, score = self._bound_per_class[(prediction.label, mark)]
            predictions_count.add(1)
            score.record(prediction.score)
            fields: dict[str, Any] = {
                "event": "prediction",
                "prediction.id": prediction.prediction_id,
                "model.version": version,
                "prediction.class": prediction.label,
                "prediction.score": prediction.score,
                "inference.duration_ms": round(elapsed * 1000, 3),
                "outcome": "success",
            }
            if self.settings.log_features:
                fields["features"] = record
            log_event("INFO", __name__, f"prediction {prediction.prediction_id}", fields)


def create_app(
    settings: Settings | None = None,
    telemetry: Telemetry | None = None,
    bundle: ModelBundle | None = None,
) -> FastAPI:
    """App factory (uvicorn calls it in each worker, so the SDK starts after any fork)."""
    settings = settings or get_settings()
    telemetry, owns_telemetry = start_telemetry(SERVICE_NAME, settings, telemetry)
    state: dict[str, ModelService] = {}

    @asynccontextmanager
    async def model_service() -> AsyncIterator[None]:
        service = ModelService(bundle or load_or_train(settings), settings, telemetry)
        service.start()
        state["service"] = service
        schema = service.bundle.schema
        logger.bind(event="model_loaded", **{"model.version": schema.version}).info(
            "serving {} {}", schema.name, schema.version
        )
        try:
            yield
        finally:
            state.clear()
            service.stop()

    app = create_service_app(
        "modelobs model service",
        telemetry,
        owns_telemetry,
        model_service,
        http_instrumentation=settings.http_instrumentation,
    )
    install_security(app, settings)
    install_slow_client_guards(app, telemetry, settings)
    generic = ApiContract(None, settings.max_batch_size)
    document_contract(
        app, lambda: state["service"].validator.contract if "service" in state else generic
    )

    @app.get("/readyz", responses={503: {"description": "Still loading the model"}})
    async def readyz() -> JSONResponse:
        if "service" not in state:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return state["service"].bundle.schema.to_dict()

    @app.post(
        "/predict",
        summary="Predict one record or a batch",
        openapi_extra=json_body("PredictRequest"),
        responses=answers(PredictResponse, 400, 413, 415, 422),
    )
    async def predict(request: Request) -> Any:
        service = state["service"]
        # A repeated Idempotency-Key gets the first answer, not a second prediction.
        return await service.answers.answer(request, service.answer_predict)

    @app.post(
        "/feedback",
        summary="Attach the true label to a prediction",
        dependencies=api_key_check(settings),
        openapi_extra=json_body("FeedbackRequest"),
        responses=answers(
            FeedbackResponse, 400, 404, 409, 413, 415, 422, *((401,) if settings.api_key else ())
        ),
    )
    async def feedback(request: Request) -> JSONResponse:
        payload = await read_json_body(request, 4096)
        status, body = await asyncio.to_thread(state["service"].feedback, payload)
        return JSONResponse(body, status_code=status)

    @app.get("/predictions/{prediction_id}", responses=answers(None, 404, 422))
    async def prediction(prediction_id: str) -> JSONResponse:
        row = await asyncio.to_thread(state["service"].prediction_log.get, prediction_id)
        if row is None:
            return JSONResponse(
                error_body("unknown_prediction", "no prediction with this id", "prediction_id"),
                status_code=404,
            )
        return JSONResponse(row.to_json())

    @app.get("/predictions", responses=answers(None, 422))
    async def predictions(
        start: float = Query(description="Unix time, inclusive"),
        end: float = Query(description="Unix time, exclusive"),
        limit: int = Query(default=1000, ge=1, le=10_000),
    ) -> dict[str, Any]:
        rows = await asyncio.to_thread(state["service"].prediction_log.between, start, end, limit)
        return {"predictions": [r.to_json() for r in rows]}

    add_monitor_routes(
        app, lambda: state["service"].monitor if "service" in state else None, MONITOR_ELSEWHERE
    )

    return app
