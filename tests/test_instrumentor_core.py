"""Core statements on ``Table`` objects: tables read and written, source ``core``, no mapper.

Unit tier, SQLite; ``inventory`` is an attached database standing in for a schema. The tables
are the ones of tests/models.py; a Core statement names no mapped class even when its table
is mapped (it never went through the ORM).
"""

from __future__ import annotations

import pytest
from instrumentor_support import SQLA_VERSION, expected, lineage
from models import (
    book_archive,
    book_history,
    books,
    members,
    restocks,
    stock_items,
    users,
)
from sqlalchemy import (
    delete,
    except_,
    exists,
    func,
    insert,
    literal_column,
    select,
    union,
    union_all,
    update,
)

# --- single-table DML and SELECT -----------------------------------------------------------


def test_core_insert_reports_written_table_and_core_source(library):
    def action():
        with library.engine.begin() as conn:
            conn.execute(insert(books).values(id=10, title="Walden"))

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", collection="books", written=("books",)),
    ]


def test_core_executemany_insert_is_one_span(library):
    def action():
        with library.engine.begin() as conn:
            conn.execute(insert(books), [{"id": 10, "title": "Walden"},
                                         {"id": 11, "title": "Ulysses"}])

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", collection="books", written=("books",)),
    ]


def test_core_select_reports_read_table(library):
    def action():
        with library.engine.connect() as conn:
            return conn.execute(select(books).where(books.c.title == "Dune")).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", collection="books", read=("books",)),
    ]


def test_core_select_of_columns_with_implicit_from_reads_both_tables(library):
    def action():
        with library.engine.connect() as conn:
            stmt = select(books.c.title).where(books.c.id == book_history.c.book_id)
            return conn.execute(stmt).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", read=("book_history", "books")),
    ]


def test_core_update_reports_written_table_and_not_read(library):
    def action():
        with library.engine.begin() as conn:
            conn.execute(update(books).where(books.c.id == 1).values(title="Dune Messiah"))

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "core", collection="books", written=("books",)),
    ]


def test_core_delete_reports_written_table(library):
    def action():
        with library.engine.begin() as conn:
            conn.execute(delete(book_archive).where(book_archive.c.id > 100))

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("DELETE", "core", collection="book_archive", written=("book_archive",)),
    ]


def test_same_core_statement_twice_is_enriched_both_times(library):
    stmt = select(users.c.name).where(users.c.id == 1)

    def action():
        with library.engine.connect() as conn:
            conn.execute(stmt).all()
            conn.execute(stmt).all()

    spans = library.run(action)

    one = expected("SELECT", "core", collection="users", read=("users",))
    assert [lineage(s) for s in spans] == [one, one]


# --- several tables -----------------------------------------------------------------------


def test_insert_from_select_reports_read_and_written_tables(library):
    stmt = insert(book_archive).from_select(
        ["id", "title"], select(books.c.id, books.c.title).where(books.c.id == 1)
    )

    def action():
        with library.engine.begin() as conn:
            conn.execute(stmt)

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", read=("books",), written=("book_archive",)),
    ]


def test_insert_from_select_with_join_reads_every_joined_table(library):
    source = (
        select(books.c.id, books.c.title)
        .join(book_history, book_history.c.book_id == books.c.id)
        .where(book_history.c.returned.is_(None))
    )
    stmt = insert(book_archive).from_select(["id", "title"], source)

    def action():
        with library.engine.begin() as conn:
            conn.execute(stmt)

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", read=("book_history", "books"), written=("book_archive",)),
    ]


def test_update_with_subquery_in_where_reads_the_subquery_table(library):
    stmt = (
        update(books)
        .where(books.c.id.in_(select(book_history.c.book_id).where(
            book_history.c.returned.is_(None))))
        .values(title="(on loan)")
    )

    def action():
        with library.engine.begin() as conn:
            conn.execute(stmt)

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "core", collection=None, read=("book_history",),
                 written=("books",)),
    ]


def test_update_from_another_table_reads_that_table(library):
    if SQLA_VERSION < (2, 0):
        pytest.skip("SQLAlchemy 1.4's SQLite dialect renders no UPDATE ... FROM "
                    "(PostgreSQL tier covers 1.4)")
    # UPDATE books SET title=? FROM inventory.stock_items WHERE books.id = stock_items.book_id
    stmt = (
        update(books)
        .where(books.c.id == stock_items.c.book_id)
        .where(stock_items.c.quantity > 0)
        .values(title="in stock")
    )

    def action():
        with library.engine.begin() as conn:
            conn.execute(stmt)

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "core", read=("inventory.stock_items",), written=("books",)),
    ]


def test_delete_with_exists_subquery_reads_the_subquery_table(library):
    stmt = delete(book_archive).where(
        exists().where(books.c.id == book_archive.c.id)
    )

    def action():
        with library.engine.begin() as conn:
            conn.execute(stmt)

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("DELETE", "core", read=("books",), written=("book_archive",)),
    ]


def test_cte_select_reads_the_tables_inside_and_outside_the_cte_not_its_name(library):
    popular = (
        select(book_history.c.book_id, func.count().label("loans"))
        .group_by(book_history.c.book_id)
        .cte("popular")
    )
    stmt = select(books.c.title, popular.c.loans).join(popular, popular.c.book_id == books.c.id)

    def action():
        with library.engine.connect() as conn:
            return conn.execute(stmt).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", read=("book_history", "books")),
    ]


