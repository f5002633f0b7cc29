"""Dataset namespaces and names per the OpenLineage naming spec, and no credentials."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import sqlalchemy as sa

from otel_sqla_lineage.convert import Converter, location_from_attributes
from otel_sqla_lineage.naming import location_from_url
from otel_sqla_lineage.spans import SpanView


@pytest.mark.parametrize(
    ("url", "table", "namespace", "name"),
    [
        ("postgresql+psycopg2://u:s3cret@db.example:5432/shop", "orders",
         "postgres://db.example:5432", "shop.public.orders"),
        ("postgresql://u:s3cret@db.example/shop", "sales.orders",
         "postgres://db.example:5432", "shop.sales.orders"),
        ("mysql+pymysql://u:s3cret@my.example:3307/shop", "orders",
         "mysql://my.example:3307", "shop.orders"),
        ("mssql+pyodbc://u:s3cret@ms.example:1433/shop", "orders",
         "mssql://ms.example:1433", "shop.dbo.orders"),
        ("oracle+oracledb://u:s3cret@ora.example:1521/ORCLPDB", "hr.employees",
         "oracle://ora.example:1521", "ORCLPDB.hr.employees"),
        ("trino://u:s3cret@trino.example:8080/hive", "web.clicks",
         "trino://trino.example:8080", "hive.web.clicks"),
        ("snowflake://u:s3cret@myorg-acct/ANALYTICS", "PUBLIC.EVENTS",
         "snowflake://myorg-acct", "ANALYTICS.PUBLIC.EVENTS"),
        ("bigquery://my-project/analytics", "dataset.table",
         "bigquery", "my-project.dataset.table"),
        ("bigquery://my-project/analytics", "events",
         "bigquery", "my-project.analytics.events"),
        ("duckdb:////data/warehouse.duckdb", "orders",
         f"duckdb://{socket.gethostname()}/data/warehouse.duckdb", "warehouse.main.orders"),
        ("sqlite:////srv/library.db", "books",
         f"sqlite://{socket.gethostname()}/srv/library.db", "books"),
        ("cockroachdb://u:s3cret@crdb.example:26257/bank", "accounts",
         "cockroachdb://crdb.example:26257", "bank.accounts"),
    ],
)
def test_dataset_naming_follows_the_spec_and_never_carries_credentials(
    url: str, table: str, namespace: str, name: str
) -> None:
    location = location_from_url(sa.engine.make_url(url))
    assert location.namespace == namespace
    assert location.dataset_name(table) == name
    for text in (location.namespace, location.uri, location.dataset_name(table)):
        assert "s3cret" not in text
        assert "u:" not in text


def test_relative_sqlite_path_becomes_absolute(tmp_cwd: Any) -> None:
    location = location_from_url(sa.engine.make_url("sqlite:///library.db"))
    assert location.namespace == f"sqlite://{socket.gethostname()}{tmp_cwd}/library.db"


def java_span(attributes: dict[str, Any]) -> SpanView:
    return SpanView(trace_id=1, span_id=2, parent_span_id=None, name="SELECT shop.orders",
                    start_ns=0, end_ns=1, attributes=attributes,
                    resource={"service.name": "billing"}, kind="CLIENT")


def test_semconv_only_span_from_another_language_gets_spec_datasets() -> None:
    span = java_span({
        "db.system.name": "postgresql",
        "db.namespace": "shop",
        "server.address": "pg.internal",
        "server.port": 6432,
        "db.query.text": "INSERT INTO archive.orders SELECT * FROM orders WHERE placed < $1",
    })
    summary = Converter().summarize(span)
    assert summary is not None
    assert [(d.namespace, d.name) for d in summary.reads] == [
        ("postgres://pg.internal:6432", "shop.public.orders")]
    assert [(d.namespace, d.name) for d in summary.writes] == [
        ("postgres://pg.internal:6432", "shop.archive.orders")]
    assert summary.integration == "OPENTELEMETRY"


def test_old_semconv_names_are_read_too() -> None:
    location = location_from_attributes({
        "db.system": "mysql", "db.name": "shop", "net.peer.name": "my.internal",
        "net.peer.port": "3306",
    })
    assert location.namespace == "mysql://my.internal:3306"
    assert location.dataset_name("orders") == "shop.orders"


def test_connect_span_is_not_a_statement() -> None:
    assert Converter().summarize(java_span({"db.system": "postgresql"})) is None
