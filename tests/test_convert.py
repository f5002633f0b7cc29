"""The pure converter and run assembly: spans in, events out (no SQLAlchemy, no I/O)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from spanfactory import (
    TRACE,
    app_span,
    expected_run_id,
    sqlite_statement,
)

from otel_sqla_lineage.assemble import RunAssembler
from otel_sqla_lineage.convert import Converter
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spans import SpanEventView, SpanView

SQLITE_NS = "sqlite://apphost/srv/library.db"


def assemble(spans: list[Any], **settings: Any) -> list[dict[str, Any]]:
    assembler = RunAssembler(Converter(LineageSettings(**settings)))
    events: list[dict[str, Any]] = []
    for span in spans:
        events.extend(assembler.add(span))
    events.extend(assembler.drain())
    return events


def names(datasets: list[dict[str, Any]]) -> list[str]:
    return [d["name"] for d in datasets]


def checkout_spans(job_status: str = "UNSET") -> list[Any]:
    return [
        sqlite_statement(0x11, 0x10, sql="SELECT users.id FROM users WHERE users.email = ?",
                         operation="SELECT", read=("users",), start=1, end=2),
        sqlite_statement(0x12, 0x10, sql="UPDATE books SET copies_available=? WHERE books.id = ?",
                         operation="UPDATE", written=("books",), start=3, end=4,
                         extra={"db.sqlalchemy.rowcount": 1}),
        sqlite_statement(0x13, 0x10,
                         sql="INSERT INTO book_history (book_id, user_id) VALUES (?, ?)",
                         operation="INSERT", written=("book_history",), start=5, end=6,
                         extra={"db.sqlalchemy.rowcount": 1}),
        app_span(0x10, "checkout_book", start=0, end=10, status=job_status,
                 message="BookUnavailable: no copy" if job_status == "ERROR" else None),
    ]


def test_job_run_has_start_then_complete_with_one_run_id_and_its_datasets() -> None:
    events = assemble(checkout_spans())
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    run_id = expected_run_id(TRACE, 0x10)
    assert {e["run"]["runId"] for e in events} == {run_id}
    start, complete = events
    assert start["eventTime"] == "2026-01-01T00:00:00+00:00"
    assert complete["eventTime"] == "2026-01-01T00:00:00.010000+00:00"
    assert complete["job"]["namespace"] == "library"
    assert complete["job"]["name"] == "library.checkout_book"
    assert names(complete["inputs"]) == ["users"]
    assert names(complete["outputs"]) == ["book_history", "books"]
    assert {d["namespace"] for d in complete["inputs"] + complete["outputs"]} == {SQLITE_NS}
    stats = {o["name"]: o["outputFacets"].get("outputStatistics", {}).get("rowCount")
             for o in complete["outputs"]}
    assert stats == {"book_history": 1, "books": 1}
    assert all(o["outputFacets"] == {} for o in start["outputs"])
    job_type = complete["job"]["facets"]["jobType"]
    assert (job_type["processingType"], job_type["integration"], job_type["jobType"]) == (
        "BATCH", "SQLALCHEMY", "TASK")
    sql = complete["job"]["facets"]["sql"]
    assert sql["dialect"] == "sqlite"
    assert "INSERT INTO book_history" in sql["query"]
    otel = complete["run"]["facets"]["opentelemetry"]
    assert otel["traceId"] == f"{TRACE:032x}"
    assert otel["spanId"] == "0000000000000010"
    assert otel["serviceName"] == "library"
    assert "parentSpanId" not in otel
    assert "parent" not in complete["run"]["facets"]


def test_failed_job_span_gives_fail_with_its_error_message() -> None:
    events = assemble(checkout_spans(job_status="ERROR"))
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    error = events[1]["run"]["facets"]["errorMessage"]
    assert error["message"] == "BookUnavailable: no copy"
    assert error["programmingLanguage"] == "python"
    assert "errorMessage" not in events[0]["run"]["facets"]


def test_error_caught_inside_the_job_does_not_fail_it_and_the_failed_statement_adds_no_output(
) -> None:
    spans = [
        sqlite_statement(0x21, 0x20, sql="INSERT INTO users (email) VALUES (?)",
                         operation="INSERT", written=("users",), status="ERROR"),
        sqlite_statement(0x22, 0x20, sql="SELECT books.id FROM books", operation="SELECT",
                         read=("books",)),
        app_span(0x20, "register_or_browse"),
    ]
    events = assemble(spans)
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert names(events[1]["outputs"]) == []
    assert names(events[1]["inputs"]) == ["books"]


def test_statement_granularity_gives_one_run_per_statement_with_the_enclosing_run_as_parent(
) -> None:
    events = assemble(checkout_spans(), granularity="statement")
    by_job: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_job.setdefault(e["job"]["name"], []).append(e)
    assert sorted(by_job) == [
        "library.INSERT book_history",
        "library.SELECT users",
        "library.UPDATE books",
        "library.checkout_book",
    ]
    enclosing_id = expected_run_id(TRACE, 0x10)
    assert {e["run"]["runId"] for e in by_job["library.checkout_book"]} == {enclosing_id}
    assert by_job["library.checkout_book"][1]["outputs"] == []
    insert = by_job["library.INSERT book_history"]
    assert [e["eventType"] for e in insert] == ["START", "COMPLETE"]
    assert {e["run"]["runId"] for e in insert} == {expected_run_id(TRACE, 0x13)}
    parent = insert[1]["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == enclosing_id
    assert (parent["job"]["namespace"], parent["job"]["name"]) == (
        "library", "library.checkout_book")
    assert parent["root"]["run"]["runId"] == enclosing_id
    assert insert[1]["job"]["facets"]["jobType"]["jobType"] == "QUERY"
    assert names(insert[1]["outputs"]) == ["book_history"]
    assert insert[1]["job"]["facets"]["sql"]["query"] == (
        "INSERT INTO book_history (book_id, user_id) VALUES (?, ?)")


def test_nested_runs_name_their_parent_and_root_runs() -> None:
    spans = [
        sqlite_statement(0x31, 0x30, sql="SELECT * FROM books", operation="SELECT",
                         read=("books",)),
        app_span(0x30, "load_books", parent=0x2F, start=1, end=5),
        app_span(0x2F, "between", parent=0x2E, start=1, end=6),  # not a run: no statements
        sqlite_statement(0x32, 0x2E, sql="INSERT INTO report VALUES (?)", operation="INSERT",
                         written=("report",), start=7, end=8),
        app_span(0x2E, "nightly", start=0, end=10),
    ]
    events = assemble(spans)
    by_job = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    assert sorted(by_job) == ["library.load_books", "library.nightly"]
    child = by_job["library.load_books"]["run"]["facets"]["parent"]
    assert child["run"]["runId"] == expected_run_id(TRACE, 0x2E)
    assert (child["job"]["namespace"], child["job"]["name"]) == ("library", "library.nightly")
    assert child["root"]["run"]["runId"] == expected_run_id(TRACE, 0x2E)
    assert "parent" not in by_job["library.nightly"]["run"]["facets"]


def test_run_with_a_parent_in_another_process_names_that_span_s_run() -> None:
    remote_parent_span = 0x0BADC0FFEE
    spans = [
        sqlite_statement(0x41, 0x40, sql="SELECT * FROM books", operation="SELECT",
                         read=("books",)),
        app_span(0x40, "GET /books", parent=remote_parent_span, remote_parent=True),
    ]
    complete = assemble(spans)[1]
    parent = complete["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == expected_run_id(TRACE, remote_parent_span)
    assert parent["job"]["name"] == "remote-parent"
    assert complete["run"]["facets"]["opentelemetry"]["parentSpanId"] == "0000000badc0ffee"


def test_statement_without_local_enclosing_span_is_a_run_of_its_own() -> None:
    span = sqlite_statement(0x51, None, sql="DELETE FROM posts WHERE posts.id = ?",
                            operation="DELETE", written=("posts",))
    events = assemble([span])
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert events[0]["job"]["name"] == "library.DELETE posts"
    assert events[0]["run"]["runId"] == expected_run_id(TRACE, 0x51)
    assert events[1]["job"]["facets"]["jobType"]["jobType"] == "QUERY"


def test_statements_held_too_long_are_emitted_on_their_own() -> None:
    now = [0.0]
    assembler = RunAssembler(
        Converter(LineageSettings(buffer_timeout_seconds=5)), clock=lambda: now[0]
    )
    first = assembler.add(sqlite_statement(0x61, 0x60, sql="SELECT * FROM books",
                                           operation="SELECT", read=("books",)))
    assert first == []
    assert assembler.held == 1
    now[0] = 6.0
    expired = assembler.expire()
    assert [e["job"]["name"] for e in expired] == ["library.SELECT books"] * 2
    assert assembler.held == 0
    assert assembler.stats.expired == 1
    # the enclosing span arriving late is not a run any more: nothing to emit
    assert assembler.add(app_span(0x60, "slow_job")) == []


def test_buffer_bound_evicts_the_oldest_held_statements() -> None:
    assembler = RunAssembler(Converter(LineageSettings(buffer_max_spans=3)))
    out: list[dict[str, Any]] = []
    for i in range(5):
        out += assembler.add(sqlite_statement(0x100 + i, 0x200 + i, sql="SELECT * FROM books",
                                              operation="SELECT", read=("books",)))
    assert assembler.held == 3
    assert assembler.stats.evicted == 2
    assert {e["run"]["runId"] for e in out} == {
        expected_run_id(TRACE, 0x100), expected_run_id(TRACE, 0x101)}


def test_schema_attribute_becomes_the_schema_facet_of_later_runs_too() -> None:
    schema = '{"books":[["id","INTEGER"],["title","VARCHAR(200)"]]}'
    spans = [
        sqlite_statement(0x71, 0x70, sql="SELECT * FROM books", operation="SELECT",
                         read=("books",), extra={"db.sqlalchemy.schema": schema}),
        app_span(0x70, "first"),
        sqlite_statement(0x73, 0x72, sql="SELECT * FROM books", operation="SELECT",
                         read=("books",)),
        app_span(0x72, "second"),
    ]
    completes = [e for e in assemble(spans) if e["eventType"] == "COMPLETE"]
    for complete in completes:
        fields = complete["inputs"][0]["facets"]["schema"]["fields"]
        assert fields == [
            {"fields": [], "name": "id", "type": "INTEGER"},
            {"fields": [], "name": "title", "type": "VARCHAR(200)"},
        ]
        assert complete["inputs"][0]["facets"]["dataSource"]["uri"] == SQLITE_NS


def test_column_lineage_attribute_becomes_the_column_lineage_facet() -> None:
    lineage = '{"summary":{"n":[["book_history","id"]],"user_id":[["users","id"]]}}'
    spans = [
        sqlite_statement(0x81, 0x80, sql="INSERT INTO summary (user_id, n) SELECT ...",
                         operation="INSERT", read=("book_history", "users"),
                         written=("summary",),
                         extra={"db.sqlalchemy.column_lineage": lineage}),
        app_span(0x80, "summarise"),
    ]
    complete = assemble(spans)[1]
    facet = complete["outputs"][0]["facets"]["columnLineage"]
    assert facet["fields"] == {
        "n": {"inputFields": [{"field": "id", "name": "book_history", "namespace": SQLITE_NS,
                               "transformations": []}]},
        "user_id": {"inputFields": [{"field": "id", "name": "users", "namespace": SQLITE_NS,
                                     "transformations": []}]},
    }


def test_trace_url_is_set_when_a_jaeger_ui_is_configured() -> None:
    events = assemble(checkout_spans(), trace_ui_url="http://127.0.0.1:16686")
    assert events[1]["run"]["facets"]["opentelemetry"]["traceUrl"] == (
        f"http://127.0.0.1:16686/trace/{TRACE:032x}")


def unsampled(spans: list[Any]) -> list[Any]:
    """The same spans as recorded for lineage only (LineageSampler): trace flag unsampled."""
    return [dataclasses.replace(span, sampled=False) for span in spans]


def test_runs_of_sampled_out_traces_keep_their_run_ids_and_say_they_were_not_sampled() -> None:
    sampled = assemble(checkout_spans(), trace_ui_url="http://127.0.0.1:16686")
    events = assemble(unsampled(checkout_spans()), trace_ui_url="http://127.0.0.1:16686")
    assert [e["run"]["runId"] for e in events] == [e["run"]["runId"] for e in sampled]
    for event in events:
        otel = event["run"]["facets"]["opentelemetry"]
        assert otel["sampled"] is False
        assert "traceUrl" not in otel  # no tracing backend has this trace
    assert "sampled" not in sampled[1]["run"]["facets"]["opentelemetry"]
    assert names(events[1]["outputs"]) == names(sampled[1]["outputs"])


def test_error_message_loses_bound_parameters_and_postgres_detail() -> None:
    message = (
        '(psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint '
        '"users_email_key"\nDETAIL:  Key (email)=(ada@example.org) already exists.\n\n'
        "[SQL: INSERT INTO users (name, email) VALUES (%(name)s, %(email)s)]\n"
        "[parameters: {'name': 'Ada again', 'email': 'ada@example.org'}]\n"
        "(Background on this error at: https://sqlalche.me/e/20/gkpj)"
    )
    stack = "Traceback ...\nsqlalchemy.exc.IntegrityError: " + message
    spans = [
        sqlite_statement(0x91, 0x90, sql="INSERT INTO users (name, email) VALUES (?, ?)",
                         operation="INSERT", written=("users",), status="ERROR"),
        app_span(0x90, "register_user", status="ERROR", message="IntegrityError: " + message,
                 events=(SpanEventView("exception", 0, {"exception.stacktrace": stack}),)),
    ]
    fail = assemble(spans)[1]
    error = fail["run"]["facets"]["errorMessage"]
    assert 'duplicate key value violates unique constraint "users_email_key"' in error["message"]
    assert "INSERT INTO users" in error["message"]
    for text in (error["message"], error["stackTrace"]):
        assert "ada@example.org" not in text
        assert "Ada again" not in text
    assert fail["outputs"] == []


@pytest.mark.parametrize("granularity", ["job", "statement"])
def test_same_spans_give_the_same_events_twice(granularity: str) -> None:
    assert assemble(checkout_spans(), granularity=granularity) == assemble(
        checkout_spans(), granularity=granularity)


def _with_attributes(span: SpanView, **extra: str) -> SpanView:
    span.attributes = {**span.attributes, **extra}
    return span


def test_run_names_the_parent_run_declared_on_its_span() -> None:
    # what examples/airflow_dag's operator sets from the OpenLineage provider's macros
    task_run = "01a1fce8-7d93-75fc-9718-7e9b97f5d897"
    dag_run = "01a1fce8-7d93-79fc-b9ce-053c86b515a5"
    task = _with_attributes(
        app_span(0x60, "library_summary.count_loans"),
        **{"openlineage.parent.id": f"airflow://prod/library_summary.count_loans/{task_run}",
           "openlineage.root_parent.id": f"airflow://prod/library_summary/{dag_run}"},
    )
    spans = [sqlite_statement(0x61, 0x60, sql="SELECT * FROM loans", operation="SELECT",
                              read=("loans",)), task]
    start, complete = assemble(spans)
    for event in (start, complete):
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == task_run
        assert parent["job"] == {"facets": {}, "namespace": "airflow://prod",
                                 "name": "library_summary.count_loans"}
        assert parent["root"]["run"]["runId"] == dag_run
        assert parent["root"]["job"]["name"] == "library_summary"


def test_a_run_of_the_same_trace_is_a_closer_parent_than_a_declared_one() -> None:
    inner = _with_attributes(
        app_span(0x71, "inner", parent=0x70, start=1, end=5),
        **{"openlineage.parent.id": "ns/elsewhere/01a1fce8-7d93-75fc-9718-7e9b97f5d897"},
    )
    spans = [
        sqlite_statement(0x72, 0x71, sql="SELECT * FROM books", operation="SELECT",
                         read=("books",)),
        inner,
        sqlite_statement(0x73, 0x70, sql="SELECT * FROM loans", operation="SELECT",
                         read=("loans",), start=6, end=7),
        app_span(0x70, "outer", start=0, end=10),
    ]
    by_job = {e["job"]["name"]: e for e in assemble(spans) if e["eventType"] == "COMPLETE"}
    parent = by_job["library.inner"]["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == expected_run_id(TRACE, 0x70)


def test_a_malformed_declared_parent_is_ignored() -> None:
    task = _with_attributes(app_span(0x80, "task"), **{"openlineage.parent.id": "no-run-id"})
    spans = [sqlite_statement(0x81, 0x80, sql="SELECT * FROM loans", operation="SELECT",
                              read=("loans",)), task]
    assert all("parent" not in e["run"]["facets"] for e in assemble(spans))
