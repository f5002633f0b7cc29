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
import functools
import json
from collections.abc import Callable, Mapping
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
DATASET_EVENT_SCHEMA: Final = f"{_SPEC}/2-0-2/OpenLineage.json#/$defs/DatasetEvent"
# Our own dataset facet (nullability, primary and foreign keys, mapped classes: what the
# standard schema facet has no field for); schema in facets/SQLAlchemyTableDatasetFacet.json.
SQLALCHEMY_TABLE: Final = (
    "urn:otel-sqla-lineage:facets:1-0-0:SQLAlchemyTableDatasetFacet.json"
    "#/$defs/SQLAlchemyTableDatasetFacet"
)
# Our own run facet; its JSON schema ships in the package (facets/OpenTelemetryRunFacet.json).
OPENTELEMETRY_RUN: Final = (
    "urn:otel-sqla-lineage:facets:1-0-0:OpenTelemetryRunFacet.json"
    "#/$defs/OpenTelemetryRunFacet"
)


class Frozen(dict[str, Any]):
    """A dict built once and shared by many events (a dataset with its facets, a job):
    serialized once, its JSON reused by :func:`to_json`. Never mutate one."""

    __slots__ = ("_json",)

    def json(self) -> str:
        try:
            return self._json
        except AttributeError:
            self._json: str = str(_encode(self))
            return self._json


def facet(schema_url: str, **fields: Any) -> dict[str, Any]:
    """A facet dict; ``None`` fields are left out, as ``Serde`` does."""
    out = {"_producer": PRODUCER, "_schemaURL": schema_url}
    for k, v in fields.items():
        if v is not None:
            out[k] = v
    return out


def event_time(unix_ns: int) -> str:
    """ISO 8601 with a UTC offset, microsecond precision (integer arithmetic: no float
    rounding, so both paths print the same instant)."""
    seconds, nanos = divmod(unix_ns, 1_000_000_000)
    base = _second(seconds)  # "YYYY-MM-DDTHH:MM:SS+00:00", as isoformat() writes it
    micros = nanos // 1000
    return f"{base[:-6]}.{micros:06d}{base[-6:]}" if micros else base


@functools.lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    return _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).isoformat()


def run_event(
    *,
    event_type: str,
    event_time_ns: int,
    run_id: str,
    run_facets: Mapping[str, Any],
    job: Mapping[str, Any],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "eventTime": event_time(event_time_ns),
        "eventType": event_type,
        "inputs": inputs,
        "job": job,
        "outputs": outputs,
        "producer": PRODUCER,
        "run": {"facets": run_facets, "runId": run_id},
        "schemaURL": RUN_EVENT_SCHEMA,
    }


def schema_field(name: str, type_: str, description: str | None = None) -> dict[str, Any]:
    """One field of the ``schema`` facet, as ``Serde`` writes ``SchemaDatasetFacetFields``
    (an empty ``fields`` list included)."""
    out: dict[str, Any] = {"fields": [], "name": name, "type": type_}
    if description is not None:
        out["description"] = description
    return out


def dataset_event(
    *, event_time_ns: int, namespace: str, name: str, facets: Mapping[str, Any]
) -> dict[str, Any]:
    """A static ``DatasetEvent``: a dataset's metadata with no run or job."""
    return {
        "dataset": {"facets": dict(facets), "name": name, "namespace": namespace},
        "eventTime": event_time(event_time_ns),
        "producer": PRODUCER,
        "schemaURL": DATASET_EVENT_SCHEMA,
    }


# json.dumps(obj, sort_keys=True) is Serde's call; these are the same encoder, minus the
# per-call argument handling (this runs for every event)
def _not_serializable(o: Any) -> Any:
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def _make_encode() -> Callable[[Any], str]:
    # the C encoder JSONEncoder.iterencode builds on every call, built once; no cycle
    # check (our event trees are acyclic): same bytes as json.dumps(o, sort_keys=True)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(sort_keys=True, check_circular=False).encode
    c_encode = make(None, _not_serializable, json.encoder.encode_basestring_ascii, None,
                    ": ", ", ", True, False, True)

    def encode(o: Any) -> str:
        return "".join(c_encode(o, 0))

    return encode


_encode = _make_encode()
_encode_key = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


_EVENT_KEYS = frozenset(
    {"eventTime", "eventType", "inputs", "job", "outputs", "producer", "run", "schemaURL"}
)


def to_json(event: Mapping[str, Any]) -> str:
    """Byte-identical to ``openlineage.client.serde.Serde.to_json`` for our events
    (``json.dumps(..., sort_keys=True)``), reusing the JSON of :class:`Frozen` parts.

    Written out for the layout :func:`run_event` builds (keys in sorted order), because
    a generic walk costs as much as it saves; anything else goes through ``json``.
    """
    run = event.get("run")
    if event.keys() != _EVENT_KEYS or not isinstance(run, dict) or run.keys() != _RUN_KEYS:
        return str(_encode(event))
    return "".join((
        '{"eventTime": ', _encode_key(event["eventTime"]),
        ', "eventType": ', _encode_key(event["eventType"]),
        ', "inputs": ', _items(event["inputs"]),
        ', "job": ', _part(event["job"]),
        ', "outputs": ', _items(event["outputs"]),
        ', "producer": ', _encode_key(event["producer"]),
        ', "run": {"facets": ', _facets(run["facets"]),
        ', "runId": ', _encode_key(run["runId"]),
        '}, "schemaURL": ', _encode_key(event["schemaURL"]), "}",
    ))


_RUN_KEYS = frozenset({"facets", "runId"})


def _part(value: Any) -> str:
    return value.json() if isinstance(value, Frozen) else _encode(value)


def _items(values: list[Any]) -> str:
    return "[" + ", ".join([_dataset(v) for v in values]) + "]" if values else "[]"


def _dataset(value: Any) -> str:
    if isinstance(value, Frozen):
        return value.json()
    # an output with its own statistics around shared facets
    return "{" + ", ".join(
        [f"{_encode_key(k)}: {_part(value[k])}" for k in sorted(value)]
    ) + "}"


def _facets(facets: Mapping[str, Any]) -> str:
    if isinstance(facets, Frozen):  # a run's facets, shared by its START and end events
        return facets.json()
    if not facets:
        return "{}"
    return "{" + ", ".join(
        [f"{_encode_key(k)}: {_part(facets[k])}" for k in sorted(facets)]
    ) + "}"


def to_openlineage_event(event: Mapping[str, Any]) -> Any:
    """Load one of our event dicts into openlineage-python's ``RunEvent`` or
    ``DatasetEvent`` (for transports that take event objects). Only the facets we emit are
    known (KeyError otherwise)."""
    from otel_sqla_lineage._olclasses import load_dataset_event, load_run_event

    if "dataset" in event:
        return load_dataset_event(event)
    return load_run_event(event)
