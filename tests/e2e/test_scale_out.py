"""The collector scaled out, end to end: one agent (otel-collector/agent.yaml) forwarding by
trace id to two gateway collectors (gateway.yaml), with the real services, Jaeger, Prometheus
and VictoriaLogs, all started from deploy/native (scaled.py).

* Over 1,000 requests every kept trace in Jaeger is whole (both services, one shape per
  outcome), no trace is split across the gateways (each is new on exactly one of them),
  span-metric request counts summed over both gateways equal the requests sent, exactly,
  and every error trace is kept.
* The same traces sent to the agent and to a single collector (config.yaml, its own
  Jaeger) get the same tail-sampling decisions.
* One gateway killed (SIGKILL) and started again under load: no trace the agent sent is lost.
  What the agent accepted after the kill waits in its queue on disk; what the killed gateway
  had accepted and held in tail_sampling's memory (decision_wait) is in its trace journal
  (otel-collector/components/tracejournal) and replayed when it starts again. Every sent
  trace (each kept: every request of that pair fails) is whole in Jaeger; the test prints
  how long recovery took and how many traces the journal replayed.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import psutil
import pytest
from deploy.native import components as native
from deploy.native import scaled as tiers
from deploy.native.readiness import log_tail
from deploy.native.summary import iter_spans, prom_query
from deploy.native.supervisor import Running, Supervisor, SupervisorError
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation import set_span_in_context

from modelobs.flags import store

from .. import waiting
from .conftest import Sent, jaeger_trace, send

pytestmark = pytest.mark.e2e

REQUESTS = 1000
CLIENTS = 8
DECISION_WAIT_S = 2
LATENCY_MS = 200
ERROR_RATE = 0.1
GATEWAY_INSTANCE, MODEL_INSTANCE = "scale-gateway", "scale-model"
SINGLE, SINGLE_JAEGER = "otelcol-single", "jaeger-single"
FAULTY = "-faulty"
# The single collector's and its Jaeger's own ports (placeholders of their specs).
SINGLE_PORTS = (
    "otlp_grpc",
    "otlp_http",
    "collector_prometheus",
    "collector_self",
    "collector_health",
    "jaeger_otlp_grpc",
    "jaeger_otlp_http",
    "jaeger_query_http",
    "jaeger_query_grpc",
    "jaeger_health",
    "jaeger_metrics",
)
SERVICES = {"gateway", "model-service"}
# A trace whose request ended up to this long before the kill may still have been in the
# killed gateway's memory: the SDK's export delay (0.3 s), the decision wait, the
# tail-sampling tick (1 s), the batch processor after it (0.5 s) and a margin. Without the
# trace journal these were lost; the kill test prints how many there were.
DECISION_WINDOW_S = 0.3 + DECISION_WAIT_S + 1 + 0.5 + 2.2


@dataclass
class ScaledStack:
    cfg: native.StackConfig
    bins: dict[str, str]
    gateways: list[tiers.GatewayPorts]
    records: dict[str, Running]
    gateway_url: str
    faulty_gateway_url: str
    single: dict[str, int]  # the single collector's and its Jaeger's ports, by Ports field
    restarted: list[Supervisor] = field(default_factory=list)

    @property
    def jaeger_url(self) -> str:
        return self.cfg.url(self.cfg.ports.jaeger_query_http)

    @property
    def single_jaeger_url(self) -> str:
        return self.cfg.url(self.single["jaeger_query_http"])

    def log(self, name: str) -> str:
        return log_tail(self.cfg.run_dir / f"{name}.log")


@pytest.fixture(scope="module")
def scaled(bins: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaledStack]:
    run_dir = tmp_path_factory.mktemp("scaled-run")
    # One pick for every port of the test, so none is handed out twice.
    ports, extra = native.Ports.free(extra=2 + len(SINGLE_PORTS) + 10)
    picked = iter(extra)
    faulty_model, faulty_gateway = next(picked), next(picked)
    single = {name: next(picked) for name in SINGLE_PORTS}
    sampling = {
        "TAIL_SAMPLING_DECISION_WAIT": f"{DECISION_WAIT_S}s",
        "TAIL_SAMPLING_LATENCY_MS": str(LATENCY_MS),
        "TAIL_SAMPLING_PERCENT": "10",
    }
    service_env = {"OTEL_METRIC_EXPORT_INTERVAL": "2000", "OTEL_BSP_SCHEDULE_DELAY": "300"}
    # Inference errors on a share of requests (10 %), and on every request of the faulty pair.
    some_errors, all_errors = run_dir / "flags-errors.json", run_dir / "flags-faulty.json"
    store.switch(some_errors, "inference-errors", "share", {"share": ERROR_RATE})
    store.switch(all_errors, "inference-errors", "every", {"share": 1.0})
    cfg = native.StackConfig(
        run_dir=run_dir,
        ports=ports,
        extra_env={
            tiers.GATEWAY: sampling,
            "otelcol": sampling,
            "model-service": {
                **service_env,
                "MODELOBS_FLAGS_FILE": str(some_errors),
                "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={MODEL_INSTANCE}",
            },
            "gateway": {
                **service_env,
                "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={GATEWAY_INSTANCE}",
            },
        },
        load_max_seconds=0,
        ready_timeout_s=180,
    )
    gateways = tiers.gateway_ports(cfg, 2, picked)
    extras = [
        # Every request fails in the model service: every trace is kept (status_code policy),
        # so the kill test can count them all in Jaeger. After the first model service,
        # which trains the shared model.
        *native.service_pair(
            cfg,
            suffix=FAULTY,
            model_port=faulty_model,
            gateway_port=faulty_gateway,
            model_env={"MODELOBS_FLAGS_FILE": str(all_errors), "OTEL_RESOURCE_ATTRIBUTES": ""},
            gateway_env={"OTEL_RESOURCE_ATTRIBUTES": ""},
            model_after=("model-service",),
        ),
        # One collector with config.yaml and its own Jaeger: the decisions to compare with.
        native.resolve(native.SPECS["jaeger"], cfg, bins, name=SINGLE_JAEGER, params=single),
        native.resolve(
            native.SPECS["otelcol"],
            cfg,
            bins,
            name=SINGLE,
            params=single,
            env={"COLLECTOR_STORAGE_DIR": str(run_dir / SINGLE / "storage")},
            depends_on=(SINGLE_JAEGER, "victorialogs"),
        ),
    ]
    supervisor = Supervisor(run_dir)
    started = time.monotonic()
    try:
        records = supervisor.start(tiers.scaled_stack(cfg, bins, gateways) + extras, say=print)
    except (SupervisorError, LookupError) as exc:
        pytest.fail(f"the scaled-out stack did not start: {exc}", pytrace=False)
    print(f"scaled-out stack up in {time.monotonic() - started:.1f}s, run dir {run_dir}")
    stack = ScaledStack(
        cfg=cfg,
        bins=bins,
        gateways=gateways,
        records={r.name: r for r in records},
        gateway_url=cfg.url(ports.gateway),
        faulty_gateway_url=cfg.url(faulty_gateway),
        single=single,
    )
    try:
        yield stack
    finally:
        for restarted in stack.restarted:
            restarted.stop(say=lambda _m: None)
        supervisor.stop(say=lambda _m: None)


# --------------------------------------------------------------------------- helpers


def wait_until(check: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    """tests/waiting.py's wait, with this file's argument order and a 0.5 s poll."""
    waiting.wait_until(check, what, timeout_s, poll_s=0.5)


def self_metric(port: int, name: str, **labels: str) -> float:
    """Sum of a collector's own metric ``name`` (series with ``labels``); 0 when absent."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name)] in "{ " and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def gateways_metric(stack: ScaledStack, name: str, **labels: str) -> float:
    return sum(self_metric(g.self, name, **labels) for g in stack.gateways)


