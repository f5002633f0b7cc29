"""Static OpenLineage ``DatasetEvent`` s from a model snapshot (pure: no I/O).

One event per table, named exactly as the runtime path names the table's dataset
(:mod:`otel_sqla_lineage.naming`), with the facets a run event's dataset carries
(``dataSource``, ``schema``) plus ``sqlalchemyTable`` for what ``schema`` has no field for
(nullability, keys, mapped classes). Column comments become field descriptions.
"""

from __future__ import annotations

from typing import Any

from otel_sqla_lineage import events as ev
from otel_sqla_lineage.model_tables import ModelSnapshot, TableSnapshot
from otel_sqla_lineage.naming import DatabaseLocation


def dataset_events(
    snapshot: ModelSnapshot, location: DatabaseLocation, event_time_ns: int
) -> list[dict[str, Any]]:
    return [table_event(t, location, event_time_ns) for t in snapshot.tables]


def table_event(
    table: TableSnapshot, location: DatabaseLocation, event_time_ns: int
) -> dict[str, Any]:
    return ev.dataset_event(
        event_time_ns=event_time_ns,
        namespace=location.namespace,
        name=location.dataset_name(table.key),
        facets=table_facets(table, location),
    )


def table_facets(table: TableSnapshot, location: DatabaseLocation) -> dict[str, Any]:
    return {
        "dataSource": ev.facet(ev.DATASOURCE, name=location.namespace, uri=location.uri),
        "schema": ev.facet(
            ev.SCHEMA,
            fields=[ev.schema_field(c.name, c.type, c.comment) for c in table.columns],
        ),
        "sqlalchemyTable": ev.facet(
            ev.SQLALCHEMY_TABLE,
            table=table.name,
            tableSchema=table.schema,
            primaryKey=list(table.primary_key),
            columns=[{"name": c.name, "nullable": c.nullable} for c in table.columns],
            foreignKeys=[
                {"columns": list(f.columns), "referredColumns": list(f.referred_columns),
                 "referredTable": f.referred_table}
                for f in table.foreign_keys
            ],
            mappedClasses=list(table.mapped_classes),
        ),
    }
