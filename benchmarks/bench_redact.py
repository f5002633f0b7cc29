"""What secret redaction (``otel_sqla_lineage.redact.redact_sql``) costs per statement,
measured side by side in one process.

Variants, interleaved round by round (their order alternates):

  off  upstream + ours, with the instrumentor's ``redact_sql`` replaced by the identity
  on   upstream + ours, as shipped

Statements, on SQLite in memory, inside an enclosing application span:

  core_select   ``select(users).where(users.c.id == :id)``: nothing to redact (the common
                case: a cache look-up per statement)
  text_secret   ``text("UPDATE users SET api_token = 'tok' WHERE id = :id")``: redacted,
                and upstream's ``db.statement`` replaced on every execution

Also printed: the cost of one redaction on a cache miss (first sight of a SQL string) and of
a cache hit, for a typical statement.

Reported: per-statement medians across rounds (µs), on/off as the ratio of the medians.

    python benchmarks/bench_redact.py            # full run
    python benchmarks/bench_redact.py --quick    # smoke test (a few seconds)
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from _common import KeepSpans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider

import otel_sqla_lineage.instrumentor as instrumentor_module
from otel_sqla_lineage import SQLAlchemyLineageInstrumentor
from otel_sqla_lineage.redact import _redact, redact_sql

KINDS = ("core_select", "text_secret")
VARIANTS = ("off", "on")
WARMUP = 50

metadata = sa.MetaData()
users = sa.Table("users", metadata, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("name", sa.String(50)), sa.Column("api_token", sa.String(50)))
SECRET_SQL = "UPDATE users SET api_token = 'tok-bench' WHERE id = :id"


@contextmanager
def variant_of(name: str) -> Iterator[None]:
    original = instrumentor_module.redact_sql
    if name == "off":
        instrumentor_module.redact_sql = lambda sql: sql  # type: ignore[assignment]
    try:
        yield
    finally:
        instrumentor_module.redact_sql = original


def workload(kind: str, conn: Any) -> Callable[[int], Any]:
    if kind == "core_select":
        stmt = sa.select(users).where(users.c.id == sa.bindparam("id"))
        return lambda i: conn.execute(stmt, {"id": i % 100 + 1}).first()
    text = sa.text(SECRET_SQL)
    return lambda i: conn.execute(text, {"id": i % 100 + 1})


def measure(kind: str, variant: str, provider: TracerProvider, keep: KeepSpans,
            n: int) -> float:
    tracer = provider.get_tracer("bench")
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(users.insert(), [{"id": i, "name": f"u{i}"} for i in range(1, 101)])
    # one transaction rolled back at the end (Connection.rollback() is 2.0-style only)
    with variant_of(variant), engine.connect() as conn, conn.begin() as transaction:
        run = workload(kind, conn)
        with tracer.start_as_current_span("warmup"):
            for i in range(WARMUP):
                run(i)
        keep.spans.clear()
        gc.collect()
        started = time.perf_counter()
        for start in range(0, n, 50):
            with tracer.start_as_current_span("request"):
                for i in range(start, min(start + 50, n)):
                    run(i)
        elapsed = time.perf_counter() - started
        transaction.rollback()
    engine.dispose()
    check(kind, variant, keep.spans)
    keep.spans.clear()
    return elapsed / n


def check(kind: str, variant: str, spans: list[ReadableSpan]) -> None:
    statements = [str((s.attributes or {}).get("db.statement")) for s in spans
                  if (s.attributes or {}).get("db.statement")]
    assert statements, "no statement spans"
    if kind == "text_secret":
        redacted = all("tok-bench" not in s for s in statements)
        assert redacted == (variant == "on"), (variant, statements[:1])


def micro(repeat: int) -> tuple[float, float]:
    """(µs per redaction on a cache miss, ns per cache hit) for a typical statement."""
    sql = "INSERT INTO users (name, email, password) VALUES ('ada', 'a@example.org', 'x')"
    started = time.perf_counter()
    for i in range(repeat):
        _redact(sql + " " * (i % 7))
    miss = (time.perf_counter() - started) / repeat * 1e6
    redact_sql(sql)
    started = time.perf_counter()
    for _ in range(repeat * 20):
        redact_sql(sql)
    hit = (time.perf_counter() - started) / (repeat * 20) * 1e9
    return miss, hit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--statements", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="3 rounds x 200 statements")
    args = parser.parse_args()
    rounds, n = (3, 200) if args.quick else (args.rounds, args.statements)
    keep = KeepSpans()
    provider = TracerProvider()
    provider.add_span_processor(keep)
    ours = SQLAlchemyLineageInstrumentor()
    ours.instrument(tracer_provider=provider)
    results: dict[tuple[str, str], list[float]] = {(k, v): [] for k in KINDS for v in VARIANTS}
    try:
        for r in range(rounds):
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            for kind in KINDS:
                for variant in order:
                    results[(kind, variant)].append(measure(kind, variant, provider, keep, n))
    finally:
        ours.uninstrument()
    print(f"redaction per statement: {rounds} interleaved rounds x {n} statements, "
          "median µs per statement (upstream + ours)")
    print(f"{'statement':<14}{'off':>9}{'on':>9}{'on/off':>9}{'on-off':>10}")
    for kind in KINDS:
        off = statistics.median(results[(kind, "off")]) * 1e6
        on = statistics.median(results[(kind, "on")]) * 1e6
        print(f"{kind:<14}{off:>9.1f}{on:>9.1f}{on / off:>9.3f}{on - off:>8.1f}µs")
    miss, hit = micro(200 if args.quick else 2000)
    print(f"redact_sql on a typical INSERT: {miss:.1f} µs on first sight (cache miss), "
          f"{hit:.0f} ns per cached look-up")


if __name__ == "__main__":
    main()