@dataclass(frozen=True)
class JaegerAt:
    """A Jaeger query address, in the shape conftest's jaeger_trace reads."""

    jaeger_url: str


def found_traces(jaeger_url: str, trace_ids: list[str]) -> dict[str, list[dict]]:
    """The traces of ``trace_ids`` Jaeger has (span lists), fetched concurrently."""
    with ThreadPoolExecutor(8) as pool:
        jaeger = JaegerAt(jaeger_url)
        spans = list(pool.map(lambda t: jaeger_trace(jaeger, t), trace_ids))  # type: ignore[arg-type]
    return {t: s for t, s in zip(trace_ids, spans, strict=True) if s}


def stored_twice(jaeger_url: str, trace_ids: list[str]) -> int:
    """How many of ``trace_ids`` Jaeger STORES with a span twice: read with raw_traces=true,
    which skips the query service's adjusters (among them the span-hash deduplication)."""

    def doubled(trace_id: str) -> bool:
        response = httpx.get(
            f"{jaeger_url}/api/v3/traces/{trace_id}", params={"raw_traces": "true"}, timeout=5
        )
        if response.status_code != 200:
            return False
        ids = [s["spanId"] for s in iter_spans(response.json())]
        return len(ids) != len(set(ids))

    with ThreadPoolExecutor(8) as pool:
        return sum(pool.map(doubled, trace_ids))


