"""Per-statement cost of the instrumentation, measured side by side in one process.

Variants, interleaved round by round (their order rotates every round):

  a  no instrumentation
  b  upstream only: opentelemetry-instrumentation-sqlalchemy's SQLAlchemyInstrumentor
     (``skip_dep_check=True``, its version gate refuses SQLAlchemy 2.1)
  c  upstream + ours: SQLAlchemyLineageInstrumentor on top of b

Statement kinds, on SQLite in memory:

  orm_get      ``session.get(User, pk, populate_existing=True)``: one SELECT each time
  orm_insert   ``session.add(User(...)); session.flush()``: one INSERT per object
  core_select  ``conn.execute(select(users).where(users.c.id == :id)).first()``

b and c share one SDK ``TracerProvider`` whose only span processor keeps finished spans in a
list (an append; no export), so c/b isolates what our listeners add. Instrumentors are
singletons that hook ``create_engine`` and the ``Engine`` class, so every measurement
instruments, creates a fresh engine and database, warms up (compiled cache, our lineage
cache, schema announcement), times ``--statements`` statements, checks the spans it made
(a: none; b: one per statement without ``db.sqlalchemy.source``; c: one per statement with
it) and uninstruments. Statements run inside an enclosing application span (a new one every
``--per-span`` statements), as a request handler would; all variants pay for it.

Reported: per-statement medians across rounds (µs), c/b as the ratio of the medians and as
the median of the per-round paired ratios, and c-b in µs. Target: c/b <= 1.05.

    python benchmarks/bench_instrumentor.py            # full run
    python benchmarks/bench_instrumentor.py --quick    # smoke test (a few seconds)
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy
from _common import KeepSpans, exit_with, median
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from sqlalchemy import Column, Integer, String, bindparam, insert, select
from sqlalchemy.orm import Session, declarative_base

from otel_sqla_lineage import SQLAlchemyLineageInstrumentor

TARGET = 1.05
SEED_ROWS = 1000
WARMUP = 50
SOURCE = "db.sqlalchemy.source"
VARIANTS = ("a", "b", "c")
VARIANT_LABELS = {"a": "none", "b": "upstream", "c": "upstream+ours"}
KINDS = ("orm_get", "orm_insert", "core_select")

Base: Any = declarative_base()


class User(Base):
    __tablename__ = "users"

    id = Column(Integer, primary_key=True)
    name = Column(String(50), nullable=False)
    email = Column(String(120), nullable=True)


users = User.__table__


@contextmanager
def instrumented(variant: str, provider: TracerProvider) -> Iterator[None]:
    upstream = SQLAlchemyInstrumentor()
    ours = SQLAlchemyLineageInstrumentor()
    if variant in ("b", "c"):
        upstream.instrument(tracer_provider=provider, skip_dep_check=True)
    if variant == "c":
        ours.instrument(tracer_provider=provider)
    try:
        yield
    finally:
        if variant == "c":
            ours.uninstrument()
        if variant in ("b", "c"):
            upstream.uninstrument()


def fresh_engine() -> Any:
    # looked up at call time: upstream wraps sqlalchemy.create_engine while instrumented
    engine = sqlalchemy.create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(users),
            [{"id": i, "name": f"user{i}", "email": f"u{i}@example.org"}
             for i in range(1, SEED_ROWS + 1)],
        )
    return engine


# Each workload: (engine, n) -> a callable running statement number i, and a closer.
Workload = tuple[Callable[[int], Any], Callable[[], None]]


def orm_get(engine: Any) -> Workload:
    session = Session(engine)

    def run(i: int) -> Any:
        user = session.get(User, i % SEED_ROWS + 1, populate_existing=True)
        assert user is not None
        return user

    return run, session.close


def orm_insert(engine: Any) -> Workload:
    session = Session(engine)

    def run(i: int) -> Any:
        user = User(name=f"new{i}", email=None)
        session.add(user)
        session.flush()
        return user

    def close() -> None:
        session.rollback()
        session.close()

    return run, close


def core_select(engine: Any) -> Workload:
    conn = engine.connect()
    stmt = select(users).where(users.c.id == bindparam("id"))

    def run(i: int) -> Any:
        return conn.execute(stmt, {"id": i % SEED_ROWS + 1}).first()

    return run, conn.close


WORKLOADS: dict[str, Callable[[Any], Workload]] = {
    "orm_get": orm_get,
    "orm_insert": orm_insert,
    "core_select": core_select,
}


def measure(
    kind: str, variant: str, provider: TracerProvider, keep: KeepSpans, *, n: int, per_span: int
) -> float:
    """Seconds per statement; raises AssertionError when the spans are not as expected."""
    tracer = provider.get_tracer("bench")
    with instrumented(variant, provider):
        engine = fresh_engine()
        run, close = WORKLOADS[kind](engine)
        try:
            with tracer.start_as_current_span("warmup"):
                for i in range(WARMUP):
                    run(i)
            keep.spans.clear()
            gc.collect()
            t0 = time.perf_counter()
            i = 0
            while i < n:
                with tracer.start_as_current_span("request"):
                    for j in range(i, min(i + per_span, n)):
                        run(j)
                i += per_span
            elapsed = time.perf_counter() - t0
        finally:
            close()
            engine.dispose()
    check_spans(kind, variant, keep.spans, n)
    keep.spans.clear()
    return elapsed / n


def check_spans(kind: str, variant: str, spans: list[ReadableSpan], n: int) -> None:
    statement_spans = [s for s in spans if s.attributes and "db.statement" in s.attributes]
    with_source = [s for s in statement_spans if SOURCE in (s.attributes or {})]
    expected_op = "INSERT" if kind == "orm_insert" else "SELECT"
    where = f"{kind}/{variant}"
    if variant == "a":
        assert not statement_spans, f"{where}: {len(statement_spans)} spans, expected none"
        return
    assert len(statement_spans) == n, f"{where}: {len(statement_spans)} spans for {n} statements"
    ops = {str((s.attributes or {}).get("db.statement", "")).split(None, 1)[0]
           for s in statement_spans}
    assert ops == {expected_op}, f"{where}: statements {ops}, expected {expected_op}"
    if variant == "b":
        assert not with_source, f"{where}: {len(with_source)} spans carry {SOURCE}"
    else:
        assert len(with_source) == n, f"{where}: {len(with_source)}/{n} spans carry {SOURCE}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-statement overhead: none vs upstream vs upstream+ours (c/b).",
    )
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (15)")
    parser.add_argument("--statements", type=int, default=2000,
                        help="statements timed per variant per round (2000)")
    parser.add_argument("--per-span", type=int, default=10,
                        help="statements per enclosing application span (10)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--quick", action="store_true",
                        help="short run for a smoke test (3 rounds x 200 statements)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.statements = 3, 200
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")

    keep = KeepSpans()
    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(keep)

    print(f"SQLAlchemy {sqlalchemy.__version__}, Python {sys.version.split()[0]}; "
          f"{args.rounds} rounds x {args.statements} statements per variant, "
          f"{args.per_span} statements per enclosing span", flush=True)
    per_stmt: dict[tuple[str, str], list[float]] = {
        (k, v): [] for k in kinds for v in VARIANTS
    }
    started = time.perf_counter()
    for r in range(args.rounds):
        order = VARIANTS[r % 3:] + VARIANTS[: r % 3]
        for kind in kinds:
            for variant in order:
                seconds = measure(
                    kind, variant, provider, keep, n=args.statements, per_span=args.per_span
                )
                per_stmt[kind, variant].append(seconds)
        print(f"  round {r + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
    print("spans checked: a none; b one per statement, no db.sqlalchemy.source; "
          "c one per statement with it")

    header = (f"{'statement':<12} {'a none':>9} {'b upstr':>9} {'c +ours':>9} "
              f"{'b/a':>6} {'c/b':>6} {'c/b pair':>8} {'c-b µs':>7}  target c/b<={TARGET}")
    print()
    print("median µs per statement")
    print(header)
    print("-" * len(header))
    missed = []
    for kind in kinds:
        a, b, c = (median(per_stmt[kind, v]) * 1e6 for v in VARIANTS)
        paired = median([cv / bv for bv, cv in zip(per_stmt[kind, "b"], per_stmt[kind, "c"],
                                                   strict=True)])
        met = c / b <= TARGET
        if not met:
            missed.append(kind)
        print(f"{kind:<12} {a:9.1f} {b:9.1f} {c:9.1f} {b / a:6.2f} {c / b:6.3f} {paired:8.3f} "
              f"{c - b:7.1f}  {'met' if met else 'NOT met'}")
    print()
    verdict = f"NOT met for {', '.join(missed)}" if missed else "met for every kind"
    print(f"target c/b <= {TARGET} (ratio of medians): {verdict}")
    return 0


if __name__ == "__main__":
    exit_with(main, "span check failed")  # the variants did not produce the spans they should
