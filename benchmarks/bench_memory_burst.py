"""Peak memory of an instrumented process under a burst of spans while its lineage
backend is unreachable: bounded by the settings (delivery queue, held-span buffer, spool
on disk), not by the number of spans.

Each measurement is a fresh child process (peak RSS, ``ru_maxrss``, is per process) that
pushes ``--spans`` real SDK spans through ``OpenLineageSpanExporter`` (a
``SimpleSpanProcessor``, so nothing is dropped before our exporter): jobs of one
statement each, plus one statement in twenty whose enclosing span never ends. The
backend URL is a loopback port nothing listens on; the spool is on
(``OTEL_SQLA_LINEAGE_SPOOL_DIR``, its default 256 MiB bound). Printed: peak RSS per burst
size and the ratio largest/smallest (bounded: close to 1).

    python benchmarks/bench_memory_burst.py                  # 100k and 1M spans
    python benchmarks/bench_memory_burst.py --quick          # 20k and 100k
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

from _common import free_port, json_from_child


def child(spans: int) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel_sqla_lineage.exporter import OpenLineageSpanExporter

    exporter = OpenLineageSpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("burst")
    statement = {"db.system": "sqlite", "db.statement": "SELECT * FROM books",
                 "db.sqlalchemy.tables.read": ("books",)}
    started = time.perf_counter()
    made = 0
    never_ending = []
    while made < spans:
        if made % 20 == 0:  # a statement whose enclosing span never ends: held
            parent = tracer.start_span("never_ends")
            with tracer.start_as_current_span(
                    "SELECT", context=trace.set_span_in_context(parent),
                    attributes=statement):
                pass
            never_ending.append(parent.get_span_context().span_id)  # ids only
            made += 1
            continue
        with tracer.start_as_current_span(f"job{made % 100}"), \
                tracer.start_as_current_span("SELECT", attributes=statement):
            pass
        made += 2
    seconds = time.perf_counter() - started
    stats = exporter.stats
    exporter.force_flush(5_000)
    print(json.dumps({
        "spans": made, "seconds": seconds,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stats": stats}))
    os._exit(0)  # the backend stays down: do not wait out shutdown's retries


def measure(spans: int, spool_dir: str) -> dict[str, object]:
    return json_from_child([__file__, "--child", str(spans)], 3600,
                           OPENLINEAGE_URL=f"http://127.0.0.1:{free_port()}",
                           OTEL_SQLA_LINEAGE_SPOOL_DIR=spool_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k and 100k spans")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child)
        return 0
    sizes = args.sizes or ([20_000, 100_000] if args.quick else [100_000, 1_000_000])
    results = []
    for size in sizes:
        with tempfile.TemporaryDirectory() as spool:
            results.append(measure(size, spool))
    print("burst of spans, lineage backend unreachable, spool on (256 MiB)")
    print(f"{'spans':>9} {'seconds':>8} {'peak RSS MiB':>13} {'spooled':>8} {'dropped':>8} "
          f"{'held':>6} {'evicted':>8}")
    for r in results:
        s = r["stats"]
        assert isinstance(s, dict)
        print(f"{r['spans']:>9} {r['seconds']:>8.1f} {r['maxrss_mib']:>13.1f} "
              f"{s.get('spool_pending', 0):>8} {s['dropped']:>8} {s['held']:>6} "
              f"{s['evicted']:>8}")
    first, last = results[0], results[-1]
    ratio = float(str(last["maxrss_mib"])) / float(str(first["maxrss_mib"]))
    print(f"peak RSS {last['spans']} spans / {first['spans']} spans: {ratio:.2f} "
          f"(x{int(str(last['spans'])) // int(str(first['spans']))} the spans)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