def shape(spans: list[dict]) -> tuple[tuple[str, str], ...]:
    """Which spans of which service a trace has (a duplicate delivery counted once)."""
    unique = {s["spanId"]: s for s in spans}
    return tuple(sorted((s["_service"], s["name"]) for s in unique.values()))


def linked(spans: list[dict], outside_parent: str) -> bool:
    """Every span's parent is in the trace, except the root's (the client's span)."""
    ids = {s["spanId"] for s in spans}
    return all(s.get("parentSpanId") in ids | {outside_parent} for s in spans)


def whole(spans: list[dict], sent: Sent) -> bool:
    return {s["_service"] for s in spans} == SERVICES and linked(spans, sent.parent_span_id)


def send_many(url: str, count: int) -> list[Sent]:
    def one(_: int) -> Sent:
        with httpx.Client(timeout=15) as client:
            return send(url, client)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(count)))


def span_metric_calls(stack: ScaledStack, service: str, instance: str, by: str = "") -> list[dict]:
    query = (
        f"sum{f' by ({by})' if by else ''} (traces_span_metrics_calls_total{{"
        f'service_name="{service}", service_instance_id="{instance}", '
        'span_kind="SPAN_KIND_SERVER"})'
    )
    return prom_query(stack.cfg.url(stack.cfg.ports.prometheus), query)


def settled_calls(stack: ScaledStack, service: str, instance: str) -> float:
    """The summed span-metric server calls once they reached REQUESTS (or the deadline)."""
    counted: list[dict] = []

    def reached() -> bool:
        counted[:] = span_metric_calls(stack, service, instance)
        return bool(counted) and float(counted[0]["value"][1]) >= REQUESTS

    wait_until(reached, 90, lambda: f"{service} span-metric calls: {counted}")
    return float(counted[0]["value"][1])


# --------------------------------------------------------------------------- tests


def test_every_request_counted_once_and_every_kept_trace_whole(scaled: ScaledStack) -> None:
    new_before = gateways_metric(scaled, "otelcol_processor_tail_sampling_new_trace_id_received")
    sent = send_many(scaled.gateway_url, REQUESTS)
    statuses = Counter(s.response.status_code for s in sent)
    errors = [s for s in sent if s.response.status_code >= 500]
    assert set(statuses) <= {200, 500, 502, 503} and statuses[200] > REQUESTS / 2, statuses
    assert len(errors) >= REQUESTS * 0.03, statuses

    # Span metrics, summed over both gateways: every request exactly once, per service.
    for service, instance in (("gateway", GATEWAY_INSTANCE), ("model-service", MODEL_INSTANCE)):
        assert settled_calls(scaled, service, instance) == REQUESTS
        per_gateway = span_metric_calls(scaled, service, instance, by="collector_instance_id")
        assert len(per_gateway) == 2, per_gateway
        assert all(float(r["value"][1]) > REQUESTS / 5 for r in per_gateway), per_gateway

    # Each trace was new on exactly one gateway: none was split between them.
    new_traces = (
        gateways_metric(scaled, "otelcol_processor_tail_sampling_new_trace_id_received")
        - new_before
    )
    assert new_traces == REQUESTS

    # Every error trace is kept, and every kept trace is whole, one shape per outcome.
    by_id = {s.trace_id: s for s in sent}
    kept: dict[str, list[dict]] = {}

    def errors_kept() -> bool:
        kept.update(found_traces(scaled.jaeger_url, [t for t in by_id if t not in kept]))
        return all(e.trace_id in kept and whole(kept[e.trace_id], e) for e in errors)

    wait_until(
        errors_kept,
        120,
        lambda: (
            f"{sum(e.trace_id not in kept for e in errors)} of {len(errors)} error "
            f"traces missing; gateway log:\n{scaled.log(tiers.gateway_name(0))}"
        ),
    )
    broken = [t for t, spans in kept.items() if not whole(spans, by_id[t])]
    assert not broken, f"{len(broken)} kept traces are not whole, e.g. {broken[:3]}"
    shapes = {
        outcome: {shape(kept[t]) for t in kept if (by_id[t].response.status_code >= 500) == outcome}
        for outcome in (True, False)
    }
    assert all(len(s) == 1 for s in shapes.values()), shapes
    # Still exact after the Jaeger checks (later flushes and scrapes added nothing).
    for service, instance in (("gateway", GATEWAY_INSTANCE), ("model-service", MODEL_INSTANCE)):
        assert float(span_metric_calls(scaled, service, instance)[0]["value"][1]) == REQUESTS
    ok_kept = sum(by_id[t].response.status_code == 200 for t in kept)
    print(
        f"\n{REQUESTS} requests: {len(errors)} errors (all kept), {ok_kept} of "
        f"{statuses[200]} OK traces kept; span metrics per gateway: "
        f"{[r['value'][1] for r in per_gateway]}"
    )


