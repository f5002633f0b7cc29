"""Integration tier: the instrumentor against a real PostgreSQL (scripts/provision_postgres.sh).

Unqualified tables live in a schema of this suite's own (``osl_instrumentor``, first on the
``search_path``) so nothing here touches other suites' tables in ``public``; the mapped
``inventory`` tables are in the provisioned schema ``inventory``. Unqualified tables are
reported unqualified (no schema was set on them); ``inventory`` ones as ``inventory.<table>``.
Drivers: psycopg2 (sync) and asyncpg; two databases (osl_test, osl_test2) as Session binds.
"""

from __future__ import annotations

import asyncio

import models
import pytest
import sqlalchemy
import sqlalchemy.ext.asyncio as sa_asyncio
from instrumentor_support import (
    RUN_ID,
    Library,
    StatementLog,
    expected,
    lineage,
    seed,
    spans_per_statement,
)
from models import Book, BookHistory, StockItem, User, book_archive, books, restocks, stock_items
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session, selectinload

from otel_sqla_lineage.runid import run_id_for

pytestmark = pytest.mark.postgres

SCHEMA = "osl_instrumentor"
SECOND_DB_TABLES = [books, book_archive]
ALL_TABLES = ", ".join(
    f"{t.schema}.{t.name}" if t.schema else f"{SCHEMA}.{t.name}"
    for t in models.metadata.sorted_tables
)


def _engine(url: str, **kwargs):
    # sqlalchemy.create_engine looked up at call time: upstream's wrapper applies
    return sqlalchemy.create_engine(
        url, connect_args={"options": f"-csearch_path={SCHEMA}"}, **kwargs
    )


@pytest.fixture(scope="module")
def pg_schema(postgres_url, postgres_url2):
    """The suite's tables in both databases, created once for the module and dropped after."""
    engines = [_engine(postgres_url), _engine(postgres_url2)]
    for engine in engines:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    first, second = engines
    models.metadata.drop_all(first)
    models.metadata.create_all(first)
    models.metadata.drop_all(second, tables=SECOND_DB_TABLES)
    models.metadata.create_all(second, tables=SECOND_DB_TABLES)
    try:
        yield
    finally:
        models.metadata.drop_all(first)
        for engine in engines:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            engine.dispose()


def _reset_first_database(conn) -> None:
    conn.exec_driver_sql(f"TRUNCATE {ALL_TABLES} RESTART IDENTITY CASCADE")
    seed(conn)


@pytest.fixture
def pg(traced, pg_schema, postgres_url):
    """The seeded library on osl_test, on an engine created after instrument()."""
    engine = _engine(postgres_url)
    with engine.begin() as conn:
        _reset_first_database(conn)
    lib = Library(engine, traced, StatementLog(engine))
    traced.clear()
    try:
        yield lib
    finally:
        lib.close()


# --- ORM and Core on PostgreSQL -----------------------------------------------------------


def test_orm_join_reports_unqualified_tables_of_the_search_path_schema(pg):
    session = pg.session()
    stmt = (
        select(User.name, Book.title)
        .join(BookHistory, BookHistory.user_id == User.id)
        .join(Book, Book.id == BookHistory.book_id)
        .order_by(User.id)
    )

    spans = pg.run(lambda: session.execute(stmt).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm",
                 mappers=("models.Book", "models.BookHistory", "models.User"),
                 read=("book_history", "books", "users")),
    ]
    assert spans[0].attributes["db.name"] == "osl_test"


def test_orm_select_of_inventory_class_reports_schema_qualified_table(pg):
    session = pg.session()

    spans = pg.run(lambda: session.scalars(select(StockItem)).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="inventory.stock_items",
                 mappers=("models.StockItem",), read=("inventory.stock_items",)),
    ]


def test_flush_insert_into_inventory_schema_writes_qualified_table(pg):
    session = pg.session()
    session.add(StockItem(id=2, book_id=2, quantity=4))

    spans = pg.run(session.flush)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "orm", collection="inventory.stock_items",
                 mappers=("models.StockItem",), written=("inventory.stock_items",)),
    ]


def test_selectin_load_on_postgres_reports_each_statement(pg):
    session = pg.session()

    spans = pg.run(
        lambda: session.scalars(select(User).options(selectinload(User.posts))).all()
    )

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm", collection="users", mappers=("models.User",),
                 read=("users",)),
        expected("SELECT", "orm", collection="posts", mappers=("models.Post",),
                 read=("posts",)),
    ]


