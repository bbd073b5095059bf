"""docs/contract.md and docs/runbooks/ held to what the code emits.

* log events: the contract lists exactly the ``event`` names bound anywhere in service/
  (found by walking the code's syntax tree), and every ``event="..."`` a doc filters on is one
* metrics: every instrument a real run creates (a prediction batch through the gateway, a
  label, a bad request, a drift computation) has a contract row with its kind, unit, bucket
  boundaries, attribute names and closed value sets, and the Prometheus name those give;
  every row is an instrument the run created
* runbook queries: every fenced ``promql`` block parses (promtool) and reads only metrics the
  contract or the recording rules define; every metric named inline is one too, and an inline
  query with functions or ranges is not allowed (it would escape the parser)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelobs.apps import gateway, model_service

from ._native_bins import require_binary
from .conftest import VALID_RECORD, make_settings
from .promql import known_metric_names, promtool_rejects, unknown_metric_names
from .servers import captured, free_port, serve
from .waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
SERVICE = REPO / "service" / "modelobs"
CONTRACT = REPO / "docs" / "contract.md"
RUNBOOKS = sorted((REPO / "docs" / "runbooks").glob("*.md"))
DOCS = [CONTRACT, *RUNBOOKS]
NO_UNIT = "—"

# ---------------------------------------------------------------------------- log events


def _event_bindings() -> Iterator[tuple[str, int, ast.expr]]:
    """(file, line, value) of every ``event=...`` keyword and ``"event": ...`` dict entry."""
    for path in sorted(SERVICE.rglob("*.py")):
        where = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    if keyword.arg == "event":
                        yield where, node.lineno, keyword.value
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "event":
                        yield where, node.lineno, value


def code_events() -> set[str]:
    events, not_literal = set(), []
    for where, line, value in _event_bindings():
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            events.add(value.value)
        else:
            not_literal.append(f"{where}:{line}")
    assert not not_literal, f"event names must be string literals to be checked: {not_literal}"
    return events


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else None]


def _table_rows(text: str) -> list[list[str]]:
    """Body rows of the markdown tables in ``text``, cells stripped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-|\s]+\|", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [r for r in rows if r and r[0].startswith("`")]  # header rows name no code


def contract_events() -> list[str]:
    rows = _table_rows(_section(CONTRACT.read_text(), "### Log events"))
    return [row[0].strip("`") for row in rows]


def test_the_contract_lists_exactly_the_events_the_code_logs() -> None:
    listed = contract_events()
    assert len(listed) == len(set(listed)), f"events listed twice: {listed}"
    emitted = code_events()
    assert emitted, "no event names found in service/"
    assert set(listed) == emitted, (
        f"in the code, not in docs/contract.md: {sorted(emitted - set(listed))}; "
        f"in docs/contract.md, never logged: {sorted(set(listed) - emitted)}"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_filter_only_on_events_the_code_logs(doc: Path) -> None:
    used = set(re.findall(r'\bevent\s*=~?\s*"([^"]*)"', doc.read_text()))
    assert not used - code_events(), f"{doc.name} filters on events never logged"


# ---------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class ContractMetric:
    name: str
    kind: str
    unit: str
    buckets: tuple[float, ...]
    attributes: frozenset[str]
    closed_values: frozenset[str]
    prometheus: frozenset[str]


def _code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _expand(name: str) -> set[str]:
    """``a_{x,y}`` → ``a_x``, ``a_y``."""
    m = re.fullmatch(r"([^{]*)\{([^}]*)\}(.*)", name)
    if not m:
        return {name}
    return {m.group(1) + part + m.group(3) for part in m.group(2).split(",")}


def contract_metrics() -> dict[str, ContractMetric]:
    text = _section(CONTRACT.read_text(), "| OTel instrument |")
    out: dict[str, ContractMetric] = {}
    for row in _table_rows(text):
        name, kind, unit, buckets, attributes, values, prometheus = row
        [instrument] = _code_spans(name)
        assert instrument not in out, f"{instrument} listed twice"
        out[instrument] = ContractMetric(
            name=instrument,
            kind=kind,
            unit="" if unit == NO_UNIT else unit.strip("`"),
            buckets=tuple(float(b) for b in buckets.split(",")) if buckets else (),
            attributes=frozenset(_code_spans(attributes)),
            closed_values=frozenset(_code_spans(values)),
            prometheus=frozenset(n for span in _code_spans(prometheus) for n in _expand(span)),
        )
    return out


# otlptranslator (the collector's Prometheus exporter, UnderscoreEscapingWithSuffixes)
UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}


