"""Read the Grafana datasource provisioning file the way Grafana does (for tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DATASOURCES_FILE = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yaml"


def unescape(value: str) -> str:
    """Grafana provisioning files write a literal $ as $$."""
    return value.replace("$$", "$")


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    """uid -> datasource, as provisioned."""
    doc = yaml.safe_load(DATASOURCES_FILE.read_text())
    return {ds["uid"]: ds for ds in doc["datasources"]}
