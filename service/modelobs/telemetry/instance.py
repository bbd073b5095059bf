"""``service.instance.id`` for one process: unique per worker, as the semantic conventions
require, even when the deployment pins one for the whole replica."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import Any

# Set by `modelobs serve --workers N` (workers.py) for the workers it starts.
WORKERS_ENV = "MODELOBS_WORKERS"
INSTANCE_ID = "service.instance.id"


def instance_attributes(from_env: Mapping[str, Any]) -> dict[str, Any]:
    """A random id unless OTEL_RESOURCE_ATTRIBUTES names one; a named one gets this worker's
    pid appended when several workers share it, so their series stay apart."""
    given = from_env.get(INSTANCE_ID)
    if given is None:
        return {INSTANCE_ID: str(uuid.uuid4())}
    if int(os.environ.get(WORKERS_ENV) or 1) > 1:
        return {INSTANCE_ID: f"{given}-{os.getpid()}"}
    return {INSTANCE_ID: given}
