"""Complete lineage under head sampling: with a 10% ratio sampler wrapped in
``LineageSampler``, every job of a 200-job workload has its run in lineage, only the
sampled traces reach the trace exporter, and runs of sampled-out traces say so.

Which traces were sampled is asked of the ratio sampler itself (its decision is a pure
function of the trace id), never read from our output.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from autoinstrument_support import console_spans
from olspec import validate_event
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace.span import TraceState
from procs.sampled_jobs import METADATA, ORDERS, TOTALS, run_jobs

from otel_sqla_lineage import (
    LineageSampler,
    OpenLineageSpanExporter,
    SQLAlchemyLineageInstrumentor,
    UnsampledSpanProcessor,
    run_id_for,
)
from otel_sqla_lineage.autoconfig import attach_unsampled_span_processor
from otel_sqla_lineage.delivery import JsonLinesSink
from otel_sqla_lineage.sampling import SAMPLER_NAMES

JOBS = 200
RATIO = 0.1
JAEGER = "http://127.0.0.1:16686"
PROCS = Path(__file__).parent / "procs"
BIN = Path(sys.executable).parent


def ratio_samples(trace_id: int) -> bool:
    """The plain ratio sampler's own decision for a root span of this trace."""
    decision = TraceIdRatioBased(RATIO).should_sample(None, trace_id, "settle_orders").decision
    return decision.is_sampled()


