"""Every event we build is a valid OpenLineage event: it validates against the official
schemas, loads into openlineage-python's classes, and serializes byte-identically to
openlineage-python's own Serde (our faster serializer must not change the output)."""

from __future__ import annotations

from typing import Any

import pytest
from olspec import validate_event
from openlineage.client.serde import Serde
from spanfactory import app_span, sqlite_statement
from test_convert import assemble, checkout_spans, unsampled

from otel_sqla_lineage.events import to_json, to_openlineage_event
from otel_sqla_lineage.spans import SpanEventView


def rich_spans() -> list[Any]:
    schema = '{"books":[["id","INTEGER"],["title","VARCHAR(200)"]],"caf\\u00e9":[["x","TEXT"]]}'
    lineage = '{"summary":{"n":[["books","id"]]}}'
    return [
        sqlite_statement(0x31, 0x30, sql="SELECT * FROM books", operation="SELECT",
                         read=("books", "café"), extra={"db.sqlalchemy.schema": schema}),
        app_span(0x30, "inner", parent=0x2E, start=1, end=5),
        sqlite_statement(0x32, 0x2E, sql="INSERT INTO summary (n) SELECT books.id FROM books",
                         operation="INSERT", read=("books",), written=("summary",),
                         extra={"db.sqlalchemy.column_lineage": lineage,
                                "db.sqlalchemy.rowcount": 7}),
        app_span(0x2E, "outer", start=0, end=10, status="ERROR", message="ValueError: no",
                 events=(SpanEventView("exception", 1, {"exception.stacktrace": "Tb..."}),)),
    ]


def all_events() -> list[dict[str, Any]]:
    return (
        assemble(checkout_spans())
        + assemble(checkout_spans(job_status="ERROR"), granularity="statement")
        + assemble(rich_spans(), trace_ui_url="http://127.0.0.1:16686")
        + assemble(rich_spans(), granularity="statement")
        + assemble(unsampled(checkout_spans()), trace_ui_url="http://127.0.0.1:16686")
    )


EVENTS = all_events()


def test_the_sample_covers_every_facet_we_emit() -> None:
    run_facets = {k for e in EVENTS for k in e["run"]["facets"]}
    job_facets = {k for e in EVENTS for k in e["job"]["facets"]}
    dataset_facets = {k for e in EVENTS for d in e["inputs"] + e["outputs"] for k in d["facets"]}
    output_facets = {k for e in EVENTS for d in e["outputs"] for k in d["outputFacets"]}
    assert run_facets == {"opentelemetry", "processing_engine", "parent", "errorMessage"}
    assert job_facets == {"jobType", "sql"}
    assert dataset_facets == {"dataSource", "schema", "columnLineage"}
    assert output_facets == {"outputStatistics"}


@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_event_validates_against_the_official_schemas(index: int) -> None:
    validate_event(EVENTS[index])


@pytest.mark.parametrize("index", range(len(EVENTS)))
def test_event_loads_into_openlineage_python_and_serializes_identically(index: int) -> None:
    event = EVENTS[index]
    loaded = to_openlineage_event(event)
    assert type(loaded).__name__ == "RunEvent"
    assert Serde.to_json(loaded) == to_json(event)
