"""Extract the queries of every Grafana dashboard in dashboards/, ready to run.

Grafana expands template variables and interval macros before it sends a query; a raw
dashboard expression such as ``rate(x{service_name=~"$service"}[$__rate_interval])`` is not
valid PromQL. ``prometheus_queries()`` returns every Prometheus expression of every panel with
those substituted, so a test can run each one against a real Prometheus:

    from tests.dashboard_queries import prometheus_queries
    for q in prometheus_queries(values={"service": "gateway"}):
        r = httpx.get(f"{prom}/api/v1/query", params={"query": q.expr})
        if not q.needs:  # data expected from any stack under load
            assert r.json()["data"]["result"], q.where

Defaults: ``$service`` -> ``model-service``, multi-value variables (``$model_version``,
``$route``, ``$feature``) -> ``.+`` (they are only used with ``=~``), ``$__rate_interval`` ->
``1m``, ``$__interval`` -> ``15s``, ``$__range`` -> ``5m``. Unknown variables raise KeyError.

    python -m tests.dashboard_queries            # one JSON object per query on stdout
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS_DIR = REPO / "dashboards"

BUILTINS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__interval_ms": "15000",
}
DEFAULT_VALUES: dict[str, str] = {
    "service": "model-service",
    "model_version": ".+",
    "route": ".+",
    "feature": ".+",
}
# $name, ${name} and ${name:format}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w-]+)?\}|\$(\w+)")

# What a query needs before it returns data. A healthy stack under steady load answers every
# query with an empty `needs`; the others need a condition the e2e run may or may not create:
#   failure   counters that only exist after something failed or was dropped
#   feedback  ground-truth labels sent to the model service (quality metrics)
#   drift     a filled drift window (modelobs.drift.* gauges)
NEEDS: dict[str, re.Pattern[str]] = {
    "failure": re.compile(
        r"(refused|send_failed|enqueue_failed|receiver_failed"
        r"|prediction_log_dropped)"
    ),
    "feedback": re.compile(
        r"modelobs_(model_(accuracy|f1|precision|recall|labelled_window_size)"
        r"|label_delay|feedback)"
    ),
    "drift": re.compile(r"modelobs_drift_"),
    #   flag      a run-time fault flag switched on (the annotation of flag switches)
    "flag": re.compile(r"modelobs_feature_flag_active"),
}


@dataclass(frozen=True)
class DashboardQuery:
    dashboard_uid: str
    dashboard_file: str
    panel_id: int
    panel_title: str
    panel_type: str
    ref_id: str
    datasource_type: str
    datasource_uid: str
    raw: str
    expr: str
    exemplar: bool

    @property
    def needs(self) -> frozenset[str]:
        """Conditions (see NEEDS) this query depends on; empty = data in any loaded stack."""
        return frozenset(name for name, pattern in NEEDS.items() if pattern.search(self.raw))

    @property
    def where(self) -> str:
        return (
            f"{self.dashboard_file} panel {self.panel_id} ({self.panel_title!r}) "
            f"target {self.ref_id}: {self.expr}"
        )


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> dict[Path, dict]:
    return {path: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace Grafana variables and macros with concrete values."""
    merged = {**DEFAULT_VALUES, **(values or {}), **BUILTINS}

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in merged:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return merged[name]

    return _VARIABLE.sub(repl, expr)


def variables_used(expr: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in _VARIABLE.finditer(expr)}


def annotation_queries(
    dash: dict, path: Path, values: Mapping[str, str] | None = None
) -> list[DashboardQuery]:
    """The query of every annotation that has one (panel id 0, type ``annotation``)."""
    out: list[DashboardQuery] = []
    for annotation in (dash.get("annotations") or {}).get("list") or []:
        raw = annotation.get("expr")
        if not raw:
            continue
        ds = annotation.get("datasource") or {}
        out.append(
            DashboardQuery(
                dashboard_uid=dash.get("uid", ""),
                dashboard_file=path.name,
                panel_id=0,
                panel_title=f"annotation {annotation.get('name', '')}",
                panel_type="annotation",
                ref_id="",
                datasource_type=ds.get("type", ""),
                datasource_uid=ds.get("uid", ""),
                raw=raw,
                expr=substitute(raw, values),
                exemplar=False,
            )
        )
    return out


def all_queries(
    values: Mapping[str, str] | None = None, directory: Path = DASHBOARDS_DIR
) -> list[DashboardQuery]:
    """Every target of every panel and every annotation query (any datasource), variables
    substituted."""
    out: list[DashboardQuery] = []
    for path, dash in load_dashboards(directory).items():
        out.extend(annotation_queries(dash, path, values))
        for panel in iter_panels(dash.get("panels") or []):
            panel_ds = panel.get("datasource") or {}
            for target in panel.get("targets") or []:
                raw = target.get("expr")
                if not raw:
                    continue
                ds = target.get("datasource") or panel_ds
                out.append(
                    DashboardQuery(
                        dashboard_uid=dash.get("uid", ""),
                        dashboard_file=path.name,
                        panel_id=panel.get("id", -1),
                        panel_title=panel.get("title", ""),
                        panel_type=panel.get("type", ""),
                        ref_id=target.get("refId", ""),
                        datasource_type=ds.get("type", ""),
                        datasource_uid=ds.get("uid", ""),
                        raw=raw,
                        expr=substitute(raw, values),
                        exemplar=bool(target.get("exemplar")),
                    )
                )
    return out


def prometheus_queries(
    values: Mapping[str, str] | None = None, directory: Path = DASHBOARDS_DIR
) -> list[DashboardQuery]:
    """Every PromQL expression of every dashboard panel, variables substituted."""
    return [q for q in all_queries(values, directory) if q.datasource_type == "prometheus"]


def loki_queries(
    values: Mapping[str, str] | None = None, directory: Path = DASHBOARDS_DIR
) -> list[DashboardQuery]:
    """Every LogQL expression of every dashboard panel, variables substituted."""
    return [q for q in all_queries(values, directory) if q.datasource_type == "loki"]


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    values = dict(arg.split("=", 1) for arg in args if "=" in arg)
    for query in all_queries(values):
        print(json.dumps({**asdict(query), "needs": sorted(query.needs)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
