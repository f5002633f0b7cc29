"""OpenLineage events as plain dicts shaped exactly like openlineage-python's ``Serde``
output, and the serializer that matches ``Serde.to_json`` byte for byte.

Why not build openlineage-python's attrs classes and call ``Serde``: that costs ~350 µs per
event (construction + ``Serde.to_json``), ten times our per-span budget. A test pins that
every event we build loads into openlineage-python's classes and serializes identically
(``tests/test_events.py``); :func:`to_openlineage_event` does that load for transports that
want event objects.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any, Final

from otel_sqla_lineage.version import __version__

PRODUCER: Final = f"urn:otel-sqla-lineage:{__version__}"

_SPEC: Final = "https://openlineage.io/spec"
RUN_EVENT_SCHEMA: Final = f"{_SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
SQL_JOB: Final = f"{_SPEC}/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet"
JOB_TYPE: Final = f"{_SPEC}/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"
PARENT_RUN: Final = f"{_SPEC}/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet"
PROCESSING_ENGINE: Final = (
    f"{_SPEC}/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
)
ERROR_MESSAGE: Final = f"{_SPEC}/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
DATASOURCE: Final = (
    f"{_SPEC}/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet"
)
SCHEMA: Final = f"{_SPEC}/facets/1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet"
OUTPUT_STATISTICS: Final = (
    f"{_SPEC}/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json"
    "#/$defs/OutputStatisticsOutputDatasetFacet"
)
COLUMN_LINEAGE: Final = (
    f"{_SPEC}/facets/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
)
# Our own run facet; its JSON schema ships in the package (facets/OpenTelemetryRunFacet.json).
OPENTELEMETRY_RUN: Final = (
    "urn:otel-sqla-lineage:facets:1-0-0:OpenTelemetryRunFacet.json"
    "#/$defs/OpenTelemetryRunFacet"
)


def facet(schema_url: str, **fields: Any) -> dict[str, Any]:
    """A facet dict; ``None`` fields are left out, as ``Serde`` does."""
    out = {"_producer": PRODUCER, "_schemaURL": schema_url}
    out.update((k, v) for k, v in fields.items() if v is not None)
    return out


def event_time(unix_ns: int) -> str:
    """ISO 8601 with a UTC offset, microsecond precision (integer arithmetic: no float
    rounding, so both paths print the same instant)."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    moment = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).replace(
        microsecond=nanos // 1000
    )
    return moment.isoformat()


def run_event(
    *,
    event_type: str,
    event_time_ns: int,
    run_id: str,
    run_facets: Mapping[str, Any],
    job_namespace: str,
    job_name: str,
    job_facets: Mapping[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "eventTime": event_time(event_time_ns),
        "eventType": event_type,
        "inputs": inputs,
        "job": {"facets": dict(job_facets), "name": job_name, "namespace": job_namespace},
        "outputs": outputs,
        "producer": PRODUCER,
        "run": {"facets": dict(run_facets), "runId": run_id},
        "schemaURL": RUN_EVENT_SCHEMA,
    }


def input_dataset(namespace: str, name: str, facets: Mapping[str, Any]) -> dict[str, Any]:
    return {"facets": dict(facets), "inputFacets": {}, "name": name, "namespace": namespace}


def output_dataset(
    namespace: str, name: str, facets: Mapping[str, Any], output_facets: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "facets": dict(facets),
        "name": name,
        "namespace": namespace,
        "outputFacets": dict(output_facets),
    }


def to_json(event: Mapping[str, Any]) -> str:
    """Byte-identical to ``openlineage.client.serde.Serde.to_json`` for our events."""
    return json.dumps(event, sort_keys=True)


def to_openlineage_event(event: Mapping[str, Any]) -> Any:
    """Load one of our event dicts into openlineage-python's ``RunEvent`` (for transports
    that take event objects). Unknown facets are carried as generic facets."""
    from otel_sqla_lineage._olclasses import load_run_event

    return load_run_event(event)
