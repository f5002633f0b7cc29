"""Bad input gives a best-effort event and a log line, never an exception: SQL the parser
cannot read (end to end through SQLAlchemy, and from another language's spans with an
unknown database system), and one regression test per bug the fuzzers (test_fuzz.py)
found."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import Lineage
from olspec import validate_event
from spanfactory import RESOURCE, T0, TRACE, app_span, sqlite_statement

from otel_sqla_lineage.assemble import RunAssembler
from otel_sqla_lineage.convert import Converter
from otel_sqla_lineage.spans import SpanView
from otel_sqla_lineage.sqltext import parse_sql


def test_sql_the_parser_cannot_read_still_gives_the_run_without_that_dataset(
    lineage: Lineage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'odd.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT)")
        conn.exec_driver_sql("CREATE INDEX ix_books_title ON books (title)")
        conn.exec_driver_sql("CREATE TABLE loans (book_id INTEGER)")
    with lineage.tracer.start_as_current_span("odd_report"), engine.begin() as conn:
        # SQLite runs it; openlineage-sql does not know INDEXED BY
        rows = conn.execute(sa.text(
            "SELECT id FROM books INDEXED BY ix_books_title WHERE title > ''")).all()
        conn.execute(sa.text("INSERT INTO loans (book_id) VALUES (:id)"), {"id": 1})
    assert rows == []
    runs = lineage.runs()["library.odd_report"]
    assert [e["eventType"] for e in runs] == ["START", "COMPLETE"]
    complete = runs[1]
    assert complete["inputs"] == []  # books: not readable from that SQL
    assert [d["name"] for d in complete["outputs"]] == ["loans"]
    assert "INDEXED BY" in complete["job"]["facets"]["sql"]["query"]
    for event in runs:
        validate_event(event)
    unreadable = [r.getMessage() for r in caplog.records
                  if "cannot read" in r.getMessage()]
    assert len(unreadable) == 1, caplog.text  # once per statement text
    assert "INDEXED BY ix_books_title" in unreadable[0]
    assert "its tables are not reported" in unreadable[0]
    # the statement span still says what it did
    odd = [s for s in lineage.traced.statement_spans()
           if "INDEXED BY" in str((s.attributes or {}).get("db.statement"))]
    assert odd and (odd[0].attributes or {}).get("db.operation.name") == "SELECT"


def _semconv_statement(span_id: int, sql: str, system: str) -> SpanView:
    return SpanView(
        trace_id=TRACE, span_id=span_id, parent_span_id=None, name="query",
        start_ns=T0, end_ns=T0 + 1000, resource=RESOURCE, kind="CLIENT",
        attributes={"db.system": system, "db.query.text": sql, "server.address": "db.example",
                    "server.port": 7777, "db.namespace": "shop"})


def test_unknown_database_system_parses_as_generic_sql_and_bad_sql_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    assembler = RunAssembler(Converter(), clock=lambda: 0.0)
    good = assembler.add(_semconv_statement(0x11, "INSERT INTO orders SELECT * FROM carts",
                                            "exotic-db"))
    bad = assembler.add(_semconv_statement(0x12, "FROB orders WITH ZAP 3", "exotic-db"))
    assert [(d["namespace"], d["name"]) for d in good[1]["outputs"]] == [
        ("exotic-db://db.example:7777", "shop.orders")]
    assert [d["name"] for d in good[1]["inputs"]] == ["shop.carts"]
    assert [e["eventType"] for e in bad] == ["START", "COMPLETE"]
    assert bad[1]["inputs"] == [] and bad[1]["outputs"] == []
    assert bad[1]["job"]["facets"]["sql"]["query"] == "FROB orders WITH ZAP 3"
    for event in good + bad:
        validate_event(event)
    assert "cannot read 'FROB orders WITH ZAP 3'" in caplog.text


# -- regressions found by tests/test_fuzz.py ------------------------------------------------


def test_a_list_valued_location_attribute_gives_events_not_an_exception() -> None:
    """Found by the assembler fuzzer: ``db.system`` = [] made the location cache raise
    ``TypeError: unhashable type: 'list'`` (the span was lost, counted as a failure)."""
    span = sqlite_statement(0x21, None, sql="SELECT * FROM books", operation="SELECT",
                            read=("books",), extra={"db.system": [], "server.port": ["x"]})
    events = RunAssembler(Converter(), clock=lambda: 0.0).add(span)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        validate_event(event)


@pytest.mark.parametrize("port", [float("inf"), float("-inf"), float("nan"), 1e400])
def test_a_port_that_is_not_a_finite_number_gives_events_not_an_exception(port: float) -> None:
    """Found by the assembler fuzzer: ``server.port`` = inf made ``int()`` raise
    ``OverflowError`` in the location look-up (the span was lost)."""
    span = sqlite_statement(0x22, None, sql="SELECT * FROM books", operation="SELECT",
                            read=("books",), extra={"server.port": port})
    events = RunAssembler(Converter(), clock=lambda: 0.0).add(span)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[1]["inputs"], "the dataset read is still reported"
    for event in events:
        validate_event(event)


def test_a_statement_attribute_that_is_not_a_string_is_not_parsed_as_sql(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Found by the fuzzers: a tuple or bytes under ``db.statement`` was turned into its
    Python repr, parsed, logged as unreadable SQL and put in the ``sql`` facet."""
    caplog.set_level(logging.WARNING)
    span = SpanView(trace_id=TRACE, span_id=0x22, parent_span_id=None, name="q",
                    start_ns=T0, end_ns=T0 + 1, resource=RESOURCE,
                    attributes={"db.system": "postgresql", "db.statement": ("a", b"b"),
                                "db.query.text": 42})
    events = RunAssembler(Converter(), clock=lambda: 0.0).add(span)
    assert events == []  # a database span without a statement: not a run
    assert caplog.text == ""


def test_a_parser_failure_is_logged_on_one_line(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the fuzzers: with ``RUST_BACKTRACE`` set, openlineage-sql's exception
    carries a Rust stack backtrace, which went into our warning line by line."""
    monkeypatch.setenv("RUST_BACKTRACE", "1")
    caplog.set_level(logging.WARNING)
    parsed = parse_sql("-- nothing but a comment, for the regression test", "postgresql")
    assert parsed.error is not None and "\n" not in parsed.error
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "\n" not in messages[0], messages
    assert "Stack backtrace" not in caplog.text


def test_spans_that_are_their_own_ancestors_and_duplicates_still_drain() -> None:
    """Parent-id cycles and duplicate spans (which the OTLP decoder cannot rule out across
    requests) end in events on drain, not a loop."""
    assembler = RunAssembler(Converter(), clock=lambda: 0.0)
    spans = [
        sqlite_statement(0x31, 0x32, sql="SELECT * FROM books", operation="SELECT",
                         read=("books",)),
        app_span(0x32, "a", parent=0x33),
        app_span(0x33, "b", parent=0x32),
        app_span(0x32, "a", parent=0x33),
        sqlite_statement(0x31, 0x32, sql="SELECT * FROM books", operation="SELECT",
                         read=("books",)),
    ]
    events = [e for span in spans for e in assembler.add(span)] + assembler.drain()
    assert assembler.held == 0
    assert events and all(e["eventType"] in ("START", "COMPLETE") for e in events)
    for event in events:
        validate_event(event)
