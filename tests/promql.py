"""PromQL helpers for the tests that hold queries (dashboards, alert rules, runbooks) to the
contract: the metric names an expression reads, the names docs/contract.md and the recording
rules define, and promtool parsing a batch of expressions."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CONTRACT = REPO / "docs" / "contract.md"
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
# Series no contract row lists: Prometheus' own scrape series and the collector's
# self-metrics (their names belong to the collector release, see STACK.md).
SCRAPE_METRICS = frozenset({"up", "scrape_samples_scraped"})
COLLECTOR_PREFIXES = ("otelcol_",)


def known_metric_names() -> tuple[set[str], tuple[str, ...]]:
    """(exact names, name prefixes) a query may read: every Prometheus name written in
    docs/contract.md (``a_{x,y}`` expands to ``a_x``, ``a_y``; ``a_*`` is a prefix), the
    recording rules, the scrape series and the collector's self-metrics."""
    exact: set[str] = set(SCRAPE_METRICS)
    prefixes: list[str] = list(COLLECTOR_PREFIXES)
    for token in re.findall(r"`([a-z_:][a-z0-9_:{},*]*)`", CONTRACT.read_text()):
        if "{" in token:
            stem, _, rest = token.partition("{")
            exact.update(stem + s for s in rest.rstrip("}").split(","))
        elif token.endswith("_*"):
            prefixes.append(token[:-1])
        else:
            exact.add(token)
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            exact.update(r["record"] for r in group["rules"] if "record" in r)
    return exact, tuple(prefixes)


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
             "unless", "bool", "offset", "inf", "nan",
             # aggregation operators (may be followed by `by (...)` instead of `(`)
             "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
             "quantile", "count_values", "group", "limitk", "limit_ratio"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords or label names)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1()", text
    )  # grouping labels
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def unknown_metric_names(expr: str) -> set[str]:
    exact, prefixes = known_metric_names()
    return {n for n in metric_names(expr) if n not in exact and not n.startswith(prefixes)}


def promtool_rejects(promtool: str, exprs: Sequence[str], workdir: Path) -> str | None:
    """None when promtool parses every expression (written as recording rules into one
    throw-away rule file); else its complaint, followed by the expressions it names."""
    rules = [{"record": f"checked_query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    rule_file = workdir / "checked_queries.yml"
    rule_file.write_text(
        yaml.safe_dump({"groups": [{"name": "checked", "rules": rules}]}, width=10_000)
    )
    res = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=120
    )
    if res.returncode == 0:
        return None
    named = [exprs[int(i)] for i in re.findall(r"checked_query_(\d+)", res.stdout + res.stderr)]
    return "\n".join([res.stdout, res.stderr, *named])
