"""docs/drills.md is held to the code: every flag with its variants, every drill scenario
with its flag, alert, service and flagged span; and the terminal waterfall draws a trace."""

from __future__ import annotations

import re
from pathlib import Path

from modelobs.drills.scenarios import SCENARIOS
from modelobs.drills.waterfall import render_logs, render_trace
from modelobs.flags.definitions import FLAGS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "drills.md").read_text()


def _rows(first_cell: str) -> dict[str, list[str]]:
    """The rows of the table whose header starts with ``first_cell``, by their first cell."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in DOC.splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == first_cell:
            inside = True
        elif inside and line.startswith("| `"):
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_flag_and_its_variants_are_documented() -> None:
    rows = _rows("flag")
    for flag in FLAGS:
        assert flag.key in rows, f"{flag.key} missing from docs/drills.md"
        documented = set(re.findall(r"`([\w-]+)`", rows[flag.key][1]))
        assert documented == set(flag.variants), flag.key
        side = {"load": "load generator", "model-service": "model service"}
        assert rows[flag.key][2] == side.get(flag.acted_on_by, flag.acted_on_by), flag.key


def test_every_scenario_is_documented_as_it_is() -> None:
    rows = _rows("scenario")
    for s in SCENARIOS.values():
        assert s.name in rows, f"{s.name} missing from docs/drills.md"
        _, flag, alert, service, _found_by, span = rows[s.name]
        assert flag == f"`{s.flag}={s.variant}`"
        assert alert == f"`{s.alert}`"
        assert service == s.service
        assert span == f"`{s.flagged_span}`"


def _span(span_id: str, parent: str, name: str, start_ms: float, end_ms: float, **kw) -> dict:
    attributes = [{"key": k, "value": {"stringValue": v}} for k, v in kw.get("attrs", {}).items()]
    return {
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "startTimeUnixNano": str(int(start_ms * 1e6)),
        "endTimeUnixNano": str(int(end_ms * 1e6)),
        "attributes": attributes,
        "status": {"code": kw.get("status", 0)},
        "_service": kw.get("service", "gateway"),
    }


def test_waterfall_nests_children_and_shows_status_and_flag() -> None:
    flag = {"feature_flag.key": "model-hop", "feature_flag.result.variant": "failing"}
    spans = [
        _span("b", "a", "POST", 10, 20, status=2, attrs=flag),
        _span("a", "", "POST /v1/predict", 0, 100, status=2),
        _span("c", "a", "POST", 50, 60, status="STATUS_CODE_ERROR", attrs=flag),
        _span("d", "zz", "orphan", 90, 100, service="model-service"),
    ]
    lines = render_trace("ab" * 16, spans)
    assert lines[0] == f"trace {'ab' * 16}: 4 spans, 100.0 ms, services: gateway, model-service"
    body = lines[2:]
    assert [line.split()[1] for line in body] == ["POST", "POST", "POST", "orphan"]
    root, first, second, orphan = body
    assert root.startswith("gateway         POST /v1/predict")
    assert first.startswith("gateway           POST")  # one level deeper
    assert first.endswith("ERROR  model-hop=failing") and second.endswith("model-hop=failing")
    # Bars sit where the spans ran: the second attempt starts half way.
    assert first.index("█") < second.index("█")
    assert second.split("|")[1].index("█") == 20
    assert orphan.split()[-1] == "UNSET"


def test_log_lines_are_ordered_and_name_their_event() -> None:
    lines = render_logs(
        [
            {"_time": "2026-11-27T12:00:02.5Z", "service.name": "gateway", "_msg": "b",
             "severity_text": "ERROR", "event": "upstream_failed"},
            {"_time": "2026-11-27T12:00:01Z", "service.name": "model-service", "_msg": "a",
             "severity_text": "INFO"},
        ]
    )  # fmt: skip
    assert lines[0].startswith("  12:00:01.000  model-service  INFO")
    assert lines[1].endswith("b  [event=upstream_failed]")
    assert render_logs([]) == ["  (no log records with this trace id in the log store)"]