class SeededIds(IdGenerator):
    """Fixed ids: the same traces (and so the same sampling decisions) on every run."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


def sampled_flag(traceparent: str) -> int:
    """The W3C "sampled" bit of a traceparent (other flag bits, such as "random trace id",
    may be set too)."""
    return int(traceparent.rsplit("-", 1)[1], 16) & 0x01


def read_events(path: Path) -> list[dict[str, Any]]:
    assert path.exists(), f"no lineage file at {path}"
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_lineage_and_traces(
    jobs: list[dict[str, Any]], events: list[dict[str, Any]], traced_ids: set[str]
) -> None:
    """What a user checks: every job has its run, only sampled traces were traced, runs of
    the others carry the marker (and no link into the tracing UI)."""
    assert len(jobs) == JOBS
    sampled = {j["trace_id"] for j in jobs if ratio_samples(int(j["trace_id"], 16))}
    # with these ids the ratio sampler keeps some traces and drops most: both paths run
    assert 0 < len(sampled) < JOBS // 2, len(sampled)

    completes = {e["run"]["runId"]: e for e in events
                 if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".settle_orders")}
    starts = [e["run"]["runId"] for e in events
              if e["eventType"] == "START" and e["job"]["name"].endswith(".settle_orders")]
    expected = {str(run_id_for(int(j["trace_id"], 16), int(j["span_id"], 16))): j
                for j in jobs}
    assert set(completes) == set(expected), "every job's run, sampled or not"
    assert sorted(starts) == sorted(expected), "one START per run: nothing fed twice"

    # set-up statements outside any job are traces of their own, sampled the same way
    assert all(ratio_samples(int(t, 16)) for t in traced_ids), "only sampled traces exported"
    assert traced_ids & {j["trace_id"] for j in jobs} == sampled, "every sampled job traced"

    for run_id, job in expected.items():
        complete = completes[run_id]
        otel = complete["run"]["facets"]["opentelemetry"]
        assert otel["traceId"] == job["trace_id"]
        assert [d["name"] for d in complete["inputs"]] == ["orders"]
        assert [d["name"] for d in complete["outputs"]] == ["order_totals", "orders"]
        if job["trace_id"] in sampled:
            assert "sampled" not in otel
            assert sampled_flag(job["traceparent"]) == 1
        else:
            assert otel["sampled"] is False
            assert "traceUrl" not in otel
            # propagation keeps the user's decision: downstream services drop it too
            assert sampled_flag(job["traceparent"]) == 0


def run_billing_jobs(provider: TracerProvider, lineage: OpenLineageSpanExporter,
                     tmp_path: Path) -> list[dict[str, Any]]:
    """The workload of ``JOBS`` jobs on a SQLite file, traced by ``provider`` with ``lineage``
    fed both ways (sampled spans and, through UnsampledSpanProcessor, the others)."""
    provider.add_span_processor(BatchSpanProcessor(lineage))
    provider.add_span_processor(UnsampledSpanProcessor(lineage))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}")
        return run_jobs(engine, provider.get_tracer("billing"), JOBS)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()  # the lineage exporter emits what it holds and delivers it


def test_every_job_has_lineage_and_only_sampled_traces_are_exported(tmp_path: Path) -> None:
    traces = InMemorySpanExporter()
    events_file = tmp_path / "events.jsonl"
    lineage = OpenLineageSpanExporter(sink=JsonLinesSink(events_file), trace_ui_url=JAEGER)
    provider = TracerProvider(
        sampler=LineageSampler(ParentBased(TraceIdRatioBased(RATIO))),
        resource=Resource.create({"service.name": "billing"}),
        id_generator=SeededIds(9),
    )
    provider.add_span_processor(BatchSpanProcessor(traces))
    jobs = run_billing_jobs(provider, lineage, tmp_path)

    exported = traces.get_finished_spans()
    check_lineage_and_traces(
        jobs, read_events(events_file),
        {f"{s.context.trace_id:032x}" for s in exported if s.context is not None},
    )
    # the sampled traces are whole: the job span and its statements
    assert "settle_orders" in {s.name for s in exported}
    assert {(s.attributes or {}).get("db.operation.name") for s in exported} >= {
        "INSERT", "SELECT"}
    events = read_events(events_file)
    unsampled = next(e for e in events if e["eventType"] == "COMPLETE"
                     and e["run"]["facets"]["opentelemetry"].get("sampled") is False)
    sampled = next(e for e in events if e["eventType"] == "COMPLETE"
                   and "sampled" not in e["run"]["facets"]["opentelemetry"])
    assert sampled["run"]["facets"]["opentelemetry"]["traceUrl"].startswith(JAEGER)
    validate_event(unsampled)


def test_without_the_wrapper_sampled_out_jobs_have_no_lineage(tmp_path: Path) -> None:
    """Why the wrapper exists: the same workload under the plain ratio sampler."""
    events_file = tmp_path / "events.jsonl"
    lineage = OpenLineageSpanExporter(sink=JsonLinesSink(events_file))
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(RATIO)),
                              id_generator=SeededIds(9))
    jobs = run_billing_jobs(provider, lineage, tmp_path)
    runs = {e["run"]["runId"] for e in read_events(events_file)
            if e["job"]["name"].endswith(".settle_orders")}
    sampled = [j for j in jobs if ratio_samples(int(j["trace_id"], 16))]
    assert len(runs) == len(sampled) < JOBS


class _Fixed(Sampler):
    def __init__(self, decision: Decision) -> None:
        self.decision = decision

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(self.decision, {"sampler.note": "kept"},
                              TraceState([("vendor", "x")]))

    def get_description(self) -> str:
        return f"Fixed({self.decision.name})"


@pytest.mark.parametrize(("delegate", "wrapped"), [
    (Decision.DROP, Decision.RECORD_ONLY),
    (Decision.RECORD_ONLY, Decision.RECORD_ONLY),
    (Decision.RECORD_AND_SAMPLE, Decision.RECORD_AND_SAMPLE),
])
def test_lineage_sampler_only_turns_drop_into_record_only(
    delegate: Decision, wrapped: Decision
) -> None:
    result = LineageSampler(_Fixed(delegate)).should_sample(None, 1, "span")
    assert result.decision is wrapped
    assert dict(result.attributes) == {"sampler.note": "kept"}
    assert result.trace_state is not None and result.trace_state.get("vendor") == "x"


def test_a_span_recorded_for_lineage_keeps_the_attributes_it_was_started_with() -> None:
    """The SDK's samplers leave a dropped span's start attributes out of their result (a
    web framework's http.route, an application's openlineage.parent.id)."""
    start = {"openlineage.parent.id": "airflow/dag.task/01890000-0000-7000-8000-000000000000"}
    result = LineageSampler(ALWAYS_OFF).should_sample(None, 1, "span", attributes=start)
    assert result.decision is Decision.RECORD_ONLY
    assert dict(result.attributes) == start
    noted = LineageSampler(_Fixed(Decision.DROP)).should_sample(None, 1, "s", attributes=start)
    assert dict(noted.attributes) == {**start, "sampler.note": "kept"}


def test_lineage_sampler_describes_what_it_wraps() -> None:
    sampler = LineageSampler(ParentBased(TraceIdRatioBased(0.25)))
    assert sampler.get_description().startswith("LineageSampler{ParentBased{root:TraceIdRatio")
    with pytest.raises(TypeError, match="wraps a Sampler"):
        LineageSampler(0.1)  # type: ignore[arg-type]


def test_sampler_entry_points_build_the_named_sdk_sampler_wrapped() -> None:
    import importlib.metadata

    eps = {e.name: e for e in importlib.metadata.entry_points(
        group="opentelemetry_traces_sampler") if e.name.startswith("lineage_")}
    assert set(eps) == set(SAMPLER_NAMES)
    for name, entry_point in eps.items():
        sampler = entry_point.load()("0.1")  # the SDK passes OTEL_TRACES_SAMPLER_ARG as is
        assert isinstance(sampler, LineageSampler), name
    ratio = eps["lineage_parentbased_traceidratio"].load()("0.1")
    assert "TraceIdRatioBased{0.1}" in ratio.get_description()
    assert "TraceIdRatioBased{1.0}" in eps["lineage_traceidratio"].load()(None).get_description()


def test_a_bad_sampler_argument_is_logged_and_samples_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        sampler = SAMPLER_NAMES["lineage_parentbased_traceidratio"]("ten percent")
    assert "TraceIdRatioBased{1.0}" in sampler.get_description()
    assert "OTEL_TRACES_SAMPLER_ARG='ten percent' is not a number" in caplog.text


def test_autoconfig_attaches_one_feed_per_lineage_exporter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lineage = OpenLineageSpanExporter(sink=JsonLinesSink(tmp_path / "e.jsonl"))
    provider = TracerProvider(sampler=LineageSampler(ParentBased(TraceIdRatioBased(RATIO))))
    provider.add_span_processor(BatchSpanProcessor(lineage))
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    try:
        assert attach_unsampled_span_processor(provider) == 1
        assert attach_unsampled_span_processor(provider) == 0  # idempotent

        plain = TracerProvider(sampler=ALWAYS_ON)
        plain.add_span_processor(BatchSpanProcessor(lineage))
        assert attach_unsampled_span_processor(plain) == 0  # no LineageSampler: nothing to do

        lonely = TracerProvider(sampler=LineageSampler(ALWAYS_ON))
        with caplog.at_level(logging.WARNING):
            assert attach_unsampled_span_processor(lonely) == 0
        assert "no openlineage exporter is configured" in caplog.text
    finally:
        provider.shutdown()


@pytest.mark.subprocess
def test_opentelemetry_instrument_with_the_sampler_from_the_environment(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    jobs_file = tmp_path / "jobs.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENLINEAGE"))}
    env.update(
        OTEL_SERVICE_NAME="billing",
        OTEL_TRACES_SAMPLER="lineage_parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG=str(RATIO),
        OTEL_TRACES_EXPORTER="console,openlineage",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SQLA_LINEAGE_FILE=str(events_file),
        OTEL_SQLA_LINEAGE_TRACE_UI_URL=JAEGER,
    )
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(PROCS / "sampled_jobs.py"),
         str(tmp_path / "billing.db"), str(jobs_file), str(JOBS)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = json.loads(jobs_file.read_text())
    traced = {span["context"]["trace_id"].removeprefix("0x")
              for span in console_spans(result.stdout)}
    check_lineage_and_traces(jobs, read_events(events_file), traced)


def tail_sampling_overlay() -> dict[str, Any]:
    """The commented tail-sampling overlay shipped in otel-collector-config.yaml."""
    import yaml

    lines = (Path(__file__).resolve().parent.parent / "otel-collector-config.yaml").read_text()
    block = lines.split("# processors:\n", 1)[1].split("#\n", 1)[0]
    text = "processors:\n" + "\n".join(line.removeprefix("# ") for line in block.splitlines())
    overlay: dict[str, Any] = yaml.safe_load(text)
    return overlay


def test_shipped_tail_sampling_layout_samples_only_the_jaeger_pipeline() -> None:
    import yaml

    base = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "otel-collector-config.yaml").read_text())
    overlay = tail_sampling_overlay()
    assert "tail_sampling" in overlay["processors"]
    pipelines = overlay["service"]["pipelines"]
    assert set(pipelines) == {"traces/observability"}, "the lineage pipeline is left alone"
    observability = pipelines["traces/observability"]
    assert "tail_sampling" in observability["processors"]
    assert observability["exporters"] == base["service"]["pipelines"]["traces/observability"][
        "exporters"]
    lineage = base["service"]["pipelines"]["traces/lineage"]
    assert lineage["receivers"] == observability["receivers"] == ["otlp"]
    assert "tail_sampling" not in lineage["processors"]
    assert lineage["exporters"] == ["otlp_grpc/lineage"]


# -- sampled-out statements: lineage without recording their spans ----------------------


class RecordedSpans(SpanProcessor):
    """The names of every span the SDK recorded (sampled or not), as they end."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.statements_in_spans = 0  # SQLAlchemy statement spans with a parent span

    def on_end(self, span: ReadableSpan) -> None:
        self.names.append(span.name)
        scope = span.instrumentation_scope
        if (scope is not None and scope.name == "opentelemetry.instrumentation.sqlalchemy"
                and "db.statement" in (span.attributes or {}) and span.parent is not None):
            self.statements_in_spans += 1


