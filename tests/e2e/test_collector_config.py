"""The collector's own `validate` accepts the shipped config and rejects a broken copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from deploy.native import REPO

pytestmark = pytest.mark.e2e

CONFIG = REPO / "otel-collector" / "config.yaml"


def validate(otelcol: str, config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"COLLECTOR_STORAGE_DIR": str(tmp_path / "storage"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [otelcol, "validate", f"--config={config}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_shipped_config_validates(bins: dict[str, str], tmp_path: Path) -> None:
    result = validate(bins["OTELCOL_BIN"], CONFIG, tmp_path)
    assert result.returncode == 0, f"validate failed:\n{result.stdout}\n{result.stderr}"


def test_unknown_exporter_in_pipeline_is_rejected(bins: dict[str, str], tmp_path: Path) -> None:
    text = CONFIG.read_text()
    old = "exporters: [prometheus]"
    assert text.count(old) == 1, "the metrics pipeline's exporter list changed; update this test"
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(old, "exporters: [prometheus, nosuchexporter]"))

    result = validate(bins["OTELCOL_BIN"], broken, tmp_path)

    assert result.returncode != 0
    assert (
        'service::pipelines::metrics: references exporter "nosuchexporter" which is not '
        "configured" in result.stderr
    ), result.stderr
