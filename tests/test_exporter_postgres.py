"""The exporter against a real PostgreSQL: spec dataset names, the database's own error
message in FAIL, and no password or bound value anywhere in the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import Lineage
from sqlalchemy.orm import Session

from otel_sqla_lineage.demo.app import Library
from otel_sqla_lineage.demo.models import User

pytestmark = pytest.mark.postgres

PASSWORD = "osl-test-password"


@pytest.fixture
def pg_library(lineage: Lineage, postgres_url: str) -> Library:
    engine = sa.create_engine(postgres_url)
    lib = Library(engine, lineage.tracer)
    lib.setup()
    lib.seed()
    return lib


def test_postgres_datasets_are_named_database_schema_table(
    lineage: Lineage, pg_library: Library
) -> None:
    pg_library.checkout_book("ada@example.org", "Dune")
    complete = lineage.runs()["library.checkout_book"][-1]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("postgres://127.0.0.1:55432", "osl_test.public.books"),
        ("postgres://127.0.0.1:55432", "osl_test.public.users"),
    ]
    assert [d["name"] for d in complete["outputs"]] == [
        "osl_test.public.book_history", "osl_test.public.books"]
    source = complete["inputs"][0]["facets"]["dataSource"]
    assert source == {**source, "name": "postgres://127.0.0.1:55432",
                      "uri": "postgres://127.0.0.1:55432/osl_test"}
    assert complete["job"]["facets"]["sql"]["dialect"] == "postgres"
    rows = {o["name"]: o["outputFacets"]["outputStatistics"]["rowCount"]
            for o in complete["outputs"]}
    assert rows == {"osl_test.public.book_history": 1, "osl_test.public.books": 1}


def test_unique_violation_fails_the_job_with_postgres_message_and_no_values(
    lineage: Lineage, pg_library: Library, tmp_path: Path
) -> None:
    with pytest.raises(sa.exc.IntegrityError):
        pg_library.register_duplicate_user()
    events = lineage.runs()["library.register_user"]
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    error = events[1]["run"]["facets"]["errorMessage"]
    assert 'duplicate key value violates unique constraint "users_email_key"' in error["message"]
    assert events[1]["outputs"] == []
    output = lineage.events_file.read_text()
    assert "ada@example.org" not in output  # DETAIL: Key (email)=(...) and [parameters: ...]
    assert "Ada again" not in output
    assert PASSWORD not in output


def test_schema_outside_public_is_named_with_it(lineage: Lineage, postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    meta = sa.MetaData()
    stock = sa.Table("stock", meta, sa.Column("book_id", sa.Integer, primary_key=True),
                     sa.Column("shelf", sa.String(20)), schema="inventory")
    meta.drop_all(engine)
    meta.create_all(engine)
    with lineage.tracer.start_as_current_span("restock"), engine.begin() as conn:
        conn.execute(stock.insert(), [{"book_id": 1, "shelf": "A1"}])
    complete = lineage.runs()["library.restock"][-1]
    assert [d["name"] for d in complete["outputs"]] == ["osl_test.inventory.stock"]
    fields = complete["outputs"][0]["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [
        ("book_id", "INTEGER"), ("shelf", "VARCHAR(20)")]


def test_password_of_the_url_appears_in_no_event_span_or_log(
    lineage: Lineage, pg_library: Library, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    pg_library.book_inventory()
    with Session(pg_library.engine) as s:
        s.add(User(name="Bound Value", email="bound-value-secret@example.org"))
        s.commit()
    lineage.events()  # delivered: the worker may still be lingering for more
    dumped = lineage.events_file.read_text() + json.dumps(
        [dict(s.attributes or {}) for s in lineage.traced.spans()], default=str)
    dumped += lineage.events_file.read_text() + caplog.text
    assert PASSWORD not in dumped
    assert "bound-value-secret" not in dumped
    assert "Bound Value" not in dumped