def test_core_insert_select_between_inventory_tables(pg):
    stmt = insert(restocks).from_select(
        ["book_id", "quantity"],
        select(stock_items.c.book_id, stock_items.c.quantity).where(stock_items.c.quantity < 5),
    )

    def action():
        with pg.engine.begin() as conn:
            conn.execute(stmt)

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", read=("inventory.stock_items",),
                 written=("inventory.restocks",)),
    ]


def test_insert_select_from_inventory_into_default_schema(pg):
    stmt = insert(book_archive).from_select(
        ["id", "title"],
        select(books.c.id, books.c.title)
        .join(stock_items, stock_items.c.book_id == books.c.id)
        .where(stock_items.c.quantity > 0),
    )

    def action():
        with pg.engine.begin() as conn:
            conn.execute(stmt)

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", read=("books", "inventory.stock_items"),
                 written=("book_archive",)),
    ]


def test_update_from_inventory_table_reads_it(pg):
    # UPDATE books SET title=... FROM inventory.stock_items WHERE books.id = stock_items.book_id
    stmt = (
        update(books)
        .where(books.c.id == stock_items.c.book_id)
        .where(stock_items.c.quantity > 0)
        .values(title="in stock")
    )

    def action():
        with pg.engine.begin() as conn:
            conn.execute(stmt)

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "core", read=("inventory.stock_items",), written=("books",)),
    ]


def test_delete_using_another_table_reads_it(pg):
    # DELETE FROM book_archive USING books WHERE book_archive.id = books.id
    stmt = delete(book_archive).where(book_archive.c.id == books.c.id)

    def action():
        with pg.engine.begin() as conn:
            conn.execute(stmt)

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("DELETE", "core", read=("books",), written=("book_archive",)),
    ]


def test_insert_on_conflict_do_nothing_writes_the_table(pg):
    stmt = pg_insert(books).values(id=1, title="Dune").on_conflict_do_nothing(
        index_elements=["id"]
    )

    def action():
        with pg.engine.begin() as conn:
            conn.execute(stmt)

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", collection="books", written=("books",)),
    ]


def test_core_insert_returning_writes_the_table(pg):
    stmt = insert(book_archive).values(title="Walden").returning(book_archive.c.id)

    def action():
        with pg.engine.begin() as conn:
            return conn.execute(stmt).scalar_one()

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", collection="book_archive", written=("book_archive",)),
    ]


def test_schema_translate_map_reports_the_schema_the_statement_ran_in(pg):
    # book_archive has no schema in the model; the application maps it into inventory
    translate = {None: "inventory"}
    with pg.engine.begin() as conn:
        book_archive.create(conn.execution_options(schema_translate_map=translate))
    try:
        def action():
            with pg.engine.connect() as conn:
                translated = conn.execution_options(schema_translate_map=translate)
                return translated.execute(select(book_archive.c.title)).all()

        spans = pg.run(action)
    finally:
        with pg.engine.begin() as conn:
            book_archive.drop(conn.execution_options(schema_translate_map=translate))

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", collection="inventory.book_archive",
                 read=("inventory.book_archive",)),
    ]


# --- SQL text -----------------------------------------------------------------------------------


def test_text_merge_reports_merge_with_source_and_target(pg):
    sql = (
        "MERGE INTO books AS b USING book_archive AS a ON b.id = a.id "
        "WHEN NOT MATCHED THEN INSERT (id, title) VALUES (a.id, a.title)"
    )

    def action():
        with pg.engine.begin() as conn:
            conn.execute(text(sql))

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("MERGE", "sql", read=("book_archive",), written=("books",)),
    ]


def test_text_update_from_inventory_table(pg):
    sql = (
        "UPDATE books SET title = books.title || ' (stocked)' FROM inventory.stock_items AS s "
        "WHERE books.id = s.book_id AND s.quantity > :q"
    )

    def action():
        with pg.engine.begin() as conn:
            conn.execute(text(sql), {"q": 0})

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "sql", read=("inventory.stock_items",), written=("books",)),
    ]


