"""``GET /drift`` and ``GET /quality``: the monitor's answers, served the same way by the
monitor app and by a model service that runs the monitor inside itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ..monitoring.model_monitor import ModelMonitor
from .api_docs import answers
from .errors import error_body


@dataclass(frozen=True)
class NoMonitor:
    """The answer while there is no monitor here: not here at all, or not loaded yet."""

    status: int
    reason: str
    message: str
    why: str

    def answer(self) -> JSONResponse:
        return JSONResponse(error_body(self.reason, self.message), status_code=self.status)

    def documented(self) -> dict[int | str, dict[str, Any]]:
        declared = answers(None, self.status)
        declared[self.status]["description"] = self.why
        example = {"error": {"reason": self.reason, "message": self.message}}
        declared[self.status]["content"] = {"application/json": {"example": example}}
        return declared


def add_monitor_routes(
    app: FastAPI, monitor: Callable[[], ModelMonitor | None], missing: NoMonitor
) -> None:
    """Both routes answer ``missing`` while ``monitor()`` is None."""

    @app.get(
        "/drift",
        summary="Drift of the recent inputs against the training sample",
        responses=missing.documented(),
    )
    async def drift() -> JSONResponse:
        found = monitor()
        if found is None:
            return missing.answer()
        return JSONResponse(found.drift_report().to_dict())

    @app.get(
        "/quality",
        summary="Accuracy, precision, recall and F1 over the last labelled predictions",
        responses=missing.documented(),
    )
    async def quality() -> JSONResponse:
        found = monitor()
        if found is None:
            return missing.answer()
        # Reads the labels stored so far first (the store, so not on the event loop).
        summary = await asyncio.to_thread(found.quality_summary)
        return JSONResponse(summary.to_dict())
