"""docs/runbooks/ held to the dashboards, the rules and the fault flags: every panel a page names
exists, every link resolves, every fault-flag scenario has its page, and the pages written for
issue 15 give a query for each step and a way to confirm or rule out each cause.

(The queries themselves are parsed by promtool and checked against the contract in
tests/test_docs_contract.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .dashboard_queries import iter_panels, load_dashboards
from .test_docs_contract import promql_blocks

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS_DIR = REPO / "docs" / "runbooks"
RUNBOOKS = sorted(RUNBOOKS_DIR.glob("*.md"))
SCENARIO_PAGES = sorted(RUNBOOKS_DIR.glob("scenario-*.md"))
RULES = REPO / "deploy" / "prometheus" / "rules" / "modelobs.yml"
ALERTS = sorted(set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M)))
# Pages that follow the full structure: meaning, a query per step, causes to confirm or rule out.
# Every alert of the rules file has one (a new alert without its page fails here), and so has
# every scenario.
STRUCTURED = [*SCENARIO_PAGES, *(RUNBOOKS_DIR / f"{alert}.md" for alert in ALERTS)]
CAUSES = "## Likely causes, and how to confirm or rule out each"


def _panel_titles() -> set[str]:
    return {
        panel.get("title", "")
        for dash in load_dashboards().values()
        for panel in iter_panels(dash.get("panels") or [])
    }


def _alert_names() -> set[str]:
    return set(ALERTS)


def _scenario_table_keys() -> set[str]:
    readme = (RUNBOOKS_DIR / "README.md").read_text()
    section = readme.split("## Scenarios", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| ([a-z-]+) \|", section, re.M)) - {"flag"}


@pytest.mark.parametrize("doc", RUNBOOKS, ids=lambda p: p.name)
def test_every_panel_a_runbook_names_exists(doc: Path) -> None:
    text = doc.read_text()
    named = [
        " ".join(title.split())  # a title may wrap across lines
        for group in re.findall(r'[Pp]anels? ((?:"[^"]+"(?:,\s*|\s+and\s+|\s+or\s+)?)+)', text)
        for title in re.findall(r'"([^"]+)"', group)
    ]
    missing = sorted(set(named) - _panel_titles())
    assert not missing, f"{doc.name} names panels no dashboard has: {missing}"


@pytest.mark.parametrize("doc", RUNBOOKS, ids=lambda p: p.name)
def test_runbook_links_resolve(doc: Path) -> None:
    targets = re.findall(r"\]\(([^)#]+\.md)\)", doc.read_text())
    broken = [t for t in targets if not (doc.parent / t).is_file()]
    assert not broken, f"{doc.name} links to missing pages: {broken}"


def test_the_scenario_table_lists_exactly_the_scenario_pages() -> None:
    assert _scenario_table_keys() == {p.stem.removeprefix("scenario-") for p in SCENARIO_PAGES}


def test_every_declared_fault_flag_has_a_scenario_page() -> None:
    """The flags the services and the load generator act on (helper g's modelobs.flags)."""
    from modelobs.flags.definitions import FLAGS

    keys = {flag.key for flag in FLAGS}
    assert keys == _scenario_table_keys(), "docs/runbooks/README.md scenario table vs flags"


@pytest.mark.parametrize("doc", SCENARIO_PAGES, ids=lambda p: p.name)
def test_scenario_pages_name_real_alerts_and_their_flag(doc: Path) -> None:
    text = doc.read_text()
    fires = text.split("**What fires.**", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"\[(\w+)\]\(\w+\.md\)", fires))
    assert named, f"{doc.name}: 'What fires' links no alert page"
    assert named <= _alert_names(), f"{doc.name}: not alerts: {named - _alert_names()}"
    key = doc.stem.removeprefix("scenario-")
    assert any(f'feature_flag_key="{key}"' in q for q in promql_blocks(doc)), (
        f"{doc.name}: no query checks that the {key} flag is on"
    )


@pytest.mark.parametrize("doc", STRUCTURED, ids=lambda p: p.name)
def test_structured_pages_give_a_query_per_step_and_causes_to_rule_out(doc: Path) -> None:
    assert doc.is_file(), f"{doc.name}: no runbook page for this alert"
    text = doc.read_text()
    assert "## How to look" in text and CAUSES in text
    look = text.split("## How to look", 1)[1].split("\n## ", 1)[0]
    steps = re.split(r"\n(?=\d+\. )", look.strip())
    steps = [s for s in steps if re.match(r"\d+\. ", s)]
    assert len(steps) >= 3, f"{doc.name}: fewer than 3 steps"
    # each step shows what to run: a PromQL block, a log or trace query, or a command
    for step in steps:
        assert re.search(r"```promql|VictoriaLogs `|Loki\s+`|modelobs trace|Jaeger", step), (
            f"{doc.name}: step without a query: {step[:80]!r}"
        )
    causes = text.split(CAUSES, 1)[1].split("\n## ", 1)[0]
    bullets = re.findall(r"^- \*\*.*?(?=^- |\Z)", causes, re.M | re.S)
    if doc in SCENARIO_PAGES and "memory-leak" in doc.name:
        return  # points at ProcessMemoryGrowing's causes
    assert len(bullets) >= 2, f"{doc.name}: fewer than 2 likely causes"
    for bullet in (" ".join(b.split()) for b in bullets):
        assert "Confirm" in bullet and "Rule out" in bullet, (
            f"{doc.name}: a cause without how to confirm and rule it out: {bullet[:80]!r}"
        )
