"""The collector's own `validate` accepts the shipped drop-in config alone and with the test
overlay (whose exporter lists are appended), and rejects a broken copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from deploy.native import REPO

pytestmark = pytest.mark.e2e

CONFIG = REPO / "otel-collector" / "config.yaml"


OVERLAY = REPO / "otel-collector" / "overlays" / "test-files.yaml"
APPEND_LISTS = "--feature-gates=confmap.enableMergeAppendOption"


def validate(
    otelcol: str, config: Path, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {"COLLECTOR_STORAGE_DIR": str(tmp_path / "storage"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [otelcol, "validate", f"--config={config}", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_shipped_config_validates(bins: dict[str, str], tmp_path: Path) -> None:
    result = validate(bins["OTELCOL_BIN"], CONFIG, tmp_path)
    assert result.returncode == 0, f"validate failed:\n{result.stdout}\n{result.stderr}"


def test_config_with_the_test_overlay_validates_and_appends(
    bins: dict[str, str], tmp_path: Path
) -> None:
    otelcol = bins["OTELCOL_BIN"]
    result = validate(otelcol, CONFIG, tmp_path, f"--config={OVERLAY}", APPEND_LISTS)
    assert result.returncode == 0, f"validate failed:\n{result.stdout}\n{result.stderr}"
    printed = subprocess.run(
        [otelcol, "print-config", f"--config={CONFIG}", f"--config={OVERLAY}", APPEND_LISTS],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLLECTOR_STORAGE_DIR": str(tmp_path / "storage"), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    pipelines = yaml.safe_load(printed.stdout)["service"]["pipelines"]
    # Appended to, not replaced: Jaeger and the log store still get their data.
    assert pipelines["traces/sampled"]["exporters"] == [
        "otlp_grpc/jaeger",
        "span_metrics/sampled",
        "file/traces",
    ]
    assert pipelines["logs"]["exporters"][-1] == "file/logs"
    assert len(pipelines["logs"]["exporters"]) == 2, pipelines["logs"]


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
