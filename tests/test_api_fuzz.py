"""Both apps driven by schemathesis from their own /openapi.json, in process: generated valid
and invalid requests never get a 5xx, and every answer has a documented status, content type
and body schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from modelobs.apps import gateway, model_service

from .conftest import make_settings
from .servers import captured, free_port, serve

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Bounded and reproducible: a fixed seed, no example database, few examples per operation.
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20251127,
        "generation": {
            "mode": "all",
            "max-examples": 25,
            "deterministic": True,
            "database": "none",
        },
    }
)


@pytest.fixture(scope="module")
def model_schema(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[schemathesis.BaseSchema]:
    """The model service in process; schemathesis runs its lifespan (ended after each test)."""
    settings = make_settings(model_dir, tmp_path_factory.mktemp("fuzz-model"))
    telemetry = captured("model-service")
    app = model_service.create_app(settings, telemetry.telemetry)
    yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    telemetry.telemetry.shutdown()


@pytest.fixture(scope="module")
def gateway_schema(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[schemathesis.BaseSchema]:
    """The gateway in process, forwarding to a model service on a real socket."""
    model_port = free_port()
    settings = make_settings(
        model_dir,
        tmp_path_factory.mktemp("fuzz-gateway"),
        model_url=f"http://127.0.0.1:{model_port}",
    )
    telemetry = {"model": captured("model-service"), "gateway": captured("gateway")}
    model_app = model_service.create_app(settings, telemetry["model"].telemetry)
    app = gateway.create_app(settings, telemetry["gateway"].telemetry)
    with serve(model_app, model_port):
        yield schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    for captured_telemetry in telemetry.values():
        captured_telemetry.telemetry.shutdown()


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32.5's fixture-loaded schemas read and rename ``Node._nodeid``, which
    pytest 9.2 no longer has (its node ids are structured); the attribute it reads is given
    here, and the reports keep pytest's own ids."""
    request.node._nodeid = request.node.nodeid


model_api = schemathesis.pytest.from_fixture("model_schema")
gateway_api = schemathesis.pytest.from_fixture("gateway_schema")


@model_api.parametrize()
def test_model_service_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


@gateway_api.parametrize()
def test_gateway_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)
