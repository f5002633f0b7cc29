"""What complete lineage under sampling costs: an app at 1% head sampling, with and
without LineageSampler, measured side by side in one process.

The app: jobs, each an enclosing span running --per-job SQLAlchemy Core statements
(insert, select, update, ...) on SQLite in memory, or on ``--url`` (e.g. the project's
PostgreSQL), upstream's instrumentation + ours. Every
variant has the span processors a user would run: ``BatchSpanProcessor`` for the trace
exporter (an OTLP encoder: it encodes each batch exactly as the OTLP exporter does and sends
nothing, so no network noise) and ``BatchSpanProcessor`` for OpenLineageSpanExporter
(JSON lines to a temporary file). Variants, interleaved round by round (order rotates):

  n  no tracing: the statements alone (for reference)
  p  plain 1%: ParentBased(TraceIdRatioBased(0.01)); sampled-out spans are not recorded
  w  wrapped 1%: LineageSampler(the same) + UnsampledSpanProcessor(lineage exporter)
  s  all sampled: ALWAYS_ON, otherwise as p

Every variant uses the same seeded trace ids, so p and w sample the same traces. Cost per
statement = process CPU time (all threads: the app and the processors' workers), from the
first job to the end of ``force_flush`` of both exporters, divided by the statements run (wall
time would hide the processors' work on the second core, and waits on flushes add noise to
it). Definitions, as in the README:

  O = w - p   recording overhead of a sampled-out statement
  S = s       cost of a sampled statement (the statement, traced and exported)
  C = s - p   what tracing adds to a statement whose trace is sampled
  target      O / S <= 0.25   (the issue's "of the cost of a sampled one"); O / C is
              printed too: it shows how much of tracing's own cost is recording

Each measurement checks its output: lineage has a run for every job in w and s, and only
for the sampled ones in p; the trace exporter got only sampled traces in p and w.

    python benchmarks/bench_sampling.py            # full run
    python benchmarks/bench_sampling.py --quick    # smoke test (a few seconds)
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _common import exit_with, median
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased

from otel_sqla_lineage import (
    LineageSampler,
    OpenLineageSpanExporter,
    SQLAlchemyLineageInstrumentor,
    UnsampledSpanProcessor,
)
from otel_sqla_lineage.delivery import JsonLinesSink

TARGET = 0.25
RATIO = 0.01
SEED = 20261121
WARMUP_JOBS = 20
VARIANTS = ("n", "p", "w", "s")
LABELS = {"n": "no tracing", "p": "plain 1%", "w": "wrapped 1%", "s": "all sampled"}

METADATA = sa.MetaData()
ORDERS = sa.Table(
    "bench_orders", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job", sa.Integer, nullable=False),
    sa.Column("amount", sa.Integer, nullable=False),
)
TOTALS = sa.Table(
    "bench_order_totals", METADATA,
    sa.Column("job", sa.Integer, primary_key=True),
    sa.Column("total", sa.Integer, nullable=False),
)


class SeededIds(IdGenerator):
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


class OtlpEncoder(SpanExporter):
    """The CPU half of the OTLP exporter: encode the batch to protobuf bytes, send nothing."""

    def __init__(self) -> None:
        self.trace_ids: set[int] = set()
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        self.trace_ids.update(s.context.trace_id for s in spans if s.context is not None)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def sampler_for(variant: str) -> Sampler:
    ratio = ParentBased(TraceIdRatioBased(RATIO))
    return {"p": ratio, "w": LineageSampler(ratio), "s": ALWAYS_ON}[variant]


def job(conn: sa.Connection, number: int, statements: int) -> None:
    """``statements`` statements: an insert, then selects and updates in turn."""
    conn.execute(sa.insert(ORDERS).values(job=number, amount=number % 97))
    for k in range(1, statements):
        if k % 2:
            conn.execute(sa.select(sa.func.sum(ORDERS.c.amount)).where(ORDERS.c.job == number))
        else:
            conn.execute(sa.update(ORDERS).where(ORDERS.c.job == number)
                         .values(amount=ORDERS.c.amount + 1))


class Measurement:
    def __init__(self, variant: str, workdir: Path, url: str) -> None:
        self.variant = variant
        self.url = url
        self.events_file = workdir / f"events-{variant}-{time.monotonic_ns()}.jsonl"
        self.traces = OtlpEncoder()
        self.lineage: OpenLineageSpanExporter | None = None
        self.provider: TracerProvider | None = None
        self._instrumentors: list[Any] = []
        if variant == "n":
            return
        self.provider = TracerProvider(
            sampler=sampler_for(variant), id_generator=SeededIds(SEED),
            resource=Resource.create({"service.name": "bench"}),
        )
        self.lineage = OpenLineageSpanExporter(sink=JsonLinesSink(self.events_file))
        self.provider.add_span_processor(BatchSpanProcessor(self.traces))
        self.provider.add_span_processor(BatchSpanProcessor(self.lineage))
        if variant == "w":
            self.provider.add_span_processor(UnsampledSpanProcessor(self.lineage))
        upstream, ours = SQLAlchemyInstrumentor(), SQLAlchemyLineageInstrumentor()
        upstream.instrument(tracer_provider=self.provider, skip_dep_check=True)
        ours.instrument(tracer_provider=self.provider)
        self._instrumentors = [ours, upstream]

    def flush(self) -> None:
        if self.provider is not None and self.lineage is not None:
            self.provider.force_flush()
            self.lineage.force_flush()

    def close(self) -> None:
        for instrumentor in self._instrumentors:
            instrumentor.uninstrument()
        if self.provider is not None:
            self.provider.shutdown()

    def run(self, jobs: int, per_job: int) -> float:
        """CPU seconds per statement."""
        engine = sa.create_engine(self.url)
        METADATA.drop_all(engine)
        METADATA.create_all(engine)
        tracer = self.provider.get_tracer("bench") if self.provider is not None else None

        def one(number: int) -> None:
            with engine.begin() as conn:
                job(conn, number, per_job)

        run_job: Callable[[int], None] = one
        if tracer is not None:
            def traced(number: int) -> None:
                with tracer.start_as_current_span("settle_orders"):
                    one(number)
            run_job = traced
        try:
            for number in range(WARMUP_JOBS):
                run_job(-1 - number)
            self.flush()
            self.traces.trace_ids.clear()
            self._warm_runs = self._runs()
            gc.collect()
            cpu0 = time.process_time()
            for number in range(jobs):
                run_job(number)
            self.flush()
            cpu = time.process_time() - cpu0
        finally:
            engine.dispose()
        return cpu / (jobs * per_job)

    def _runs(self) -> set[str]:
        if not self.events_file.exists():
            return set()
        return {e["run"]["runId"] for e in map(json.loads, self.events_file.read_text()
                                                .splitlines())
                if e["eventType"] == "COMPLETE" and e["job"]["name"] == "bench.settle_orders"}

    def check(self, jobs: int) -> tuple[int, int]:
        """(runs in lineage, traces exported) for the timed jobs; raises when wrong."""
        if self.variant == "n":
            return 0, 0
        runs = len(self._runs() - self._warm_runs)
        traced = len(self.traces.trace_ids)
        where = f"variant {self.variant}"
        if self.variant in ("w", "s"):
            assert runs == jobs, f"{where}: {runs} runs in lineage for {jobs} jobs"
        else:
            assert runs == traced, f"{where}: {runs} runs for {traced} sampled traces"
        if self.variant == "s":
            assert traced == jobs, f"{where}: {traced} traces exported for {jobs} jobs"
        else:
            assert traced < jobs * 0.05, f"{where}: {traced} of {jobs} traces exported at 1%"
        return runs, traced


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Cost of recording sampled-out spans for lineage: O/C (target <= 0.25).")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (9)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per measurement (1000)")
    parser.add_argument("--per-job", type=int, default=5, help="statements per job (5)")
    parser.add_argument("--url", default="sqlite://",
                        help="database URL (default: SQLite in memory)")
    parser.add_argument("--quick", action="store_true",
                        help="short run for a smoke test (2 rounds x 200 jobs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.jobs = 2, 200

    database = sa.engine.make_url(args.url).render_as_string(hide_password=True)
    print(f"SQLAlchemy {sa.__version__}, Python {sys.version.split()[0]}, {database}; "
          f"{args.rounds} rounds x {args.jobs} jobs x {args.per_job} statements per variant, "
          f"sampling ratio {RATIO}", flush=True)
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    checks: dict[str, tuple[int, int]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)]
            for variant in order:
                measurement = Measurement(variant, Path(tmp), args.url)
                try:
                    cpu[variant].append(measurement.run(args.jobs, args.per_job))
                    checks[variant] = measurement.check(args.jobs)
                finally:
                    measurement.close()
            print(f"  round {r + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)

    print(f"checked: lineage runs / traces exported per {args.jobs} jobs: "
          + ", ".join(f"{v} {checks[v][0]}/{checks[v][1]}" for v in VARIANTS if v != "n"))
    med = {v: median(cpu[v]) * 1e6 for v in VARIANTS}
    print()
    print("median CPU µs per statement (all threads, export included)")
    for v in VARIANTS:
        print(f"  {v}  {LABELS[v]:<12} {med[v]:8.1f}")
    overhead = med["w"] - med["p"]
    sampled = med["s"]
    tracing = med["s"] - med["p"]
    paired = median([(w - p) / s for p, w, s in zip(cpu["p"], cpu["w"], cpu["s"], strict=True)])
    ratio = overhead / sampled
    print()
    print(f"O = w - p  recording overhead of a sampled-out statement: {overhead:6.1f} µs CPU")
    print(f"S = s      cost of a sampled statement:                  {sampled:6.1f} µs CPU")
    print(f"C = s - p  what tracing adds to a sampled statement:     {tracing:6.1f} µs CPU")
    print(f"O/S = {ratio:.3f} (median of paired round ratios {paired:.3f}); O/C = "
          f"{overhead / tracing:.3f}; w/p = {med['w'] / med['p']:.3f}")
    print(f"target O/S <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'}")
    return 0


if __name__ == "__main__":
    exit_with(main)  # a variant did not produce the output it should: one line, exit 1
