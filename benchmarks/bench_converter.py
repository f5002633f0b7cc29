"""Converter + serializer throughput: synthetic statement spans in, JSON events out.

``--spans`` (100,000) statement spans, shaped like the ones upstream's instrumentation and
ours produce (semantic-convention and ``db.sqlalchemy.*`` attributes, PostgreSQL and SQLite
engines, ORM / Core / text() statements, DML row counts, an occasional
``db.sqlalchemy.schema`` announcement, INSERT ... SELECT column lineage, rare failures),
grouped under enclosing application spans (``--per-span`` statements each, ending after
their statements as in a real trace; some with a remote parent). They are SDK
``ReadableSpan``s with ``BoundedAttributes``, as the SDK hands them to a span exporter.

Each pass does what ``OpenLineageSpanExporter.export`` does per span: ``from_readable_span``
then ``RunAssembler(Converter(LineageSettings(granularity=...))).add``, and serializes every
event with ``otel_sqla_lineage.events.to_json`` (``--input view``: SpanViews built
beforehand, as collector_exporter would hand them over). Single-threaded, pinned to one
CPU; passes alternate between granularities ``statement`` and ``job``; the table shows
medians over ``--repeats`` passes and the share of the time spent in ``to_json``.

Then, on fresh events of both granularities (``--compare``), openlineage-python's own path
(``events.to_openlineage_event`` + ``openlineage.client.serde.Serde.to_json``) against ours,
per event, with a byte-equality check of the two outputs.

Target: >= 20,000 statement spans/s at granularity ``statement``.

    python benchmarks/bench_converter.py            # full run
    python benchmarks/bench_converter.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import threading
import time
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_sqla_lineage import events as ev
from otel_sqla_lineage.assemble import RunAssembler
from otel_sqla_lineage.convert import Converter
from otel_sqla_lineage.runid import run_id_for
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spans import SpanView, from_readable_span

TARGET = 20_000
GRANULARITIES = ("statement", "job")

RESOURCE = Resource({
    "telemetry.sdk.language": "python",
    "telemetry.sdk.name": "opentelemetry",
    "telemetry.sdk.version": "1.45.1",
    "service.instance.id": "6b16566d-6598-4cb5-8b5e-c4ee468a14fa",
    "service.name": "library",
})
SCOPE = InstrumentationScope("opentelemetry.instrumentation.sqlalchemy", "0.66b1")

# What upstream (db.system, db.name, db.user, net.peer.*) and ours (the exact dataset
# namespace, a default schema other than the dialect's usual one) put on every statement
# span of an engine; with the share of statements each engine runs.
ENGINES: list[tuple[float, dict[str, Any]]] = [
    (0.6, {  # PostgreSQL: upstream reads host/port/database/user from the URL
        "db.system": "postgresql",
        "db.name": "library",
        "db.user": "app",
        "net.peer.name": "db.internal",
        "net.peer.port": 5432,
        "openlineage.dataset.namespace": "postgres://db.internal:5432",
    }),
    (0.1, {  # PostgreSQL with search_path = reporting
        "db.system": "postgresql",
        "db.name": "warehouse",
        "db.user": "etl",
        "net.peer.name": "dwh.internal",
        "net.peer.port": 5433,
        "openlineage.dataset.namespace": "postgres://dwh.internal:5433",
        "db.sqlalchemy.default_schema": "reporting",
    }),
    (0.3, {  # SQLite file: no network attributes
        "db.system": "sqlite",
        "db.name": "/srv/library/library.db",
        "openlineage.dataset.namespace": "sqlite://app-host/srv/library/library.db",
    }),
]


# table -> (mapped class or None, columns)
TABLES: dict[str, tuple[str | None, list[tuple[str, str]]]] = {}
for _i, _name in enumerate([
    "users", "groups", "user_groups", "books", "book_history", "posts", "media", "ebooks",
    "members", "book_archive", "authors", "publishers", "loans", "reservations", "fines",
    "branches", "events", "reviews", "tags", "book_tags", "inventory.stock_items",
    "inventory.restocks", "audit_log", "sessions", "notifications",
]):
    _cls = None if _name in ("user_groups", "book_tags", "book_archive", "inventory.restocks",
                             "audit_log") else _name.split(".")[-1].title().replace("_", "")
    _cols = [("id", "INTEGER")] + [
        (f"col_{j}", ("VARCHAR(200)", "INTEGER", "DATE", "NUMERIC(10, 2)", "BOOLEAN")[j % 5])
        for j in range(4 + _i % 9)
    ]
    TABLES[_name] = (f"library.models.{_cls}" if _cls else None, _cols)
TABLE_NAMES = list(TABLES)

SPAN_NAMES = ["GET /books/{id}", "POST /loans", "checkout_book", "return_book",
              "nightly_report", "GET /users/{id}/history", "book_inventory", "send_reminders"]


def _select_sql(tables: list[str]) -> str:
    first = tables[0]
    cols = ", ".join(f"{first}.{c} AS {first}_{c}" for c, _ in TABLES[first][1])
    sql = f"SELECT {cols} \nFROM {first}"
    for other in tables[1:]:
        sql += f" JOIN {other} ON {first}.id = {other}.{first.split('.')[-1]}_id"
    return sql + f" \nWHERE {first}.id = %(pk_1)s"


def _statement(rng: random.Random) -> dict[str, Any]:
    """Attributes ours adds (db.sqlalchemy.*, db.operation.name, ...) plus upstream's
    db.statement / db.operation; engine attributes are added by the caller."""
    roll = rng.random()
    t = rng.sample(TABLE_NAMES, 3)
    out: dict[str, Any] = {}
    if roll < 0.45:  # ORM select, sometimes with a joined eager load
        tables = t[:1] if rng.random() < 0.7 else t[:2]
        op, read, written, source = "SELECT", tables, [], "orm"
        sql = _select_sql(tables)
    elif roll < 0.60:  # Core select
        tables = t[:1]
        op, read, written, source = "SELECT", tables, [], "core"
        sql = _select_sql(tables) + " LIMIT %(param_1)s"
    elif roll < 0.80:  # ORM flush INSERT
        op, read, written, source = "INSERT", [], t[:1], "orm"
        cols = TABLES[t[0]][1][1:]
        sql = (f"INSERT INTO {t[0]} ({', '.join(c for c, _ in cols)}) VALUES "
               f"({', '.join(f'%({c})s' for c, _ in cols)}) RETURNING {t[0]}.id")
        out["db.sqlalchemy.rowcount"] = 1
    elif roll < 0.90:  # ORM flush UPDATE
        op, read, written, source = "UPDATE", [], t[:1], "orm"
        sql = f"UPDATE {t[0]} SET col_0=%(col_0)s WHERE {t[0]}.id = %({t[0]}_id)s"
        out["db.sqlalchemy.rowcount"] = 1
    elif roll < 0.94:  # Core DELETE
        op, read, written, source = "DELETE", [], t[:1], "core"
        sql = f"DELETE FROM {t[0]} WHERE {t[0]}.col_1 < %(col_1_1)s"
        out["db.sqlalchemy.rowcount"] = rng.randint(0, 40)
    elif roll < 0.97:  # INSERT ... SELECT, with column lineage
        op, read, written, source = "INSERT", t[1:2], t[:1], "core"
        sql = (f"INSERT INTO {t[0]} (id, col_0) SELECT {t[1]}.id, {t[1]}.col_0 FROM {t[1]} "
               f"WHERE {t[1]}.col_1 IS NOT NULL")
        out["db.sqlalchemy.rowcount"] = rng.randint(0, 500)
        out["db.sqlalchemy.column_lineage"] = json.dumps(
            {t[0]: {"col_0": [[t[1], "col_0"]], "id": [[t[1], "id"]]}},
            separators=(",", ":"), sort_keys=True)
    else:  # text()
        op, read, written, source = "SELECT", t[:1], [], "sql"
        sql = f"SELECT count(*) FROM {t[0]} WHERE col_1 > %(since)s"
    out.update({
        "db.statement": sql,
        "db.operation": op,
        "db.sqlalchemy.source": source,
        "db.operation.name": op,
    })
    touched = sorted(set(read) | set(written))
    if len(touched) == 1:
        out["db.collection.name"] = touched[0]
    mappers = sorted({m for m in (TABLES[x][0] for x in touched) if m}) if source != "sql" else []
    if mappers:
        out["db.sqlalchemy.mappers"] = tuple(mappers)
    if read:
        out["db.sqlalchemy.tables.read"] = tuple(sorted(read))
    if written:
        out["db.sqlalchemy.tables.written"] = tuple(sorted(written))
    return out


def _attributes(d: dict[str, Any]) -> BoundedAttributes:
    # what the SDK hands the exporter: the span's own (immutable once ended) attributes
    return BoundedAttributes(attributes=d, immutable=True)


def _context(trace_id: int, span_id: int, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))


def build_spans(n: int, per_span: int, seed: int = 7) -> list[ReadableSpan]:
    """``n`` statement spans plus their enclosing spans, in the order they end, as the
    SDK gives them to a span exporter."""
    rng = random.Random(seed)
    spans: list[ReadableSpan] = []
    announced: dict[tuple[int, str], int] = {}
    now = 1_700_000_000_000_000_000
    made = 0
    while made < n:
        trace_id = rng.getrandbits(128)
        enclosing = _context(trace_id, rng.getrandbits(64))
        remote_parent = (_context(trace_id, rng.getrandbits(64), remote=True)
                         if rng.random() < 0.1 else None)
        roll, engine_index = rng.random(), 0
        while engine_index < len(ENGINES) - 1 and roll >= ENGINES[engine_index][0]:
            roll -= ENGINES[engine_index][0]
            engine_index += 1
        start = now
        failed_run = False
        for _ in range(min(per_span, n - made)):
            a = dict(ENGINES[engine_index][1])
            a.update(_statement(rng))
            a["openlineage.run.id"] = run_id_for(trace_id, enclosing.span_id)
            touched = sorted(set(a.get("db.sqlalchemy.tables.read", ()))
                             | set(a.get("db.sqlalchemy.tables.written", ())))
            # the schema rides on the first statement touching a table, and every "5 min"
            due = {t: TABLES[t][1] for t in touched
                   if made - announced.get((engine_index, t), -10**9) > 20_000}
            if due and a["db.sqlalchemy.source"] != "sql":
                for t in due:
                    announced[engine_index, t] = made
                a["db.sqlalchemy.schema"] = json.dumps(
                    {t: [list(c) for c in cols] for t, cols in due.items()},
                    separators=(",", ":"), sort_keys=True)
            status, events = Status(StatusCode.UNSET), ()
            if rng.random() < 0.005:
                failed_run = True
                message = ("IntegrityError: (psycopg.errors.UniqueViolation) duplicate key "
                           "value violates unique constraint\nDETAIL:  Key (id)=(42) already "
                           "exists.\n[SQL: INSERT ...]\n[parameters: {'id': 42}]")
                status = Status(StatusCode.ERROR, message)
                events = (Event("exception", _attributes({
                    "exception.type": "sqlalchemy.exc.IntegrityError",
                    "exception.message": message,
                    "exception.stacktrace": "Traceback (most recent call last):\n  ...\n"
                                            + message,
                    "exception.escaped": "False",
                }), now + 50_000),)
            spans.append(ReadableSpan(
                name=str(a["db.operation"]), context=_context(trace_id, rng.getrandbits(64)),
                parent=enclosing, resource=RESOURCE, attributes=_attributes(a),
                events=events, kind=SpanKind.CLIENT, status=status,
                start_time=now + 10_000, end_time=now + 250_000, instrumentation_scope=SCOPE,
            ))
            now += 300_000
            made += 1
        spans.append(ReadableSpan(
            name=rng.choice(SPAN_NAMES), context=enclosing, parent=remote_parent,
            resource=RESOURCE,
            attributes=_attributes({"openlineage.run.id": run_id_for(trace_id,
                                                                     enclosing.span_id),
                                    "code.function": "handler", "http.route": "/books/{id}"}),
            kind=SpanKind.SERVER if remote_parent is not None else SpanKind.INTERNAL,
            status=Status(StatusCode.ERROR, "failed") if failed_run and rng.random() < 0.5
            else Status(StatusCode.UNSET),
            start_time=start, end_time=now + 20_000, instrumentation_scope=SCOPE,
        ))
        now += 1_000_000
    return spans


def run_pass(spans: list[Any], granularity: str) -> tuple[float, float, int, int]:
    """One full pass: (seconds, of which in to_json, events, bytes). ReadableSpans go
    through ``from_readable_span`` first, as in ``OpenLineageSpanExporter.export``."""
    assembler = RunAssembler(Converter(LineageSettings(granularity=granularity)))
    add, to_json, clock = assembler.add, ev.to_json, time.perf_counter
    view = from_readable_span if spans and isinstance(spans[0], ReadableSpan) else _same
    n_events = n_bytes = 0
    in_json = 0.0
    t0 = clock()
    for span in spans:
        for event in add(view(span)):
            t1 = clock()
            n_bytes += len(to_json(event))
            in_json += clock() - t1
            n_events += 1
    for event in assembler.drain():
        t1 = clock()
        n_bytes += len(to_json(event))
        in_json += clock() - t1
        n_events += 1
    return clock() - t0, in_json, n_events, n_bytes


def run_locked_pass(spans: list[Any], granularity: str, per_span: bool,
                    batch: int = 512) -> float:
    """Seconds for one pass as ``LineagePipeline.add`` does it for the SDK's
    BatchSpanProcessor (batches of 512): the pipeline lock around ``RunAssembler.add``
    taken once per span (``per_span``, so the app's thread gets in between) or once per
    batch (the earlier way, the baseline)."""
    assembler = RunAssembler(Converter(LineageSettings(granularity=granularity)))
    add, to_json, clock = assembler.add, ev.to_json, time.perf_counter
    view = from_readable_span if spans and isinstance(spans[0], ReadableSpan) else _same
    lock = threading.Lock()
    t0 = clock()
    for start in range(0, len(spans), batch):
        views = [view(span) for span in spans[start:start + batch]]  # exporter.export
        events: list[Any] = []
        if per_span:
            for one in views:
                with lock:
                    events.extend(add(one))
        else:
            with lock:
                for one in views:
                    events.extend(add(one))
        for event in events:
            to_json(event)
    return clock() - t0


def _same(span: SpanView) -> SpanView:
    return span


def first_events(spans: list[Any], granularity: str, limit: int) -> list[Any]:
    """The first ``limit`` events of a fresh pass, not serialized yet."""
    assembler = RunAssembler(Converter(LineageSettings(granularity=granularity)))
    out: list[Any] = []
    for span in spans:
        out.extend(assembler.add(span if isinstance(span, SpanView)
                                 else from_readable_span(span)))
        if len(out) >= limit:
            break
    return out[:limit]


def compare(sample: list[Any]) -> tuple[float, float, float, int]:
    """Per event: (ours to_json, openlineage load, Serde.to_json) seconds, and mismatches."""
    from openlineage.client.serde import Serde

    t0 = time.perf_counter()
    ours = [ev.to_json(e) for e in sample]
    t1 = time.perf_counter()
    loaded = [ev.to_openlineage_event(e) for e in sample]
    t2 = time.perf_counter()
    theirs = [Serde.to_json(o) for o in loaded]
    t3 = time.perf_counter()
    mismatches = sum(1 for a, b in zip(ours, theirs, strict=True) if a != b)
    n = len(sample)
    return (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n, mismatches


def pin_one_cpu(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = cpu if cpu is not None else allowed[-1]
    os.sched_setaffinity(0, {chosen})
    return f"pinned to CPU {chosen}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Spans/s through RunAssembler + Converter + events.to_json, one core.",
    )
    parser.add_argument("--spans", type=int, default=100_000,
                        help="statement spans per pass (100000)")
    parser.add_argument("--per-span", type=int, default=5,
                        help="statements per enclosing span (5)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="passes per granularity, alternating (3)")
    parser.add_argument("--compare", type=int, default=2000,
                        help="events compared against openlineage-python's serializer (2000)")
    parser.add_argument("--input", choices=("readable", "view"), default="readable",
                        help="readable: SDK ReadableSpans, from_readable_span timed (the "
                        "in-process exporter); view: SpanViews built beforehand")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (last allowed)")
    parser.add_argument("--quick", action="store_true",
                        help="short run for a smoke test (5000 spans, 1 repeat, 200 compared)")
    args = parser.parse_args(argv)
    if args.quick:
        args.spans, args.repeats, args.compare = 5000, 1, 200

    pinned = pin_one_cpu(args.cpu)
    readable = build_spans(args.spans, args.per_span)
    views = [from_readable_span(s) for s in readable]
    n_statements = sum(1 for v in views if v.is_database_span)
    spans: list[Any] = readable if args.input == "readable" else views
    gc.collect()
    gc.freeze()  # the input spans are not garbage the exporter would have to walk
    print(f"{n_statements} statement spans + {len(spans) - n_statements} enclosing spans, "
          f"{args.per_span} per enclosing span, input {args.input}; {pinned}; "
          f"Python {sys.version.split()[0]}", flush=True)

    results: dict[str, list[tuple[float, float, int, int]]] = {g: [] for g in GRANULARITIES}
    for r in range(args.repeats):
        order = GRANULARITIES if r % 2 == 0 else GRANULARITIES[::-1]
        for granularity in order:
            results[granularity].append(run_pass(spans, granularity))

    header = (f"{'granularity':<11} {'stmt spans/s':>12} {'µs/stmt':>8} {'events':>8} "
              f"{'events/s':>9} {'KB/event':>8} {'to_json':>8}  target >= {TARGET:,}/s")
    print()
    steps = "from_readable_span + " if args.input == "readable" else ""
    print(f"median of {args.repeats} pass(es): {steps}RunAssembler.add + events.to_json")
    print(header)
    print("-" * len(header))
    for granularity in GRANULARITIES:
        passes = results[granularity]
        secs = statistics.median(p[0] for p in passes)
        share = statistics.median(p[1] / p[0] for p in passes)
        n_events, n_bytes = passes[0][2:]
        rate = n_statements / secs
        verdict = "met" if rate >= TARGET else "NOT met"
        print(f"{granularity:<11} {rate:12,.0f} {secs / n_statements * 1e6:8.1f} "
              f"{n_events:8d} {n_events / secs:9,.0f} {n_bytes / n_events / 1024:8.2f} "
              f"{share * 100:7.1f}%  {verdict if granularity == 'statement' else '(no target)'}")

    locked: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.repeats):  # interleaved: per batch, per span, per span, per batch...
        for per_span in ((False, True) if r % 2 == 0 else (True, False)):
            locked[per_span].append(run_locked_pass(spans, "statement", per_span))
    by_span, by_batch = statistics.median(locked[True]), statistics.median(locked[False])
    print()
    print(f"pipeline lock (granularity statement, batches of 512, median of {args.repeats})")
    print(f"  per span  {n_statements / by_span:12,.0f} stmt spans/s")
    print(f"  per batch {n_statements / by_batch:12,.0f} stmt spans/s  (earlier; baseline)")
    print(f"  throughput per span / per batch: {by_batch / by_span:.3f}")

    per_gran = max(1, args.compare // len(GRANULARITIES))
    ours, load, serde = float("inf"), float("inf"), float("inf")
    mismatches = n_sample = 0
    for _ in range(3):  # best of 3, fresh events each time (nothing serialized before)
        sample = [e for g in GRANULARITIES for e in first_events(spans, g, per_gran)]
        o, lo, se, mismatches = compare(sample)
        ours, load, serde = min(ours, o), min(load, lo), min(serde, se)
        n_sample = len(sample)
    print()
    print(f"serializer, per event, on {n_sample} events (both granularities, best of 3)")
    print(f"  ours   events.to_json                               {ours * 1e6:8.1f} µs")
    print(f"  openlineage-python  to_openlineage_event + Serde    {(load + serde) * 1e6:8.1f} µs"
          f"  (load {load * 1e6:.1f} + Serde.to_json {serde * 1e6:.1f})")
    print(f"  openlineage-python / ours: {(load + serde) / ours:.0f}x;  Serde.to_json alone / "
          f"ours: {serde / ours:.0f}x")
    print(f"  identical: {'yes' if mismatches == 0 else f'no ({mismatches} differ)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
