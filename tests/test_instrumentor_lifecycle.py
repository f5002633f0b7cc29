"""The instrumentor's life: instrument / uninstrument, engines made before and after it,
``engine=`` / ``engines=``, asyncio, several engines in one Session, upstream's instrumentor
in either order, failures that must never reach the application, and ``openlineage.run.id``.

Unit tier, SQLite. "One span per statement" is checked against a statement log kept by a
listener of our own (tests/instrumentor_support.py).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import subprocess
import sys
import textwrap
import weakref

import models
import pytest
import sqlalchemy
import sqlalchemy.ext.asyncio as sa_asyncio  # before any test instruments (see the last test)
from conftest import make_traced
from instrumentor_support import (
    OUR_SCOPE,
    RUN_ID,
    UPSTREAM_SCOPE,
    StatementLog,
    expected,
    iter_listener_modules,
    lineage,
    make_sqlite_engine,
    reset_instrumentation,
    seed,
    spans_per_statement,
    statement_of,
)
from models import Book, Post, User, books, users
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from otel_sqla_lineage import statement as statement_module
from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor
from otel_sqla_lineage.runid import run_id_for

SELECT_BOOKS = expected("SELECT", "core", collection="books", read=("books",))


@pytest.fixture
def instrumentor():
    """The (singleton) instrumentor, not yet instrumented; uninstrumented afterwards."""
    inst = SQLAlchemyLineageInstrumentor()
    assert not inst.is_instrumented_by_opentelemetry
    try:
        yield inst
    finally:
        reset_instrumentation()


def _prepared_engine(directory, name="library.db", **kwargs):
    engine = make_sqlite_engine(directory, name, **kwargs)
    models.metadata.create_all(engine)
    with engine.begin() as conn:
        seed(conn)
    return engine


def _select_books(engine, traced, log):
    traced.clear()
    log.clear()
    with engine.connect() as conn:
        rows = conn.execute(select(books.c.title).order_by(books.c.id)).all()
    assert rows == [("Dune",), ("Emma",)]
    return spans_per_statement(traced, log)


# --- engines before and after instrument() ------------------------------------------------


def test_engine_created_after_instrument_gets_one_upstream_span_with_lineage(traced, tmp_path):
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)

    spans = _select_books(engine, traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [UPSTREAM_SCOPE]
    assert [lineage(s) for s in spans] == [SELECT_BOOKS]
    engine.dispose()


def test_engine_created_before_instrument_gets_one_span_of_ours_with_lineage(
    instrumentor, tmp_path
):
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)

    spans = _select_books(engine, traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [OUR_SCOPE]
    (span,) = spans
    assert span.kind is SpanKind.CLIENT
    assert span.name == "SELECT"
    assert span.attributes["db.system"] == "sqlite"
    assert lineage(span) == SELECT_BOOKS
    engine.dispose()


def test_instrument_with_engine_traces_an_earlier_engine_through_upstream(
    instrumentor, tmp_path
):
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider, engine=engine)

    spans = _select_books(engine, traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [UPSTREAM_SCOPE]
    assert [lineage(s) for s in spans] == [SELECT_BOOKS]
    engine.dispose()


def test_instrument_with_engines_traces_each_earlier_engine_through_upstream(
    instrumentor, tmp_path
):
    first = _prepared_engine(tmp_path, "first.db")
    second = _prepared_engine(tmp_path, "second.db")
    logs = [StatementLog(first), StatementLog(second)]
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider, engines=[first, second])

    for engine, log in zip((first, second), logs, strict=True):
        spans = _select_books(engine, traced, log)
        assert [s.instrumentation_scope.name for s in spans] == [UPSTREAM_SCOPE]
        assert [lineage(s) for s in spans] == [SELECT_BOOKS]
        assert spans[0].attributes["db.name"] == str(engine.url.database)
        engine.dispose()


def test_option_engine_from_execution_options_gets_one_span_per_statement(traced, tmp_path):
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    spans = _select_books(autocommit, traced, log)

    assert [lineage(s) for s in spans] == [SELECT_BOOKS]
    engine.dispose()


# --- uninstrument ---------------------------------------------------------------------------


def test_uninstrument_leaves_no_listener_and_no_span(instrumentor, tmp_path):
    baseline = sorted(iter_listener_modules(sqlalchemy.create_engine("sqlite://")))
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    engine = _prepared_engine(tmp_path)
    during = sorted(iter_listener_modules(engine))
    assert any(module.startswith("otel_sqla_lineage") for _, module in during)

    instrumentor.uninstrument()

    assert sorted(iter_listener_modules(engine)) == baseline
    assert sorted(iter_listener_modules(sqlalchemy.create_engine("sqlite://"))) == baseline
    traced.clear()
    with engine.connect() as conn:
        conn.execute(select(books.c.id)).all()
    assert traced.statement_spans() == []
    engine.dispose()


def test_instrument_again_after_uninstrument_gives_one_span_per_statement(
    instrumentor, tmp_path
):
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=traced.provider)
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)

    spans = _select_books(engine, traced, log)

    assert [lineage(s) for s in spans] == [SELECT_BOOKS]
    engine.dispose()


def test_instrumented_engine_is_not_kept_alive(traced, tmp_path):
    engine = make_sqlite_engine(tmp_path)
    with engine.connect() as conn:
        conn.execute(select(sqlalchemy.literal_column("1"))).all()
    ref = weakref.ref(engine)
    engine.dispose()
    del engine, conn
    gc.collect()

    assert ref() is None


# --- upstream's instrumentor in either order -------------------------------------------------


def test_upstream_instrumented_first_then_ours_gives_one_enriched_span(instrumentor, tmp_path):
    traced = make_traced()
    # what opentelemetry-instrument does when upstream's entry point loads first
    SQLAlchemyInstrumentor().instrument(tracer_provider=traced.provider, skip_dep_check=True)
    instrumentor.instrument(tracer_provider=traced.provider)
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)

    spans = _select_books(engine, traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [UPSTREAM_SCOPE]
    assert [lineage(s) for s in spans] == [SELECT_BOOKS]

    # ours leaves upstream's instrumentation it did not make in place
    instrumentor.uninstrument()
    spans = _select_books(engine, traced, log)
    assert [s.instrumentation_scope.name for s in spans] == [UPSTREAM_SCOPE]
    assert [lineage(s) for s in spans] == [{}]
    engine.dispose()


def test_ours_first_then_upstream_instrument_gives_one_enriched_span(instrumentor, tmp_path):
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    SQLAlchemyInstrumentor().instrument(tracer_provider=traced.provider, skip_dep_check=True)
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)

    spans = _select_books(engine, traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [UPSTREAM_SCOPE]
    assert [lineage(s) for s in spans] == [SELECT_BOOKS]
    engine.dispose()


# --- asyncio -----------------------------------------------------------------------------------


def test_async_engine_created_after_instrument_enriches_core_and_orm(instrumentor, tmp_path):
    _prepared_engine(tmp_path).dispose()
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    engine = sa_asyncio.create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'library.db'}")
    log = StatementLog(engine)

    async def work():
        async with engine.connect() as conn:
            await conn.execute(select(books.c.title))
        async with sa_asyncio.AsyncSession(engine) as session:
            (await session.execute(select(User).options(selectinload(User.posts)))).all()
            session.add(Post(id=5, user_id=2, title="async"))
            await session.commit()
        await engine.dispose()

    traced.clear()
    log.clear()
    asyncio.run(work())
    spans = spans_per_statement(traced, log)

    assert [lineage(s) for s in spans] == [
        SELECT_BOOKS,
        expected("SELECT", "orm", collection="users", mappers=("models.User",),
                 read=("users",)),
        expected("SELECT", "orm", collection="posts", mappers=("models.Post",),
                 read=("posts",)),
        expected("INSERT", "orm", collection="posts", mappers=("models.Post",),
                 written=("posts",)),
    ]
    assert {s.instrumentation_scope.name for s in spans} == {UPSTREAM_SCOPE}


def test_async_statement_leaves_no_span_unended(instrumentor, tmp_path):
    _prepared_engine(tmp_path).dispose()
    started, ended = [], []

    class Recorder(SpanProcessor):
        def on_start(self, span, parent_context=None):
            started.append(span.context.span_id)

        def on_end(self, span):
            ended.append(span.context.span_id)

    provider = TracerProvider()
    provider.add_span_processor(Recorder())
    instrumentor.instrument(tracer_provider=provider)
    engine = sa_asyncio.create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'library.db'}")

    async def work():
        async with engine.connect() as conn:
            await conn.execute(select(books.c.title))
        await engine.dispose()

    asyncio.run(work())

    # every span started for the statement (and the connect) was ended: none left open
    assert sorted(started) == sorted(ended)


def test_uninstrument_after_an_async_engine_leaves_no_listener_and_does_not_raise(
    instrumentor, tmp_path
):
    _prepared_engine(tmp_path).dispose()
    baseline = sorted(iter_listener_modules(sqlalchemy.create_engine("sqlite://")))
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    engine = sa_asyncio.create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'library.db'}")

    async def work():
        async with engine.connect() as conn:
            await conn.execute(select(books.c.title))
        await engine.dispose()

    asyncio.run(work())

    instrumentor.uninstrument()

    assert not instrumentor.is_instrumented_by_opentelemetry
    assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
    assert sorted(iter_listener_modules(engine.sync_engine)) == baseline


def test_instrument_with_async_engine_created_before_traces_it_through_upstream(
    instrumentor, tmp_path
):
    _prepared_engine(tmp_path).dispose()
    engine = sa_asyncio.create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'library.db'}")
    log = StatementLog(engine)
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider, engine=engine)

    async def work():
        async with engine.connect() as conn:
            await conn.execute(select(books.c.title))
        await engine.dispose()

    asyncio.run(work())
    spans = spans_per_statement(traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [UPSTREAM_SCOPE]
    assert [lineage(s) for s in spans] == [SELECT_BOOKS]


def test_async_engine_created_before_instrument_gets_one_span_of_ours(instrumentor, tmp_path):
    _prepared_engine(tmp_path).dispose()
    engine = sa_asyncio.create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'library.db'}")
    log = StatementLog(engine)
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)

    async def work():
        async with engine.connect() as conn:
            await conn.execute(select(books.c.title))
        await engine.dispose()

    asyncio.run(work())
    spans = spans_per_statement(traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [OUR_SCOPE]
    assert [lineage(s) for s in spans] == [SELECT_BOOKS]


# --- several engines in one Session ------------------------------------------------------------


def test_session_with_two_binds_reports_each_statement_on_its_own_database(traced, tmp_path):
    # a two-database pipeline: users live in one file, books in another
    people = _prepared_engine(tmp_path, "people.db")
    catalog = _prepared_engine(tmp_path, "catalog.db")
    logs = {people: StatementLog(people), catalog: StatementLog(catalog)}
    host = socket.gethostname()
    traced.clear()

    with Session(binds={User: people, Book: catalog}) as session:
        names = session.scalars(select(User.name).order_by(User.id)).all()
        session.add(Book(id=3, title=f"Memoirs of {names[0]}"))
        session.commit()

    spans = traced.statement_spans()
    executed = [*logs[people].statements, *logs[catalog].statements]
    assert sorted(statement_of(s) for s in spans) == sorted(executed)
    by_database = [(s.attributes["db.name"], lineage(s)) for s in spans]
    assert by_database == [
        (str(tmp_path / "people.db"),
         expected("SELECT", "orm", collection="users", mappers=("models.User",),
                  read=("users",))),
        (str(tmp_path / "catalog.db"),
         expected("INSERT", "orm", collection="books", mappers=("models.Book",),
                  written=("books",))),
    ]
    assert [s.attributes["openlineage.dataset.namespace"] for s in spans] == [
        f"sqlite://{host}{tmp_path / 'people.db'}",
        f"sqlite://{host}{tmp_path / 'catalog.db'}",
    ]
    people.dispose()
    catalog.dispose()


# --- failures never reach the application ---------------------------------------------------------


def _broken_extractor(*args, **kwargs):
    raise RuntimeError("extractor exploded")


def test_failed_extraction_never_raises_and_is_logged_once_per_statement_shape(
    library, monkeypatch, caplog
):
    monkeypatch.setattr(statement_module, "lineage_of_compiled", _broken_extractor)
    session = library.session()
    results = []

    def action():
        for _ in range(3):
            results.append(session.scalars(select(User.name).order_by(User.id)).all())
        for _ in range(2):
            results.append(session.scalars(select(Book.title).order_by(Book.id)).all())

    with caplog.at_level(logging.WARNING, logger="otel_sqla_lineage"):
        spans = library.run(action)

    assert results == [["ann", "bob"]] * 3 + [["Dune", "Emma"]] * 2
    assert len(spans) == 5
    assert [lineage(s) for s in spans] == [{}] * 5
    assert all(s.end_time is not None for s in spans)
    warnings = [r for r in caplog.records if r.name.startswith("otel_sqla_lineage")]
    assert len(warnings) == 2
    assert "users" in warnings[0].getMessage()
    assert "books" in warnings[1].getMessage()
    assert all(r.levelno == logging.WARNING for r in warnings)


def test_failed_extraction_on_an_engine_with_our_own_span_still_ends_that_span(
    instrumentor, tmp_path, monkeypatch
):
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    monkeypatch.setattr(statement_module, "lineage_of_compiled", _broken_extractor)

    spans = _select_books(engine, traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [OUR_SCOPE]
    assert [lineage(s) for s in spans] == [{}]
    engine.dispose()


def test_failed_statement_keeps_lineage_on_its_span_with_error_status(library):
    session = library.session()
    session.add(User(id=1, name="duplicate of ann"))

    def action():
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "orm", collection="users", mappers=("models.User",),
                 written=("users",)),
    ]
    assert spans[0].status.status_code is StatusCode.ERROR


def test_failed_statement_on_our_own_span_keeps_lineage_and_error_status(
    instrumentor, tmp_path
):
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    traced.clear()

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(users).values(id=1, name="duplicate"))
    spans = spans_per_statement(traced, log)

    assert [s.instrumentation_scope.name for s in spans] == [OUR_SCOPE]
    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", collection="users", written=("users",)),
    ]
    assert spans[0].status.status_code is StatusCode.ERROR
    engine.dispose()


def test_unsampled_statements_run_without_spans_or_warnings(instrumentor, tmp_path, caplog):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    early = _prepared_engine(tmp_path, "early.db")
    instrumentor.instrument(tracer_provider=provider)
    late = _prepared_engine(tmp_path, "late.db")

    with caplog.at_level(logging.WARNING, logger="otel_sqla_lineage"):
        for engine in (early, late):
            with engine.connect() as conn:
                assert conn.execute(select(books.c.title)).all() == [("Dune",), ("Emma",)]

    assert exporter.get_finished_spans() == ()
    assert [r for r in caplog.records if r.name.startswith("otel_sqla_lineage")] == []
    early.dispose()
    late.dispose()


def test_suppressed_instrumentation_makes_no_span_on_either_path(instrumentor, tmp_path):
    early = _prepared_engine(tmp_path, "early.db")
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    late = _prepared_engine(tmp_path, "late.db")
    traced.clear()

    with suppress_instrumentation():
        for engine in (early, late):
            with engine.connect() as conn:
                conn.execute(select(books.c.title)).all()

    assert traced.statement_spans() == []
    early.dispose()
    late.dispose()


def test_bound_parameter_values_are_never_recorded(library):
    secret = "s3cret-name-7f1c"
    session = library.session()

    def action():
        session.add(User(id=50, name=secret))
        session.flush()
        session.execute(select(User).where(User.name == secret)).all()
        session.execute(text("SELECT id FROM users WHERE name = :n"), {"n": secret}).all()

    spans = library.run(action)

    assert len(spans) == 3
    for span in spans:
        for key, value in span.attributes.items():
            assert secret not in str(value), key


# --- openlineage.run.id ---------------------------------------------------------------------------


def test_run_id_of_statement_in_enclosing_span_names_the_enclosing_run(library):
    session = library.session()
    enclosing = []

    def action():
        with library.traced.tracer.start_as_current_span("book_inventory") as span:
            enclosing.append(span)
            session.scalars(select(Book)).all()
            session.add(Book(id=40, title="Walden"))
            session.flush()

    spans = library.run(action)

    (job,) = [s for s in library.traced.spans() if s.name == "book_inventory"]
    trace_id = job.context.trace_id
    run_id = run_id_for(trace_id, job.context.span_id)
    assert [s.attributes[RUN_ID] for s in spans] == [run_id, run_id]
    assert [s.parent.span_id for s in spans] == [job.context.span_id] * 2
    assert job.attributes[RUN_ID] == run_id


def test_run_id_of_statement_without_enclosing_span_is_its_own(library):
    session = library.session()

    spans = library.run(lambda: session.scalars(select(Book)).all())

    (span,) = spans
    assert span.parent is None
    assert span.attributes[RUN_ID] == run_id_for(span.context.trace_id, span.context.span_id)


def test_statement_granularity_gives_each_statement_its_own_run_id(instrumentor, tmp_path):
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider, granularity="statement")
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)
    traced.clear()

    with traced.tracer.start_as_current_span("book_inventory"), engine.connect() as conn:
        conn.execute(select(books.c.title)).all()
        conn.execute(select(users.c.name)).all()
    spans = spans_per_statement(traced, log)

    assert [s.attributes[RUN_ID] for s in spans] == [
        run_id_for(s.context.trace_id, s.context.span_id) for s in spans
    ]
    assert len({s.attributes[RUN_ID] for s in spans}) == 2
    (job,) = [s for s in traced.spans() if s.name == "book_inventory"]
    assert RUN_ID not in job.attributes
    engine.dispose()


def test_statement_in_enclosing_span_of_an_earlier_engine_names_the_enclosing_run(
    instrumentor, tmp_path
):
    engine = _prepared_engine(tmp_path)
    log = StatementLog(engine)
    traced = make_traced()
    instrumentor.instrument(tracer_provider=traced.provider)
    traced.clear()

    with traced.tracer.start_as_current_span("book_inventory"), engine.connect() as conn:
        conn.execute(select(books.c.title)).all()
    spans = spans_per_statement(traced, log)

    (job,) = [s for s in traced.spans() if s.name == "book_inventory"]
    run_id = run_id_for(job.context.trace_id, job.context.span_id)
    assert [s.instrumentation_scope.name for s in spans] == [OUR_SCOPE]
    assert [s.attributes[RUN_ID] for s in spans] == [run_id]
    assert job.attributes[RUN_ID] == run_id
    engine.dispose()


_FRESH_PROCESS_ASYNC = textwrap.dedent(
    """
    import asyncio, json
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor

    started, ended = [], []

    class Recorder(SpanProcessor):
        def on_start(self, span, parent_context=None):
            started.append(span.context.span_id)

        def on_end(self, span):
            ended.append(span.context.span_id)

    provider = TracerProvider()
    provider.add_span_processor(Recorder())
    SQLAlchemyLineageInstrumentor().instrument(tracer_provider=provider)

    # as in an application run under opentelemetry-instrument: SQLAlchemy's asyncio
    # extension is first imported after instrumentation
    import sqlalchemy.ext.asyncio as sa_asyncio
    from sqlalchemy import text

    async def run(engine):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        await engine.dispose()

    asyncio.run(run(sa_asyncio.create_async_engine("sqlite+aiosqlite://")))
    error = None
    try:
        SQLAlchemyLineageInstrumentor().uninstrument()
    except Exception as exc:
        error = repr(exc)
    later = sa_asyncio.create_async_engine("sqlite+aiosqlite://").sync_engine
    modules = sorted(
        str(getattr(fn, "__module__", None))
        for name in ("before_cursor_execute", "after_cursor_execute")
        for fn in getattr(later.dispatch, name)
    )
    print(json.dumps({"started": len(started), "unended": len(set(started) - set(ended)),
                      "uninstrument_error": error, "listeners_after": modules}))
    """
)


@pytest.mark.subprocess
def test_async_engine_module_first_imported_after_instrument_is_traced_once_and_released():
    proc = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS_ASYNC],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    # one connect span and one statement span, both ended; uninstrument() raises nothing and
    # leaves no listener on engines made afterwards
    assert report == {"started": 2, "unended": 0, "uninstrument_error": None,
                      "listeners_after": []}
