"""Our event dicts loaded into openlineage-python's typed classes.

Imported lazily: ``openlineage.client`` takes ~200 ms to import, and the file path (the
default) never needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attr
from openlineage.client.event_v2 import (
    DatasetEvent,
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    StaticDataset,
)
from openlineage.client.facet_v2 import (
    DatasetFacet,
    RunFacet,
    column_lineage_dataset,
    datasource_dataset,
    error_message_run,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
    processing_engine_run,
    schema_dataset,
    sql_job,
)

from otel_sqla_lineage import events


@attr.define
class OpenTelemetryRunFacet(RunFacet):  # type: ignore[misc]
    """Links a run to its trace: ``traceId``/``spanId`` as lower-case hex (W3C)."""

    traceId: str
    spanId: str
    parentSpanId: str | None = attr.field(default=None)
    serviceName: str | None = attr.field(default=None)
    traceUrl: str | None = attr.field(default=None)
    sampled: bool | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return events.OPENTELEMETRY_RUN


@attr.define
class SQLAlchemyColumn:
    name: str
    nullable: bool


@attr.define
class SQLAlchemyForeignKey:
    columns: list[str]
    referredTable: str
    referredColumns: list[str]


@attr.define
class SQLAlchemyTableDatasetFacet(DatasetFacet):  # type: ignore[misc]
    """What the standard schema facet has no field for: nullability, keys, and the
    mapped classes of a table (``tableSchema``: the database schema, when one is set)."""

    table: str
    primaryKey: list[str]
    columns: list[SQLAlchemyColumn]
    foreignKeys: list[SQLAlchemyForeignKey]
    mappedClasses: list[str]
    tableSchema: str | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return events.SQLALCHEMY_TABLE


def _sqlalchemy_table(d: Mapping[str, Any]) -> Any:
    return SQLAlchemyTableDatasetFacet(
        table=d["table"],
        tableSchema=d.get("tableSchema"),
        primaryKey=list(d["primaryKey"]),
        columns=[SQLAlchemyColumn(name=c["name"], nullable=c["nullable"]) for c in d["columns"]],
        foreignKeys=[
            SQLAlchemyForeignKey(columns=list(f["columns"]), referredTable=f["referredTable"],
                                 referredColumns=list(f["referredColumns"]))
            for f in d["foreignKeys"]
        ],
        mappedClasses=list(d["mappedClasses"]),
        producer=_producer(d),
    )


def _plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def _producer(d: Mapping[str, Any]) -> str:
    return str(d.get("_producer", events.PRODUCER))


def _parent(d: Mapping[str, Any]) -> Any:
    root = d.get("root")
    return parent_run.ParentRunFacet(
        run=parent_run.Run(runId=d["run"]["runId"]),
        job=parent_run.Job(namespace=d["job"]["namespace"], name=d["job"]["name"]),
        root=parent_run.Root(
            run=parent_run.RootRun(runId=root["run"]["runId"]),
            job=parent_run.RootJob(namespace=root["job"]["namespace"], name=root["job"]["name"]),
        )
        if root
        else None,
        producer=_producer(d),
    )


def _schema(d: Mapping[str, Any]) -> Any:
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            schema_dataset.SchemaDatasetFacetFields(
                name=f["name"], type=f.get("type"), description=f.get("description")
            )
            for f in d["fields"]
        ],
        producer=_producer(d),
    )


def _column_lineage(d: Mapping[str, Any]) -> Any:
    return column_lineage_dataset.ColumnLineageDatasetFacet(
        fields={
            name: column_lineage_dataset.Fields(
                inputFields=[
                    column_lineage_dataset.InputField(
                        namespace=i["namespace"], name=i["name"], field=i["field"]
                    )
                    for i in spec["inputFields"]
                ]
            )
            for name, spec in d["fields"].items()
        },
        producer=_producer(d),
    )


def _simple(cls: Any) -> Callable[[Mapping[str, Any]], Any]:
    return lambda d: cls(**_plain(d), producer=_producer(d))


_RUN_FACETS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "parent": _parent,
    "processing_engine": _simple(processing_engine_run.ProcessingEngineRunFacet),
    "errorMessage": _simple(error_message_run.ErrorMessageRunFacet),
    "opentelemetry": _simple(OpenTelemetryRunFacet),
}
_JOB_FACETS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "sql": _simple(sql_job.SQLJobFacet),
    "jobType": _simple(job_type_job.JobTypeJobFacet),
}
_DATASET_FACETS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "dataSource": _simple(datasource_dataset.DatasourceDatasetFacet),
    "schema": _schema,
    "columnLineage": _column_lineage,
    "sqlalchemyTable": _sqlalchemy_table,
}
_OUTPUT_FACETS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "outputStatistics": _simple(
        output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet
    ),
}


def _facets(
    raw: Mapping[str, Any], loaders: Mapping[str, Callable[[Mapping[str, Any]], Any]]
) -> dict[str, Any]:
    return {name: loaders[name](value) for name, value in raw.items()}


def load_run_event(event: Mapping[str, Any]) -> RunEvent:
    return RunEvent(
        eventType=RunState(event["eventType"]),
        eventTime=event["eventTime"],
        producer=event["producer"],
        run=Run(runId=event["run"]["runId"], facets=_facets(event["run"]["facets"], _RUN_FACETS)),
        job=Job(
            namespace=event["job"]["namespace"],
            name=event["job"]["name"],
            facets=_facets(event["job"]["facets"], _JOB_FACETS),
        ),
        inputs=[
            InputDataset(
                namespace=d["namespace"],
                name=d["name"],
                facets=_facets(d["facets"], _DATASET_FACETS),
            )
            for d in event["inputs"]
        ],
        outputs=[
            OutputDataset(
                namespace=d["namespace"],
                name=d["name"],
                facets=_facets(d["facets"], _DATASET_FACETS),
                outputFacets=_facets(d["outputFacets"], _OUTPUT_FACETS),
            )
            for d in event["outputs"]
        ],
    )


def load_dataset_event(event: Mapping[str, Any]) -> DatasetEvent:
    dataset = event["dataset"]
    return DatasetEvent(
        eventTime=event["eventTime"],
        producer=event["producer"],
        dataset=StaticDataset(
            namespace=dataset["namespace"],
            name=dataset["name"],
            facets=_facets(dataset["facets"], _DATASET_FACETS),
        ),
    )
