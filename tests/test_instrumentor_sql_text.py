"""SQL text SQLAlchemy never modelled (``text()``, ``exec_driver_sql``): tables come from
openlineage-sql, source ``sql``, and each SQL string is parsed once.

Unit tier, SQLite. Table names in the expectations are the ones written in the SQL.
"""

from __future__ import annotations

import logging

import pytest
from instrumentor_support import MAPPERS, TABLES_READ, TABLES_WRITTEN, expected, lineage
from sqlalchemy import text

from otel_sqla_lineage import sqltext


def _run_text(library, sql, params=None):
    def action():
        with library.engine.begin() as conn:
            result = conn.execute(text(sql), params or {})
            return result.all() if result.returns_rows else None

    return library.run(action)


def _run_driver_sql(library, sql, params=None):
    def action():
        with library.engine.begin() as conn:
            result = conn.exec_driver_sql(sql, params) if params else conn.exec_driver_sql(sql)
            return result.all() if result.returns_rows else None

    return library.run(action)


def test_text_select_reports_read_table_and_sql_source(library):
    spans = _run_text(library, "SELECT name FROM users WHERE id = :id", {"id": 1})

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "sql", collection="users", read=("users",)),
    ]


def test_text_in_a_session_reports_no_mapper(library):
    session = library.session()

    spans = library.run(lambda: session.execute(text("SELECT title FROM books")).all())

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "sql", collection="books", read=("books",)),
    ]


def test_text_join_reports_every_table(library):
    spans = _run_text(
        library,
        "SELECT u.name, b.title FROM users AS u "
        "JOIN book_history AS h ON h.user_id = u.id JOIN books AS b ON b.id = h.book_id",
    )

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "sql", read=("book_history", "books", "users")),
    ]


def test_text_insert_select_reports_read_and_written(library):
    spans = _run_text(
        library, "INSERT INTO book_archive (id, title) SELECT id, title FROM books"
    )

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "sql", read=("books",), written=("book_archive",)),
    ]


def test_text_update_with_subquery_reports_read_and_written(library):
    spans = _run_text(
        library,
        "UPDATE books SET title = upper(title) "
        "WHERE id IN (SELECT book_id FROM book_history WHERE returned IS NULL)",
    )

    assert [lineage(s) for s in spans] == [
        expected("UPDATE", "sql", read=("book_history",), written=("books",)),
    ]


def test_text_delete_reports_written_table(library):
    spans = _run_text(library, "DELETE FROM posts WHERE user_id = :uid", {"uid": 2})

    assert [lineage(s) for s in spans] == [
        expected("DELETE", "sql", collection="posts", written=("posts",)),
    ]


def test_text_with_cte_reports_tables_not_the_cte_name(library):
    spans = _run_text(
        library,
        "WITH on_loan AS (SELECT book_id FROM book_history WHERE returned IS NULL) "
        "SELECT title FROM books JOIN on_loan ON on_loan.book_id = books.id",
    )

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "sql", read=("book_history", "books")),
    ]


def test_text_with_cte_feeding_an_insert_is_an_insert(library):
    spans = _run_text(
        library,
        "WITH on_loan AS (SELECT book_id FROM book_history WHERE returned IS NULL) "
        "INSERT INTO book_archive (id, title) "
        "SELECT id, title FROM books WHERE id IN (SELECT book_id FROM on_loan)",
    )

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "sql", read=("book_history", "books"), written=("book_archive",)),
    ]


def test_text_on_schema_table_reports_schema_qualified_name(library):
    spans = _run_text(library, "SELECT quantity FROM inventory.stock_items WHERE book_id = 1")

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "sql", collection="inventory.stock_items",
                 read=("inventory.stock_items",)),
    ]


def test_text_without_tables_reports_operation_only(library):
    spans = _run_text(library, "SELECT 1")

    assert [lineage(s) for s in spans] == [expected("SELECT", "sql")]


def test_exec_driver_sql_insert_reports_written_table(library):
    spans = _run_driver_sql(
        library, "INSERT INTO books (id, title) VALUES (?, ?)", (20, "Middlemarch")
    )

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "sql", collection="books", written=("books",)),
    ]