def prometheus_names(name: str, kind: str, unit: str) -> set[str]:
    """The series names the collector's Prometheus exporter gives an OTel instrument."""
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    if unit and not unit.startswith("{"):
        if unit == "1":
            suffix = "ratio" if kind == "gauge" else ""
        else:
            assert unit in UNIT_SUFFIXES, f"{name}: unit {unit!r} has no known Prometheus suffix"
            suffix = UNIT_SUFFIXES[unit]
        if suffix and not base.endswith("_" + suffix):
            base = f"{base}_{suffix}"
    if kind == "counter":
        return {base if base.endswith("_total") else base + "_total"}
    if kind == "histogram":
        return {f"{base}_{part}" for part in ("bucket", "sum", "count")}
    return {base}


@dataclass(frozen=True)
class Emitted:
    kind: str
    unit: str
    buckets: tuple[float, ...]
    attributes: dict[str, set[str]]  # attribute name → values seen


def _kind(metric: object) -> str:
    data = type(metric.data).__name__  # type: ignore[attr-defined]
    if data == "Sum":
        return "counter" if metric.data.is_monotonic else "updowncounter"  # type: ignore[attr-defined]
    return data.lower()


@pytest.fixture(scope="module")
def emitted(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Emitted]:
    """Every instrument both apps create in a run that exercises all of them."""
    tmp_path = tmp_path_factory.mktemp("contract-run")
    model_port = free_port()
    settings = make_settings(
        model_dir,
        tmp_path,
        model_url=f"http://127.0.0.1:{model_port}",
        drift_window=20,
        drift_min_window=10,
        drift_recompute_every=1,
    )
    caps = [captured("model-service"), captured("gateway")]
    with (
        serve(model_service.create_app(settings, caps[0].telemetry), model_port) as model_url,
        serve(gateway.create_app(settings, caps[1].telemetry)) as gateway_url,
    ):
        answer = httpx.post(f"{gateway_url}/v1/predict", json={"records": [VALID_RECORD] * 20})
        assert answer.status_code == 200
        first = answer.json()["predictions"][0]
        label = {"prediction_id": first["prediction_id"], "label": first["prediction"]}
        assert httpx.post(f"{gateway_url}/v1/feedback", json=label).status_code == 200
        bad = httpx.post(f"{gateway_url}/v1/predict", json={"record": {**VALID_RECORD, "age": "x"}})
        assert bad.status_code == 422
        wait_until(
            lambda: httpx.get(f"{model_url}/drift").json()["window"]["size"] >= 10,
            "the drift monitor never computed",
            timeout_s=30,
            poll_s=0.05,
        )
        for cap in caps:
            # The SDK's self-metrics: its batch processors count what they hand over when
            # they export, and a reader counts a collection from the next one on.
            cap.flush()
            cap.metric_points()
        points = [cap.metric_points() for cap in caps]
    for cap in caps:
        cap.telemetry.shutdown()
    out: dict[str, Emitted] = {}
    for found in points:
        for name, (metric, data_points) in found.items():
            attributes: dict[str, set[str]] = {}
            for p in data_points:
                for key, value in p.attributes.items():
                    attributes.setdefault(key, set()).add(str(value))
            bounds = tuple(float(b) for b in getattr(data_points[0], "explicit_bounds", ()) or ())
            seen = out.get(name)
            if seen is not None:  # the same instrument in both apps: merge what each saw
                for key, values in seen.attributes.items():
                    attributes.setdefault(key, set()).update(values)
            out[name] = Emitted(_kind(metric), metric.unit or "", bounds, attributes)
    return out


def _closed_set_matches(row: ContractMetric, code: Emitted) -> bool:
    """One attribute takes the row's closed values: all of them on a counter (created at 0
    for every value), some of them on a gauge (the values it has now)."""
    if row.kind == "counter":
        return any(values == row.closed_values for values in code.attributes.values())
    return any(values <= row.closed_values for values in code.attributes.values())


def test_every_instrument_has_a_contract_row_and_every_row_an_instrument(
    emitted: dict[str, Emitted],
) -> None:
    listed = set(contract_metrics())
    assert set(emitted) - listed == set(), "instruments missing from docs/contract.md"
    assert listed - set(emitted) == set(), "contract rows no run of the code creates"


