"""Shared fixtures: a trained model, and both apps served with in-memory telemetry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelobs.apps import gateway, model_service
from modelobs.model.data import EXAMPLE_RECORD
from modelobs.model.store import ModelBundle, load
from modelobs.model.train import train_and_save
from modelobs.settings import Settings

from .postgres import STORES, fresh_database, postgres_server
from .servers import Captured, captured, free_port, serve

__all__ = ["postgres_server"]  # a session fixture, shared by every test module

VALID_RECORD = EXAMPLE_RECORD


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "bundle"
    train_and_save(directory)
    return directory


@pytest.fixture(scope="session")
def bundle(model_dir: Path) -> ModelBundle:
    return load(model_dir)


@dataclass
class Stack:
    """Both apps on real sockets; the gateway forwards to the model service."""

    model_url: str
    gateway_url: str
    model: Captured
    gateway: Captured


def make_settings(model_dir: Path, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_dir": model_dir,
        "prediction_db": tmp_path / "predictions.db",
        "upstream_timeout_s": 2.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@contextmanager
def running_stack(model_dir: Path, tmp_path: Path, **overrides: object) -> Iterator[Stack]:
    """Both apps with ``overrides`` of their (shared) settings."""
    model_port = free_port()
    settings = make_settings(
        model_dir, tmp_path, model_url=f"http://127.0.0.1:{model_port}", **overrides
    )
    model_tel, gateway_tel = captured("model-service"), captured("gateway")
    model_app = model_service.create_app(settings, model_tel.telemetry)
    gateway_app = gateway.create_app(settings, gateway_tel.telemetry)
    with serve(model_app, model_port) as model_url, serve(gateway_app) as gateway_url:
        yield Stack(model_url, gateway_url, model_tel, gateway_tel)
    model_tel.telemetry.shutdown()
    gateway_tel.telemetry.shutdown()


@pytest.fixture
def stack(model_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    with running_stack(model_dir, tmp_path) as both:
        yield both


@pytest.fixture
def store_stack(model_dir: Path, tmp_path: Path, store_db: str) -> Iterator[Stack]:
    """The stack once on each prediction store (SQLite, PostgreSQL)."""
    with running_stack(model_dir, tmp_path, prediction_db=store_db) as both:
        yield both


@pytest.fixture(params=STORES)
def store_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A MODELOBS_PREDICTION_DB value for each store: a SQLite path, a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "predictions.db")
    return fresh_database(request.getfixturevalue("postgres_server"))
