"""The exporter on real SQLAlchemy statements (SQLite): what a user finds in the events,
and that the spans and the events name the same runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Lineage
from olspec import validate_event
from spanfactory import expected_run_id

from otel_sqla_lineage.demo.app import BookUnavailable, Library


@pytest.fixture
def library(lineage: Lineage, tmp_path: Path) -> Library:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'library.db'}")
    lib = Library(engine, lineage.tracer)
    lib.setup()
    lib.seed()
    return lib


def complete_of(runs: dict[str, list[dict[str, Any]]], job: str) -> dict[str, Any]:
    events = runs[job]
    assert [e["eventType"] for e in events][-2:] in (["START", "COMPLETE"], ["START", "FAIL"])
    return events[-1]


def names(datasets: list[dict[str, Any]]) -> list[str]:
    return [d["name"] for d in datasets]


def test_each_named_span_is_a_job_with_its_reads_and_writes(
    lineage: Lineage, library: Library, tmp_path: Path
) -> None:
    library.checkout_book("ada@example.org", "Dune")
    library.reading_report()
    runs = lineage.runs()
    checkout = complete_of(runs, "library.checkout_book")
    assert checkout["eventType"] == "COMPLETE"
    assert names(checkout["inputs"]) == ["books", "users"]
    assert names(checkout["outputs"]) == ["book_history", "books"]
    namespace = checkout["inputs"][0]["namespace"]
    assert namespace.startswith("sqlite://") and namespace.endswith(str(tmp_path / "library.db"))
    report = complete_of(runs, "library.reading_report")
    assert names(report["inputs"]) == ["book_history", "posts", "users"]
    assert report["outputs"] == []
    seed = complete_of(runs, "library.seed_catalog")
    assert names(seed["outputs"]) == ["books", "users"]
    rows = {o["name"]: o["outputFacets"]["outputStatistics"]["rowCount"]
            for o in checkout["outputs"]}
    assert rows == {"books": 1, "book_history": 1}
    # SQLAlchemy 2's multi-row INSERT ... RETURNING on sqlite3 has no count before its
    # rows are fetched: no statistic, rather than a wrong 0; 1.4's executemany counts
    seed_rows = [o["outputFacets"].get("outputStatistics", {}).get("rowCount")
                 for o in seed["outputs"]]
    assert seed_rows == ([3, 2] if sa.__version__.startswith("1.4") else [None, None])


def test_schema_facet_carries_columns_and_sql_types_from_the_models(
    lineage: Lineage, library: Library
) -> None:
    library.book_inventory()
    inventory = complete_of(lineage.runs(), "library.book_inventory")
    fields = inventory["inputs"][0]["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [
        ("id", "INTEGER"),
        ("title", "VARCHAR(200)"),
        ("author", "VARCHAR(120)"),
        ("copies_available", "INTEGER"),
    ]


def test_spans_and_events_name_the_same_run(lineage: Lineage, library: Library) -> None:
    lineage.traced.clear()
    library.checkout_book("ada@example.org", "Dune")
    spans = lineage.traced.spans()
    job_span = next(s for s in spans if s.name == "checkout_book")
    run_id = expected_run_id(job_span.context.trace_id, job_span.context.span_id)
    assert job_span.attributes["openlineage.run.id"] == run_id
    statement_spans = lineage.traced.statement_spans()
    assert statement_spans
    assert {s.attributes["openlineage.run.id"] for s in statement_spans} == {run_id}
    events = lineage.runs()["library.checkout_book"]
    assert {e["run"]["runId"] for e in events} == {run_id}
    assert events[-1]["run"]["facets"]["opentelemetry"]["spanId"] == (
        f"{job_span.context.span_id:016x}")


def test_exception_leaving_the_job_span_gives_fail_with_its_message(
    lineage: Lineage, library: Library
) -> None:
    library.checkout_book("grace@example.org", "Solaris")
    with pytest.raises(BookUnavailable):
        library.checkout_book("ada@example.org", "Solaris")
    checkouts = lineage.runs()["library.checkout_book"]
    assert [e["eventType"] for e in checkouts] == ["START", "COMPLETE", "START", "FAIL"]
    failed = checkouts[-1]
    assert failed["run"]["runId"] == checkouts[-2]["run"]["runId"]
    message = failed["run"]["facets"]["errorMessage"]["message"]
    assert message == "BookUnavailable: no copy of 'Solaris' is available"
    assert "BookUnavailable" in failed["run"]["facets"]["errorMessage"]["stackTrace"]
    assert failed["outputs"] == []  # nothing was written before the error


def test_statement_granularity_emits_query_runs_under_their_job(tmp_path: Path) -> None:
    from conftest import make_lineage

    from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor

    result = make_lineage(tmp_path, granularity="statement")
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=result.traced.provider, granularity="statement")
    try:
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'lib.db'}")
        lib = Library(engine, result.tracer)
        lib.setup()
        lib.seed()
        result.traced.clear()
        lib.book_inventory()
        runs = result.runs()
        select = runs["library.SELECT books"]
        inventory = runs["library.book_inventory"]
        assert select[-1]["run"]["facets"]["parent"]["run"]["runId"] == inventory[0]["run"][
            "runId"]
        span = next(s for s in result.traced.statement_spans()
                    if "books" in s.attributes.get("db.sqlalchemy.tables.read", ()))
        assert span.attributes["openlineage.run.id"] == select[0]["run"]["runId"]
    finally:
        instrumentor.uninstrument()
        result.traced.provider.shutdown()


def test_insert_select_gets_column_lineage_by_target_column(lineage: Lineage) -> None:
    engine = sa.create_engine("sqlite://")
    meta = sa.MetaData()
    users = sa.Table("users", meta, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("name", sa.String(50)))
    copies = sa.Table("user_copies", meta, sa.Column("uid", sa.Integer),
                      sa.Column("label", sa.String(60)))
    meta.create_all(engine)
    with lineage.tracer.start_as_current_span("copy_users"), engine.begin() as conn:
        conn.execute(users.insert(), [{"name": "a"}, {"name": "b"}])
        conn.execute(copies.insert().from_select(
            ["uid", "label"], sa.select(users.c.id, sa.func.upper(users.c.name))))
    complete = complete_of(lineage.runs(), "library.copy_users")
    out = {o["name"]: o for o in complete["outputs"]}
    fields = out["user_copies"]["facets"]["columnLineage"]["fields"]
    assert {col: [(i["name"], i["field"]) for i in spec["inputFields"]]
            for col, spec in fields.items()} == {
        "uid": [("users", "id")], "label": [("users", "name")]}
    assert out["user_copies"]["outputFacets"]["outputStatistics"]["rowCount"] == 2


def test_every_event_of_a_real_session_is_valid(lineage: Lineage, library: Library) -> None:
    library.checkout_book("ada@example.org", "Dune")
    library.return_book("ada@example.org", "Dune")
    events = lineage.events()
    assert len(events) >= 8
    for event in events:
        validate_event(event)


def test_statements_inside_a_hand_made_database_span_belong_to_the_job_above_it(
    lineage: Lineage,
) -> None:
    engine = sa.create_engine("sqlite://")
    with lineage.tracer.start_as_current_span("nightly") as job, \
            lineage.tracer.start_as_current_span("db-batch", attributes={"db.system": "sqlite"}), \
            engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE report (n INTEGER)")
    run_id = expected_run_id(job.get_span_context().trace_id, job.get_span_context().span_id)
    statement = next(s for s in lineage.traced.statement_spans()
                     if s.attributes.get("db.sqlalchemy.tables.written") == ("report",))
    assert statement.attributes["openlineage.run.id"] == run_id
    events = lineage.runs()["library.nightly"]
    assert {e["run"]["runId"] for e in events} == {run_id}
    assert [d["name"] for d in events[-1]["outputs"]] == ["report"]


def test_same_driver_sql_reuses_one_cached_lineage() -> None:
    from otel_sqla_lineage.statement import lineage_of_sql

    first = lineage_of_sql("INSERT INTO report VALUES (?)", "sqlite")
    assert lineage_of_sql("INSERT INTO report VALUES (?)", "sqlite") is first
