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
from olspec import validate_event
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace.span import TraceState
from procs.sampled_jobs import run_jobs

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
    provider.add_span_processor(BatchSpanProcessor(lineage))
    provider.add_span_processor(UnsampledSpanProcessor(lineage))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}")
        jobs = run_jobs(engine, provider.get_tracer("billing"), JOBS)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()  # the lineage exporter emits what it holds and delivers it

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
    provider.add_span_processor(BatchSpanProcessor(lineage))
    provider.add_span_processor(UnsampledSpanProcessor(lineage))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'billing.db'}")
        jobs = run_jobs(engine, provider.get_tracer("billing"), JOBS)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
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


def console_spans(stdout: str) -> list[dict[str, Any]]:
    """The JSON objects the SDK's ConsoleSpanExporter printed, one per span."""
    decoder = json.JSONDecoder()
    spans, index = [], 0
    while True:
        index = stdout.find("{", index)
        if index < 0:
            return spans
        span, index = decoder.raw_decode(stdout, index)
        spans.append(span)


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