def test_exec_driver_sql_insert_select_between_schemas(library):
    spans = _run_driver_sql(
        library,
        "INSERT INTO inventory.restocks (book_id, quantity) "
        "SELECT book_id, 10 FROM inventory.stock_items WHERE quantity < 5",
    )

    assert [lineage(s) for s in spans] == [
        expected("INSERT", "sql", read=("inventory.stock_items",),
                 written=("inventory.restocks",)),
    ]


def test_exec_driver_sql_create_table_reports_two_word_operation(library):
    spans = _run_driver_sql(library, "CREATE TABLE book_copy (id INTEGER PRIMARY KEY)")

    assert [lineage(s) for s in spans] == [
        expected("CREATE TABLE", "sql", collection="book_copy", written=("book_copy",)),
    ]


def test_exec_driver_sql_select_reports_read_table(library):
    spans = _run_driver_sql(library, "SELECT title FROM books WHERE id = ?", (1,))

    assert [lineage(s) for s in spans] == [
        expected("SELECT", "sql", collection="books", read=("books",)),
    ]


# --- the parse cache ---------------------------------------------------------------------


@pytest.fixture
def parse_calls(monkeypatch):
    """Every SQL list handed to openlineage-sql while the test runs."""
    calls: list[list[str]] = []
    real_parse = sqltext.openlineage_sql.parse

    def spy(sql, *args, **kwargs):
        calls.append(list(sql))
        return real_parse(sql, *args, **kwargs)

    monkeypatch.setattr(sqltext.openlineage_sql, "parse", spy)
    return calls


def test_exec_driver_sql_parses_the_same_sql_once(library, parse_calls):
    sql = "SELECT title AS parse_once_driver FROM books WHERE id = ?"

    def action():
        with library.engine.connect() as conn:
            conn.exec_driver_sql(sql, (1,)).all()
            conn.exec_driver_sql(sql, (2,)).all()

    spans = library.run(action)

    assert [call for call in parse_calls if sql in call] == [[sql]]
    one = expected("SELECT", "sql", collection="books", read=("books",))
    assert [lineage(s) for s in spans] == [one, one]


def test_text_parses_the_same_sql_once(library, parse_calls):
    sql = "SELECT name AS parse_once_text FROM users WHERE id = :id"

    def action():
        with library.engine.connect() as conn:
            conn.execute(text(sql), {"id": 1}).all()
            conn.execute(text(sql), {"id": 2}).all()

    spans = library.run(action)

    compiled = "SELECT name AS parse_once_text FROM users WHERE id = ?"
    assert [call for call in parse_calls if compiled in call] == [[compiled]]
    one = expected("SELECT", "sql", collection="users", read=("users",))
    assert [lineage(s) for s in spans] == [one, one]


def test_different_sql_strings_are_parsed_separately(library, parse_calls):
    first = "SELECT title AS parse_twice_a FROM books"
    second = "SELECT title AS parse_twice_b FROM book_archive"

    def action():
        with library.engine.connect() as conn:
            conn.exec_driver_sql(first).all()
            conn.exec_driver_sql(second).all()

    spans = library.run(action)

    assert [c for c in parse_calls if first in c or second in c] == [[first], [second]]
    assert [lineage(s) for s in spans] == [
        expected("SELECT", "sql", collection="books", read=("books",)),
        expected("SELECT", "sql", collection="book_archive", read=("book_archive",)),
    ]


# --- SQL the parser cannot read -------------------------------------------------------------


def test_sql_the_parser_rejects_still_runs_with_one_span_and_one_warning(library, caplog):
    # valid SQLite (NOT INDEXED), which openlineage-sql does not understand
    sql = "SELECT title FROM books NOT INDEXED WHERE id = 1"

    def action():
        with library.engine.connect() as conn:
            return [conn.exec_driver_sql(sql).all() for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="otel_sqla_lineage"):
        rows = []
        spans = library.run(lambda: rows.extend(action()))

    assert rows == [[("Dune",)]] * 3
    assert len(spans) == 3
    for span in spans:
        attrs = lineage(span)
        assert TABLES_READ not in attrs
        assert TABLES_WRITTEN not in attrs
        assert MAPPERS not in attrs
    ours = [r for r in caplog.records if r.name.startswith("otel_sqla_lineage")]
    assert len(ours) == 1
    assert "NOT INDEXED" in ours[0].getMessage()