def test_contract_rows_match_the_instruments(emitted: dict[str, Emitted]) -> None:
    problems = []
    for name, row in contract_metrics().items():
        code = emitted.get(name)
        if code is None:
            continue  # reported by the test above
        if (row.kind, row.unit) != (code.kind, code.unit):
            problems.append(
                f"{name}: contract {row.kind}/{row.unit!r}, code {code.kind}/{code.unit!r}"
            )
        if row.buckets != code.buckets:
            problems.append(f"{name}: contract buckets {row.buckets}, code {code.buckets}")
        if not set(code.attributes) <= row.attributes:
            problems.append(
                f"{name}: attributes {sorted(set(code.attributes) - row.attributes)} not in the contract"
            )
        if not row.attributes - set(code.attributes) <= {"error.type"}:  # only set on failures
            problems.append(
                f"{name}: contract attributes {sorted(row.attributes - set(code.attributes))} never set"
            )
        if row.closed_values and not _closed_set_matches(row, code):
            problems.append(f"{name}: no attribute takes {sorted(row.closed_values)}")
        expected = prometheus_names(name, row.kind, row.unit)
        if row.prometheus != expected:
            problems.append(
                f"{name}: Prometheus {sorted(row.prometheus)}, exporter gives {sorted(expected)}"
            )
    assert not problems, "\n".join(problems)


def test_validation_reasons_in_the_contract_are_the_code_s(emitted: dict[str, Emitted]) -> None:
    listed = re.search(r"Validation reasons \(`validation.reason`, a closed set\):(.*?)\n\n",
                       CONTRACT.read_text(), re.S)  # fmt: skip
    assert listed, "the contract lists no validation reasons"
    reasons = set(_code_spans(listed.group(1)))
    assert reasons == emitted["modelobs.validation.failures"].attributes["validation.reason"]


# ---------------------------------------------------------------------------- runbooks


def promql_blocks(doc: Path) -> list[str]:
    return re.findall(r"```promql\n(.*?)```", doc.read_text(), re.S)


def inline_spans(doc: Path) -> list[str]:
    """Inline code outside fenced blocks."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    return re.findall(r"`([^`\n]+)`", text)


# An inline span names metrics when it starts with one of these (label names such as
# `http_route` or `model_version` do not).
METRIC_SPAN = re.compile(
    r"^(up\b|modelobs[_:]|service_name:|otelcol_|traces_span_metrics_|http_(server|client)_)"
)


PLACEHOLDER = re.compile(r"<[^>]*>|\b[A-Z]+\b")  # ratio_rate<window>, alert_threshold:NAME


def _known(name: str) -> bool:
    exact, prefixes = known_metric_names()
    if PLACEHOLDER.search(name):  # a family of names: one of them must exist
        pattern = re.escape(PLACEHOLDER.sub("\0", name)).replace("\0", r"\w+")
        return any(re.fullmatch(pattern, known) for known in exact)
    # a histogram is named by its family too: `http_server_request_duration_seconds`
    return name in exact or f"{name}_bucket" in exact or name.startswith(prefixes)


def test_runbooks_have_queries() -> None:
    assert sum(len(promql_blocks(doc)) for doc in RUNBOOKS) >= 5


def test_runbook_queries_parse(tmp_path: Path) -> None:
    promtool = require_binary("PROMTOOL_BIN", "promtool")
    queries = [q for doc in RUNBOOKS for q in promql_blocks(doc)]
    complaint = promtool_rejects(promtool, queries, tmp_path)
    assert complaint is None, f"invalid PromQL in docs/runbooks:\n{complaint}"


@pytest.mark.parametrize("doc", RUNBOOKS, ids=lambda p: p.name)
def test_runbook_queries_read_contract_metrics(doc: Path) -> None:
    unknown = {(q.strip(), n) for q in promql_blocks(doc) for n in unknown_metric_names(q)}
    assert not unknown, f"metrics not in docs/contract.md or the rules: {sorted(unknown)}"


@pytest.mark.parametrize("doc", RUNBOOKS, ids=lambda p: p.name)
def test_runbook_inline_metric_names_are_known(doc: Path) -> None:
    unknown, unchecked = [], []
    for span in inline_spans(doc):
        if not METRIC_SPAN.match(span):
            continue
        if re.search(r"\(|\[", span):
            unchecked.append(span)  # a query: belongs in a ```promql block
            continue
        for part in re.split(r"\s+(?:/|-|\+|\*|==|and|or|unless)\s+", span):
            selector = re.sub(r"\{[^}]*=[^}]*\}|\s*[<>=!]=?\s*[\d.]+$", "", part)
            if not re.fullmatch(r"[\d.]+", selector):  # `up == 0`: 0 names nothing
                unknown.extend(n for n in _expand(selector) if not _known(n))
    assert not unchecked, (
        f"inline queries escape promtool, put them in ```promql blocks: {unchecked}"
    )
    assert not unknown, f"metric names not in docs/contract.md or the rules: {unknown}"