def synthetic_traces(endpoint: str, traces: dict[str, str]) -> None:
    """One root and two children per trace id, ending OK, ERROR or slow, sent over OTLP."""
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    provider = TracerProvider(resource=Resource.create({"service.name": "decisions-check"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=256))
    tracer = provider.get_tracer("scale-out-test")
    now = time.time_ns()
    for trace_id, outcome in traces.items():
        remote = SpanContext(
            int(trace_id, 16), secrets.randbits(64), is_remote=True, trace_flags=TraceFlags(1)
        )
        duration = (LATENCY_MS * 3 if outcome == "slow" else 2) * 1_000_000
        root = tracer.start_span(
            "root", set_span_in_context(NonRecordingSpan(remote)), start_time=now
        )
        for child in ("a", "b"):
            span = tracer.start_span(child, set_span_in_context(root), start_time=now)
            span.end(end_time=now + duration // 2)
        if outcome == "error":
            root.set_status(Status(StatusCode.ERROR, "synthetic"))
        root.end(end_time=now + duration)
    provider.force_flush()
    provider.shutdown()


def test_tail_sampling_decides_as_a_single_collector(scaled: ScaledStack) -> None:
    outcomes = ("error", "slow", *("ok",) * 8)
    traces = {secrets.token_hex(16): outcomes[i % len(outcomes)] for i in range(400)}
    decided = "otelcol_processor_tail_sampling_global_count_traces_sampled"
    single_self = scaled.single["collector_self"]
    before = (gateways_metric(scaled, decided), self_metric(single_self, decided))
    sampled_before = (
        gateways_metric(scaled, decided, sampled="true"),
        self_metric(single_self, decided, sampled="true"),
    )
    synthetic_traces(f"127.0.0.1:{scaled.cfg.ports.otlp_grpc}", traces)  # the agent
    synthetic_traces(f"127.0.0.1:{scaled.single['otlp_grpc']}", traces)  # one collector

    wait_until(
        lambda: (
            gateways_metric(scaled, decided) - before[0] >= len(traces)
            and self_metric(single_self, decided) - before[1] >= len(traces)
        ),
        60,
        lambda: "not every synthetic trace was decided",
    )
    sampled = (
        gateways_metric(scaled, decided, sampled="true") - sampled_before[0],
        self_metric(single_self, decided, sampled="true") - sampled_before[1],
    )
    ids = list(traces)
    kept: dict[str, set[str]] = {}

    def exported() -> bool:
        kept["scaled"] = set(found_traces(scaled.jaeger_url, ids))
        kept["single"] = set(found_traces(scaled.single_jaeger_url, ids))
        return (len(kept["scaled"]), len(kept["single"])) == sampled

    wait_until(exported, 60, lambda: f"kept {[len(k) for k in kept.values()]}, sampled {sampled}")
    assert kept["scaled"] == kept["single"]
    must_keep = {t for t, outcome in traces.items() if outcome != "ok"}
    assert must_keep <= kept["scaled"]
    assert 0 < len(kept["scaled"] - must_keep) < len(traces) - len(must_keep)
    print(f"\nsame decisions on {len(traces)} traces: {len(kept['scaled'])} kept by both")


class Load:
    """Requests through a gateway from a few clients until stopped (bounded in count and
    time), each remembered with when its response came."""

    def __init__(self, url: str, clients: int = 4, max_requests: int = 6000) -> None:
        self.url, self.max_requests = url, max_requests
        self.sent: list[tuple[float, Sent]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]
        self.deadline = time.monotonic() + 180

    def run(self) -> None:
        with httpx.Client(timeout=15) as client:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                item = send(self.url, client)
                with self.lock:
                    self.sent.append((time.monotonic(), item))
                    if len(self.sent) >= self.max_requests:
                        self.stop.set()

    def count(self) -> int:
        with self.lock:
            return len(self.sent)

    def wait_for(self, more: int) -> None:
        target = self.count() + more
        wait_until(lambda: self.count() >= target, 60, lambda: f"load stuck at {self.count()}")

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def kill(record: Running) -> None:
    for proc in record.group():
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(record.group(), timeout=10)


def test_killed_gateway_loses_no_span_the_agent_accepted(scaled: ScaledStack) -> None:
    victim = tiers.gateway_name(1)
    with Load(scaled.faulty_gateway_url) as load:
        load.wait_for(200)
        kill(scaled.records[victim])
        killed_at = time.monotonic()
        load.wait_for(300)  # sent while the gateway is down
        restarted_at = time.monotonic()
        supervisor = Supervisor(scaled.cfg.run_dir / "restarted")
        scaled.restarted.append(supervisor)
        supervisor.start(
            [tiers.gateway_process(scaled.cfg, scaled.bins, 1, scaled.gateways[1])],
            say=lambda _m: None,
        )
        ready_s = time.monotonic() - restarted_at
        # Before its retention (20 s) deletes anything, the new process's journal holds what
        # it replayed and took since: its size per span is the services' spans' cost on disk.
        journal = (
            self_metric(scaled.gateways[1].self, "otelcol_processor_trace_journal_size"),
            self_metric(scaled.gateways[1].self, "otelcol_processor_trace_journal_journaled_spans"),
        )
        load.wait_for(200)
    sent = {item.trace_id: (at, item) for at, item in load.sent}
    assert all(item.response.status_code >= 500 for _, item in sent.values())
    after_kill = [t for t, (at, _) in sent.items() if at > killed_at]
    in_window = {
        t for t, (at, _) in sent.items() if killed_at - DECISION_WINDOW_S < at <= killed_at
    }

    kept: dict[str, list[dict]] = {}

    def missing() -> list[str]:
        return [t for t, (_, item) in sent.items() if t not in kept or not whole(kept[t], item)]

    def all_whole() -> bool:
        kept.update(found_traces(scaled.jaeger_url, missing()))
        return not missing()

    wait_until(
        all_whole,
        240,
        lambda: (
            f"{len(missing())} of {len(sent)} sent traces missing or not whole in Jaeger "
            f"({len(set(missing()) & in_window)} of them ended in the {DECISION_WINDOW_S:.0f}s "
            f"before the kill, {len(set(missing()) & set(after_kill))} after it); restarted "
            f"gateway log:\n{log_tail(scaled.cfg.run_dir / 'restarted' / f'{victim}.log')}"
        ),
    )
    recovered_s = time.monotonic() - restarted_at
    restarted_self = scaled.gateways[1].self
    replayed = self_metric(restarted_self, "otelcol_processor_trace_journal_replayed_traces")
    replayed_spans = self_metric(restarted_self, "otelcol_processor_trace_journal_replayed_spans")
    # The gateway was killed under load: its journal held traces, and the new process fed
    # them back into tail sampling (the traces in the decision window are among them).
    assert replayed > 0 and replayed_spans >= replayed, (replayed, replayed_spans)
    outage_s = restarted_at - killed_at
    # Replayed traces the killed gateway had already exported reach Jaeger twice; its query
    # service drops identical span copies (span-hash deduplication), so none should show.
    doubled = sum(len(spans) != len({s["spanId"] for s in spans}) for spans in kept.values())
    stored_doubled = stored_twice(scaled.jaeger_url, list(sent))
    print(
        f"\n{len(sent)} traces, {len(after_kill)} sent after the kill: all whole in Jaeger, "
        f"none lost. Gateway down {outage_s:.1f}s, ready {ready_s:.1f}s after its restart; "
        f"recovery (restart -> last trace whole in Jaeger) took {recovered_s:.1f}s. The "
        f"journal replayed {replayed:.0f} traces ({replayed_spans:.0f} spans, both services' "
        f"traffic routed to that gateway); {len(in_window)} sent traces ended in the "
        f"{DECISION_WINDOW_S:.0f}s decision window before the kill (those routed to the "
        f"killed gateway were lost before the journal). Traces stored with a span twice "
        f"(replayed after their export): {stored_doubled}, shown so by the API: {doubled}. "
        f"Journal on disk: {journal[0] / max(journal[1], 1):.0f} bytes per span."
    )