def mixed_workload(engine: sa.engine.Engine, tracer: trace.Tracer) -> None:
    """Jobs that read and write, one job whose statement fails (a FAIL run), and a
    statement in no job (a run of its own)."""
    run_jobs(engine, tracer, 12)
    with (pytest.raises(sa.exc.IntegrityError), tracer.start_as_current_span("settle_orders"),
          engine.begin() as conn):
        conn.execute(sa.insert(TOTALS).values(job=3, n=1))  # job 3 has its total
    with engine.connect() as conn:
        conn.execute(sa.select(sa.func.count()).select_from(ORDERS)).scalar_one()


def lineage_of_workload(
    url: str, sampler: Sampler, granularity: str, events_file: Path, dbapi_spans: bool,
    **engine_args: Any,
) -> tuple[list[dict[str, Any]], RecordedSpans, int]:
    """(lineage events, the recorded spans, how many spans the trace exporter got).
    ``dbapi_spans``: a span per statement as a DB-API instrumentation makes one, started
    after the statement's (inside the driver call; here, just after upstream's listener)."""
    traces = InMemorySpanExporter()
    recorded = RecordedSpans()
    lineage = OpenLineageSpanExporter(sink=JsonLinesSink(events_file), trace_ui_url=JAEGER,
                                      granularity=granularity)  # type: ignore[arg-type]
    provider = TracerProvider(sampler=sampler, id_generator=SeededIds(9),
                              resource=Resource.create({"service.name": "billing"}))
    provider.add_span_processor(recorded)
    provider.add_span_processor(BatchSpanProcessor(traces))
    provider.add_span_processor(BatchSpanProcessor(lineage))
    provider.add_span_processor(UnsampledSpanProcessor(lineage))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider, granularity=granularity)
    engine = sa.create_engine(url, **engine_args)
    tracer = provider.get_tracer("billing")
    if dbapi_spans:
        def dbapi_span(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            with tracer.start_as_current_span(
                    "dbapi", kind=trace.SpanKind.CLIENT,
                    attributes={"db.system": "sqlite", "db.statement": statement}):
                pass
        sa.event.listen(engine, "before_cursor_execute", dbapi_span)
    try:
        METADATA.drop_all(engine)
        mixed_workload(engine, tracer)
        METADATA.drop_all(engine)
    finally:
        engine.dispose()
        instrumentor.uninstrument()
        provider.shutdown()
    return read_events(events_file), recorded, len(traces.get_finished_spans())


def comparable(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events without what may differ between a sampled and a sampled-out run: event
    times, and the marker / trace link of the opentelemetry facet."""
    out = []
    for original in events:
        event = json.loads(json.dumps(original))
        del event["eventTime"]
        otel = event["run"]["facets"]["opentelemetry"]
        otel.pop("sampled", None)
        otel.pop("traceUrl", None)
        out.append(event)
    return sorted(out, key=lambda e: json.dumps(e, sort_keys=True))


def check_same_lineage_sampled_or_not(url: str, tmp_path: Path, granularity: str,
                                      dbapi_spans: bool = False, **engine_args: Any) -> None:
    sampled, sampled_spans, exported = lineage_of_workload(
        url, ALWAYS_ON, granularity, tmp_path / "sampled.jsonl", dbapi_spans, **engine_args)
    assert exported == len(sampled_spans.names) > 0
    assert sampled_spans.statements_in_spans >= 12 * 3 + 1  # the jobs' statements
    unsampled, recorded, exported = lineage_of_workload(
        url, LineageSampler(ALWAYS_OFF), granularity, tmp_path / "unsampled.jsonl",
        dbapi_spans, **engine_args)

    # the light path was taken: statements in a span were never recorded, let alone
    # exported; the jobs' spans were (RECORD_ONLY)
    assert exported == 0
    assert recorded.statements_in_spans == 0
    assert recorded.names.count("settle_orders") == 13

    assert all(e["run"]["facets"]["opentelemetry"]["sampled"] is False for e in unsampled)
    assert all("sampled" not in e["run"]["facets"]["opentelemetry"] for e in sampled)
    assert comparable(unsampled) == comparable(sampled)
    failed = [e for e in unsampled if e["eventType"] == "FAIL"]
    assert failed and all("UNIQUE" in json.dumps(e).upper() for e in failed), failed
    for event in unsampled:
        validate_event(event)


@pytest.mark.parametrize(("granularity", "dbapi_spans"), [
    ("job", False), ("statement", False), ("job", True),
])
def test_sampled_out_statements_give_the_same_lineage_without_being_recorded(
    tmp_path: Path, granularity: str, dbapi_spans: bool
) -> None:
    check_same_lineage_sampled_or_not(f"sqlite:///{tmp_path / 'billing.db'}", tmp_path,
                                      granularity, dbapi_spans)


def test_sampled_out_statements_give_the_same_lineage_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    schema = f"sampling_{os.getpid()}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    try:
        check_same_lineage_sampled_or_not(
            postgres_url, tmp_path, "job", connect_args={"options": f"-csearch_path={schema}"})
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


class _RecordOnly(Sampler):
    """A user's own sampler that records without sampling: its decision must stand."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def test_without_lineage_sampler_statement_spans_are_recorded_as_before(tmp_path: Path) -> None:
    LineageSampler(ALWAYS_OFF)  # one exists in the process: the light path is switched on
    recorded = RecordedSpans()
    lineage = OpenLineageSpanExporter(sink=JsonLinesSink(tmp_path / "events.jsonl"))
    provider = TracerProvider(sampler=_RecordOnly(), id_generator=SeededIds(9))
    provider.add_span_processor(recorded)
    provider.add_span_processor(UnsampledSpanProcessor(lineage))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}")
        run_jobs(engine, provider.get_tracer("billing"), 3)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
        lineage.shutdown()  # no BatchSpanProcessor owns it here
    assert recorded.names.count("settle_orders") == 3
    assert len([n for n in recorded.names if n.startswith("INSERT")]) == 6
    runs = {e["run"]["runId"] for e in read_events(tmp_path / "events.jsonl")
            if e["job"]["name"].endswith(".settle_orders")}
    assert len(runs) == 3


def test_concurrent_asyncio_jobs_keep_their_statements_apart(tmp_path: Path) -> None:
    """The statement mark lives in the asyncio task's context (SQLAlchemy's greenlets
    share it), so jobs of sampled and sampled-out traces interleaving on one event loop
    neither lose statements nor take each other's."""
    import asyncio

    from sqlalchemy.ext import asyncio as sa_asyncio

    half = TraceIdRatioBased(0.5)
    traces = InMemorySpanExporter()
    recorded = RecordedSpans()
    events_file = tmp_path / "events.jsonl"
    lineage = OpenLineageSpanExporter(sink=JsonLinesSink(events_file))
    provider = TracerProvider(sampler=LineageSampler(ParentBased(half)),
                              id_generator=SeededIds(9),
                              resource=Resource.create({"service.name": "billing"}))
    provider.add_span_processor(recorded)
    provider.add_span_processor(SimpleSpanProcessor(traces))
    provider.add_span_processor(BatchSpanProcessor(lineage))
    provider.add_span_processor(UnsampledSpanProcessor(lineage))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    tracer = provider.get_tracer("billing")
    jobs: dict[int, int] = {}  # job number -> trace id

    async def one_job(engine: sa_asyncio.AsyncEngine, number: int) -> None:
        with tracer.start_as_current_span("settle_orders") as span:
            jobs[number] = span.get_span_context().trace_id
            async with engine.begin() as conn:
                await conn.execute(sa.insert(ORDERS), [{"job": number}, {"job": number}])
                await asyncio.sleep(0)
                n = (await conn.execute(sa.select(sa.func.count()).select_from(ORDERS)
                                        .where(ORDERS.c.job == number))).scalar_one()
                await asyncio.sleep(0)
                await conn.execute(sa.insert(TOTALS).values(job=number, n=n))

    async def workload() -> None:
        engine = sa_asyncio.create_async_engine(
            f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}", connect_args={"timeout": 30})
        async with engine.begin() as conn:
            await conn.run_sync(METADATA.create_all)
        await asyncio.gather(*(one_job(engine, n) for n in range(24)))
        await engine.dispose()

    try:
        asyncio.run(workload())
    finally:
        instrumentor.uninstrument()
        provider.shutdown()

    sampled = {t for t in jobs.values() if half.should_sample(None, t, "x").decision.is_sampled()}
    assert 0 < len(sampled) < len(jobs)
    exported = {s.context.trace_id for s in traces.get_finished_spans() if s.context}
    assert exported & set(jobs.values()) == sampled
    # sampled traces: 3 statements each, recorded and exported; the others' not recorded
    assert recorded.statements_in_spans == 3 * len(sampled)
    completes = {e["run"]["facets"]["opentelemetry"]["traceId"]: e
                 for e in read_events(events_file)
                 if e["eventType"] == "COMPLETE" and e["job"]["name"] == "billing.settle_orders"}
    assert set(completes) == {f"{t:032x}" for t in jobs.values()}
    for complete in completes.values():
        assert [d["name"] for d in complete["inputs"]] == ["orders"]
        assert [d["name"] for d in complete["outputs"]] == ["order_totals", "orders"]

