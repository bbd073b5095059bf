"""A real PostgreSQL server for the tests (one per session, a fresh database per test).

No skip when the binaries are missing: a test that needs PostgreSQL fails, naming the
package to install (``.ci/run`` installs it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from deploy.native.postgres import PostgresServer

from .servers import free_port

STORES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def fresh_database(server: PostgresServer) -> str:
    """The URL of a new, empty database on ``server``."""
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")