def test_insert_from_cte_select_reads_cte_tables_and_writes_target(library):
    on_loan = select(book_history.c.book_id).where(book_history.c.returned.is_(None)).cte("on_loan")
    source = select(books.c.id, books.c.title).where(books.c.id.in_(select(on_loan.c.book_id)))
    stmt = insert(book_archive).from_select(["id", "title"], source)

    def action():
        with library.engine.begin() as conn:
            conn.execute(stmt)

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", read=("book_history", "books"), written=("book_archive",)),
    ]


def test_subquery_in_from_reads_its_table(library):
    loans = (
        select(book_history.c.user_id, func.count().label("n"))
        .group_by(book_history.c.user_id)
        .subquery("loans")
    )
    stmt = select(users.c.name, loans.c.n).join(loans, loans.c.user_id == users.c.id)

    def action():
        with library.engine.connect() as conn:
            return conn.execute(stmt).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", read=("book_history", "users")),
    ]


def test_scalar_subquery_in_columns_reads_its_table(library):
    loans = (
        select(func.count())
        .where(book_history.c.user_id == users.c.id)
        .scalar_subquery()
    )
    stmt = select(users.c.name, loans.label("loans"))

    def action():
        with library.engine.connect() as conn:
            return conn.execute(stmt).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", read=("book_history", "users")),
    ]


def test_union_reads_every_member_table(library):
    stmt = union(select(users.c.name), select(members.c.name))

    def action():
        with library.engine.connect() as conn:
            return conn.execute(stmt).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", read=("members", "users")),
    ]


def test_union_all_of_one_table_with_itself_touches_one_table(library):
    stmt = union_all(select(books.c.title).where(books.c.id == 1),
                     select(books.c.title).where(books.c.id == 2))

    def action():
        with library.engine.connect() as conn:
            return conn.execute(stmt).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", collection="books", read=("books",)),
    ]


def test_except_reads_both_tables(library):
    stmt = except_(select(books.c.id), select(book_archive.c.id))

    def action():
        with library.engine.connect() as conn:
            return conn.execute(stmt).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", read=("book_archive", "books")),
    ]


def test_select_without_table_reports_no_tables(library):
    def action():
        with library.engine.connect() as conn:
            return conn.execute(select(literal_column("1"))).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [expected("SELECT", "core")]


# --- schemas -------------------------------------------------------------------------------


def test_select_of_schema_table_reports_schema_qualified_name(library):
    def action():
        with library.engine.connect() as conn:
            return conn.execute(select(stock_items).where(stock_items.c.quantity > 0)).all()

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", collection="inventory.stock_items",
                 read=("inventory.stock_items",)),
    ]


def test_insert_select_between_schema_tables_reports_both_qualified(library):
    stmt = insert(restocks).from_select(
        ["book_id", "quantity"],
        select(stock_items.c.book_id, stock_items.c.quantity).where(stock_items.c.quantity < 5),
    )

    def action():
        with library.engine.begin() as conn:
            conn.execute(stmt)

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", read=("inventory.stock_items",),
                 written=("inventory.restocks",)),
    ]


def test_update_of_schema_table_reports_schema_qualified_name(library):
    def action():
        with library.engine.begin() as conn:
            conn.execute(update(stock_items).where(stock_items.c.id == 1).values(quantity=2))

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "core", collection="inventory.stock_items",
                 written=("inventory.stock_items",)),
    ]


def test_schema_translate_map_reports_the_schema_the_statement_ran_in(library):
    # book_archive has no schema in the model; the application maps it into inventory
    translate = {None: "inventory"}
    with library.engine.begin() as conn:
        book_archive.create(conn.execution_options(schema_translate_map=translate))

    def action():
        with library.engine.connect() as conn:
            translated = conn.execution_options(schema_translate_map=translate)
            return translated.execute(select(book_archive.c.title)).all()

    spans = library.run(action)

    # the database read inventory.book_archive, so that is the dataset
    assert [lineage(s) for s in spans] == [
        expected("SELECT", "core", collection="inventory.book_archive",
                 read=("inventory.book_archive",)),
    ]


# --- statements that are not ORM flushes ------------------------------------------------------


def test_core_insert_on_a_mapped_table_names_no_mapper(library):
    # books is Book's table, but a Core statement never went through the ORM
    def action():
        with library.engine.begin() as conn:
            conn.execute(insert(books).values(id=12, title="Beloved"))

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", collection="books", written=("books",)),
    ]


def test_core_insert_with_an_application_compiled_cache_stays_core(library):
    # compiled_cache is a public execution option; using one does not make a statement ORM
    def action():
        with library.engine.begin() as conn:
            cached = conn.execution_options(compiled_cache={})
            cached.execute(insert(books).values(id=13, title="Emma II"))

    spans = library.run(action)

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "core", collection="books", written=("books",)),
    ]


# --- DDL -----------------------------------------------------------------------------------


def test_create_and_drop_table_report_operation_and_table_without_failure(library, caplog):
    def action():
        with library.engine.begin() as conn:
            book_archive.drop(conn)
            book_archive.create(conn)

    with caplog.at_level("WARNING", logger="otel_sqla_lineage"):
        spans = library.run(action)

    ddl = [s for s in spans if lineage(s).get("db.operation.name") in ("DROP TABLE",
                                                                       "CREATE TABLE")]
    assert [(lineage(s)["db.operation.name"], lineage(s).get("db.collection.name"))
            for s in ddl] == [("DROP TABLE", "book_archive"), ("CREATE TABLE", "book_archive")]
    assert [r.getMessage() for r in caplog.records] == []