def test_exec_driver_sql_with_pyformat_parameters(pg):
    def action():
        with pg.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO inventory.restocks (book_id, quantity) VALUES (%(b)s, %(q)s)",
                {"b": 1, "q": 5},
            )

    spans = pg.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "sql", collection="inventory.restocks",
                 written=("inventory.restocks",)),
    ]


# --- asyncpg --------------------------------------------------------------------------------


def test_asyncpg_engine_enriches_orm_select_and_flush(traced, pg_schema, postgres_url):
    with _engine(postgres_url).begin() as conn:
        _reset_first_database(conn)
    engine = sa_asyncio.create_async_engine(
        postgres_url.replace("postgresql+psycopg2://", "postgresql+asyncpg://"),
        connect_args={"server_settings": {"search_path": SCHEMA}},
    )
    log = StatementLog(engine)

    async def warm_up():
        async with engine.connect() as conn:
            await conn.execute(select(sqlalchemy.literal_column("1")))

    async def work():
        async with sa_asyncio.AsyncSession(engine) as session:
            rows = (await session.execute(
                select(User.name, Book.title)
                .join(BookHistory, BookHistory.user_id == User.id)
                .join(Book, Book.id == BookHistory.book_id)
                .order_by(User.id)
            )).all()
            session.add(StockItem(id=3, book_id=2, quantity=1))
            await session.commit()
        return rows

    async def main():
        await warm_up()
        traced.clear()
        log.clear()
        rows = await work()
        await engine.dispose()
        return rows

    rows = asyncio.run(main())
    spans = spans_per_statement(traced, log)

    assert rows == [("ann", "Dune"), ("bob", "Emma")]
    assert [lineage(s) for s in spans] == [
        expected("SELECT", "orm",
                 mappers=("models.Book", "models.BookHistory", "models.User"),
                 read=("book_history", "books", "users")),
        expected("INSERT", "orm", collection="inventory.stock_items",
                 mappers=("models.StockItem",), written=("inventory.stock_items",)),
    ]
    assert {s.attributes["db.name"] for s in spans} == {"osl_test"}


# --- two databases --------------------------------------------------------------------------


def test_pipeline_across_two_databases_in_one_session_names_one_run(
    traced, pg_schema, postgres_url, postgres_url2
):
    source = _engine(postgres_url)
    target = _engine(postgres_url2)
    with source.begin() as conn:
        _reset_first_database(conn)
    with target.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {SCHEMA}.book_archive, {SCHEMA}.books")
    logs = [StatementLog(source), StatementLog(target)]
    # warm both pools up, so first-connect statements stay out of the pipeline's spans
    for engine in (source, target):
        with engine.connect() as conn:
            conn.execute(select(sqlalchemy.literal_column("1"))).all()
    traced.clear()
    for log in logs:
        log.clear()

    with traced.tracer.start_as_current_span("archive_loans") as job_span, Session(
        binds={User: source, Book: source, BookHistory: source, book_archive: target}
    ) as session:
        titles = session.execute(
            select(Book.id, Book.title)
            .join(BookHistory, BookHistory.book_id == Book.id)
            .where(BookHistory.returned.is_(None))
        ).all()
        session.execute(insert(book_archive), [{"id": i, "title": t} for i, t in titles])
        session.commit()

    spans = traced.statement_spans()
    assert [s.attributes["db.statement"] for s in spans] == [
        logs[0].statements[0], logs[1].statements[0]
    ]
    assert [len(log.statements) for log in logs] == [1, 1]
    assert [(s.attributes["db.name"], lineage(s)) for s in spans] == [
        ("osl_test", expected("SELECT", "orm", mappers=("models.Book", "models.BookHistory"),
                              read=("book_history", "books"))),
        ("osl_test2", expected("INSERT", "core", collection="book_archive",
                               written=("book_archive",))),
    ]
    run_id = run_id_for(job_span.get_span_context().trace_id,
                        job_span.get_span_context().span_id)
    assert [s.attributes[RUN_ID] for s in spans] == [run_id, run_id]
    (job,) = [s for s in traced.spans() if s.name == "archive_loans"]
    assert job.attributes[RUN_ID] == run_id
    with target.connect() as conn:
        assert conn.execute(select(book_archive.c.title)).scalars().all() == ["Emma"]
    for log in logs:
        log.close()
    source.dispose()
    target.dispose()
