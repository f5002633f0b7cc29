"""Table schemas ride on statement spans: once per table, again every five minutes."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from otel_sqla_lineage.schema import REANNOUNCE_SECONDS, SchemaAnnouncer
from otel_sqla_lineage.statement import StatementLineage

META = sa.MetaData()
BOOKS = sa.Table("books", META, sa.Column("id", sa.Integer, primary_key=True),
                 sa.Column("title", sa.String(200)))


class Context:
    dialect = sa.create_engine("sqlite://").dialect


def shape(operation: str) -> StatementLineage:
    return StatementLineage.build(operation, ["books"], (), (), "core", tables=[BOOKS])


def test_schema_goes_out_once_then_again_after_five_minutes_whatever_the_statement() -> None:
    now = [0.0]
    announcer = SchemaAnnouncer(max_columns=200, clock=lambda: now[0])
    select, count = shape("SELECT"), shape("SELECT")  # two statement shapes, one table
    first: Any = announcer.describe("sqlite://h/db", select, Context())
    assert json.loads(first) == {"books": [["id", "INTEGER"], ["title", "VARCHAR(200)"]]}
    now[0] = 100.0
    assert announcer.describe("sqlite://h/db", count, Context()) is None
    assert announcer.describe("sqlite://h/db", select, Context()) is None
    now[0] = REANNOUNCE_SECONDS + 1  # due again: on the next statement touching it
    assert announcer.describe("sqlite://h/db", count, Context()) is not None
    assert announcer.describe("sqlite://other/db", count, Context()) is not None  # per database
