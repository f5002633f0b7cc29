"""An instrumented application's request latency and throughput while its lineage backend
is unreachable, hanging or failing, next to the healthy case, in one run.

The application (one child process per measurement, so nothing carries over): SQLAlchemy
on a SQLite file, instrumented (``SQLAlchemyLineageInstrumentor``), the SDK's
``BatchSpanProcessor`` feeding ``OpenLineageSpanExporter`` configured as a user would
(``OPENLINEAGE_URL``, ``OTEL_SQLA_LINEAGE_SPOOL_DIR``). A request is an application span
around three statements (SELECT by key, INSERT, SELECT count). Each child warms up, then
times ``--requests`` requests one after another.

Backends (fault-injection fakes from ``tests/fakes.py``, in this driver process):

  healthy   answers 200 to every POST
  refused   nothing listens on the port (connection refused)
  hanging   accepts the connection and never answers (the transport's timeout applies)
  http503   answers 503

Variants run interleaved, their order rotating every round; reported are per-variant
medians across rounds of the per-request median and p99 latency and of the throughput,
and fault/healthy ratios (target: latency ratio <= 1.05, throughput ratio >= 0.95), and
how many exceptions reached the application (must be 0).

    python benchmarks/bench_host_safety.py            # full run
    python benchmarks/bench_host_safety.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _common import json_from_child

TESTS = Path(__file__).resolve().parent.parent / "tests"
VARIANTS = ("healthy", "refused", "hanging", "http503")
TARGET = 1.05


def child(requests: int, warmup: int) -> None:
    import sqlalchemy as sa
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_sqla_lineage import SQLAlchemyLineageInstrumentor
    from otel_sqla_lineage.exporter import OpenLineageSpanExporter

    exporter = OpenLineageSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-app"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    SQLAlchemyLineageInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("app")
    # in memory: a file database's fsync per commit would drown what we measure
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool,
                              connect_args={"check_same_thread": False})
    meta = sa.MetaData()
    books = sa.Table("books", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("title", sa.String(50)))
    loans = sa.Table("loans", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("book_id", sa.Integer))
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(books.insert(), [{"id": i, "title": f"t{i}"} for i in range(1, 101)])
    exceptions = 0

    def handle(i: int) -> None:
        with tracer.start_as_current_span("GET /books/{id}"), engine.begin() as conn:
            conn.execute(sa.select(books).where(books.c.id == i % 100 + 1)).first()
            conn.execute(loans.insert().values(book_id=i % 100 + 1))
            conn.execute(sa.select(sa.func.count()).select_from(loans)).scalar()

    for i in range(warmup):
        handle(i)
    times = []
    started = time.perf_counter()
    for i in range(requests):
        t0 = time.perf_counter()
        try:
            handle(i)
        except Exception:  # would be a bug: counted, reported, fails the benchmark
            exceptions += 1
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    times.sort()
    print(json.dumps({
        "median_us": statistics.median(times) * 1e6,
        "p99_us": times[int(len(times) * 0.99)] * 1e6,
        "rps": requests / total,
        "exceptions": exceptions,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stats": exporter.stats,
    }), flush=True)
    os._exit(0)  # a faulty backend would make shutdown wait out the transport's retries


def run_child(url: str, requests: int, warmup: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as spool:
        return json_from_child([__file__, "--child", str(requests), "--warmup", str(warmup)],
                               600, OPENLINEAGE_URL=url, OTEL_SQLA_LINEAGE_SPOOL_DIR=spool)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 200 requests")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child, args.warmup)
        return 0
    if args.quick:
        args.rounds, args.requests, args.warmup = 1, 200, 50
    sys.path.insert(0, str(TESTS))
    from fakes import SwitchableBackend, fake_lineage_backend_returning
    from procs.otlp_tools import free_port

    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    with ExitStack() as stack:
        healthy, _ = stack.enter_context(fake_lineage_backend_returning(200))
        failing, _ = stack.enter_context(fake_lineage_backend_returning(503))
        hanging = SwitchableBackend()
        hanging.hang = True
        stack.callback(hanging.close)
        urls = {"healthy": healthy, "refused": f"http://127.0.0.1:{free_port()}",
                "hanging": hanging.url, "http503": failing}
        for r in range(args.rounds):
            order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
            for variant in order:
                results[variant].append(run_child(urls[variant], args.requests, args.warmup))
            print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr)

    def med(variant: str, key: str) -> float:
        return statistics.median(float(x[key]) for x in results[variant])

    print(f"{args.rounds} round(s) x {args.requests} requests (3 statements each) per "
          "variant; medians across rounds")
    print(f"{'backend':<9} {'median µs':>10} {'p99 µs':>9} {'req/s':>8} {'lat/healthy':>12} "
          f"{'tput/healthy':>13} {'peak RSS MiB':>13} {'exceptions':>11}")
    verdicts = []
    for variant in VARIANTS:
        lat = med(variant, "median_us") / med("healthy", "median_us")
        tput = med(variant, "rps") / med("healthy", "rps")
        exceptions = sum(x["exceptions"] for x in results[variant])
        print(f"{variant:<9} {med(variant, 'median_us'):>10.0f} {med(variant, 'p99_us'):>9.0f} "
              f"{med(variant, 'rps'):>8.0f} {lat:>12.3f} {tput:>13.3f} "
              f"{med(variant, 'maxrss_mib'):>13.1f} {exceptions:>11}")
        if variant != "healthy":
            verdicts.append(lat <= TARGET and tput >= 2 - TARGET and exceptions == 0)
    print(f"target: latency ratio <= {TARGET}, throughput ratio >= {2 - TARGET:.2f}, no "
          f"exception: {'met' if all(verdicts) else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
