"""The trace journal processor (otel-collector/components/tracejournal): its Go unit tests
pass (journal, kill without Shutdown, replay; retention; refusal on write failure and at
max_bytes), it is built into our collector distribution at the manifest's release line, and
the build cache key follows its sources so an edit never reuses a stale binary."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deploy.native import REPO

from ._native_bins import require_binary

COLLECTOR_DIR = REPO / "otel-collector"
COMPONENT = COLLECTOR_DIR / "components" / "tracejournal"
MODULE = "modelobs.local/tracejournal"
GO_TESTS = (
    "TestKilledProcessJournalIsReplayedWhole",
    "TestTornTailIsSkippedAndEarlierRecordsReplayed",
    "TestRetentionDeletesOldSegmentsOnly",
    "TestWriteFailureRefusesTheBatch",
    "TestFullJournalRefusesBeyondMaxBytes",
    "TestGracefulShutdownKeepsTheJournal",
)


def go() -> str:
    path = shutil.which("go")
    if path is None:
        pytest.fail("go is not on PATH: the trace journal's tests need Go >= 1.26", pytrace=False)
    return path


def test_go_unit_tests_pass() -> None:
    result = subprocess.run(
        [go(), "test", "-count=1", "-v", "./..."],
        cwd=COMPONENT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = set(re.findall(r"^--- PASS: (\w+)", result.stdout, re.MULTILINE))
    assert set(GO_TESTS) <= passed, sorted(set(GO_TESTS) - passed)


def manifest_versions() -> set[str]:
    gomods = [
        entry["gomod"]
        for kind in ("receivers", "processors", "exporters", "connectors", "extensions")
        for entry in yaml.safe_load((COLLECTOR_DIR / "manifest.yaml").read_text())[kind]
    ]
    return {g.split()[1] for g in gomods if g.startswith("go.opentelemetry.io/collector/")}


def test_manifest_builds_the_journal_from_its_directory() -> None:
    manifest = yaml.safe_load((COLLECTOR_DIR / "manifest.yaml").read_text())
    [entry] = [p for p in manifest["processors"] if p["gomod"].split()[0] == MODULE]
    assert (COLLECTOR_DIR / entry["path"]).resolve() == COMPONENT
    gomod = (COMPONENT / "go.mod").read_text()
    assert gomod.startswith(f"module {MODULE}\n")
    # Its collector modules are at the manifest's release line (v0.161.0 / v1.67.0).
    release = manifest_versions()
    required = re.findall(r"^\s+go\.opentelemetry\.io/collector/\S+ (v\S+)", gomod, re.MULTILINE)
    assert required and set(required) <= release | {"v1.67.0"}, (set(required), release)


def test_built_collector_has_the_journal() -> None:
    result = subprocess.run(
        [require_binary("OTELCOL_BIN", "modelobs-otelcol"), "components"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    processors = yaml.safe_load(result.stdout)["processors"]
    assert {"name": "trace_journal", "module": f"{MODULE} v0.0.0"}.items() <= next(
        p for p in processors if p["name"] == "trace_journal"
    ).items()


def print_path(collector_dir: Path) -> str:
    result = subprocess.run(
        ["bash", str(collector_dir / "build.sh"), "--print-path"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_build_key_follows_the_component_sources(tmp_path: Path) -> None:
    # A copy of the tree build.sh needs (it sources ../deploy/lib/tools.sh).
    shutil.copytree(COLLECTOR_DIR, tmp_path / "otel-collector")
    shutil.copytree(REPO / "deploy" / "lib", tmp_path / "deploy" / "lib")
    copy = tmp_path / "otel-collector"
    assert print_path(copy) == print_path(COLLECTOR_DIR)
    source = copy / "components" / "tracejournal" / "journal.go"
    source.write_text(source.read_text() + "\n// an edit\n")
    assert print_path(copy) != print_path(COLLECTOR_DIR)


BENCH = json.loads((REPO / "bench" / "results" / "trace_journal.json").read_text())
README = (COLLECTOR_DIR / "README.md").read_text()


def bench_command() -> str:
    args = BENCH["args"]
    return (
        f"bench/trace_journal.py --repeats {args['repeats']} --rate {args['rate']} "
        f"--seconds {args['seconds']}"
    )


def journal_row(variant: str) -> str:
    """One row of the README's cost table, from the benchmark's medians."""
    m = BENCH["medians"][variant]
    per_span = f"{m['journal_bytes_per_span']:.0f}" if m["journal_bytes_per_span"] else "-"
    return (
        f"| {variant} | {m['cpu_s_per_10k_spans']:.3f} s | {m['delivered_share']:.0%} | "
        f"{per_span} |"
    )


def test_readme_cost_table_is_the_benchmark() -> None:
    assert bench_command() in README
    for variant in BENCH["medians"]:
        assert journal_row(variant) in README, journal_row(variant)


def test_readme_names_every_journal_setting_with_its_default() -> None:
    journal = yaml.safe_load((COLLECTOR_DIR / "gateway.yaml").read_text())["processors"][
        "trace_journal"
    ]
    settings = [
        re.fullmatch(r"\$\{env:(\w+):-([^}]*)\}", str(v))
        for v in journal.values()
        if "${" in str(v)
    ]
    named = {m.group(1): m.group(2) for m in settings if m and m.group(1).startswith("TRACE_")}
    assert set(named) == {
        "TRACE_JOURNAL_RETENTION",
        "TRACE_JOURNAL_MAX_BYTES",
        "TRACE_JOURNAL_FSYNC",
    }
    for variable, default in named.items():
        assert f"| `{variable}` | `{default}` |" in README, variable


def test_scaling_doc_journal_disk_follows_from_the_figures() -> None:
    """docs/scaling.md's worked example: R = 1,000 requests/s over two gateways, the measured
    spans per request, the shipped retention (+ 1 s segment) and the bytes per span it states."""
    doc = (REPO / "docs" / "scaling.md").read_text()
    capacity = json.loads((REPO / "bench" / "results" / "capacity.json").read_text())
    spans_per_request = round(capacity["model_service"]["telemetry_per_request"]["spans"])
    journal = yaml.safe_load((COLLECTOR_DIR / "gateway.yaml").read_text())["processors"][
        "trace_journal"
    ]
    retention = int(re.fullmatch(r"\$\{env:\w+:-(\d+)s\}", journal["retention"]).group(1))  # type: ignore[union-attr]
    bytes_per_span = int(re.search(r"about (\d+) bytes per span", doc).group(1))  # type: ignore[union-attr]
    spans_per_s = spans_per_request * 1000 // 2
    window = retention + 1
    megabytes = round(spans_per_s * window * bytes_per_span / 1e6)
    expected = f"| {megabytes} MB ({spans_per_s:,} spans/s \u00d7 {window} s \u00d7 {bytes_per_span} bytes;"
    assert expected in doc, expected
