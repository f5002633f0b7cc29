"""Finished spans in, OpenLineage run events out. Pure: no I/O, no clocks, no threads.

Two steps:

* :meth:`Converter.summarize` reads one statement span: its datasets (from our
  ``db.sqlalchemy.*`` attributes, else by parsing ``db.query.text``/``db.statement``),
  SQL, row count, schemas, failure.
* :meth:`Converter.run_events` turns a run (its span plus the statements that belong to it)
  into ``START`` and ``COMPLETE``/``FAIL`` events with the same runId.

Which statements belong to which run, and when a run is complete, is decided by
:mod:`otel_sqla_lineage.assemble`, shared by the in-process exporter and collector_exporter.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from otel_sqla_lineage import attributes as attr
from otel_sqla_lineage import events as ev
from otel_sqla_lineage.naming import DatabaseLocation, scheme_for
from otel_sqla_lineage.redact import redact_sql
from otel_sqla_lineage.runid import run_id_for
from otel_sqla_lineage.schema import Columns, decode_schemas
from otel_sqla_lineage.scrub import scrub_repeated_message
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spans import SpanView
from otel_sqla_lineage.sqltext import parse_sql
from otel_sqla_lineage.version import __version__

_log = logging.getLogger(__name__)

_MAX_SQL_IN_JOB_FACET: Final = 20
_MAX_SQL_CHARS: Final = 20_000
_MAX_SCHEMAS_REMEMBERED: Final = 4096
UNKNOWN_PARENT_JOB: Final = "remote-parent"

_SQLALCHEMY_INTEGRATION = "SQLALCHEMY"
_OTHER_INTEGRATION = "OPENTELEMETRY"


@dataclass(frozen=True, slots=True)
class Dataset:
    namespace: str
    name: str
    source_uri: str
    table: str  # as the statement named it, for schema look-ups


@dataclass(slots=True)  # built per statement span: frozen costs ~1 µs more per __init__
class StatementSummary:
    """What one statement span contributes to its run."""

    span: SpanView
    reads: tuple[Dataset, ...]
    writes: tuple[Dataset, ...]
    sql: str | None
    dialect: str | None
    operation: str | None
    rowcount: int | None
    integration: str
    # output table -> {output column: ((input table, input column), ...)}
    column_lineage: Mapping[str, Mapping[str, tuple[tuple[str, str], ...]]] = field(
        default_factory=dict
    )
    location: DatabaseLocation | None = None
    # "<OPERATION> <tables>", the statement's job name without the service
    label: str = "statement"

    @property
    def failed(self) -> bool:
        return self.span.failed


class RunRef(NamedTuple):
    namespace: str
    name: str
    run_id: str


_LOCATION_KEYS: Final = (
    attr.DB_SYSTEM_NAME, attr.DB_SYSTEM, attr.SQLALCHEMY_DEFAULT_SCHEMA, attr.DB_NAMESPACE,
    attr.DB_NAME, attr.SERVER_ADDRESS, attr.NET_PEER_NAME, attr.SERVER_PORT,
    attr.NET_PEER_PORT, attr.OPENLINEAGE_DATASET_NAMESPACE,
)


def location_from_attributes(a: Mapping[str, Any]) -> DatabaseLocation:
    """Where the statement ran, from our attributes or the semantic conventions (old and
    new names), as Java, Go or Node instrumentations report them."""
    system = _str(a.get(attr.DB_SYSTEM_NAME)) or _str(a.get(attr.DB_SYSTEM))
    scheme = scheme_for(system)
    default_schema = _str(a.get(attr.SQLALCHEMY_DEFAULT_SCHEMA))
    database = _str(a.get(attr.DB_NAMESPACE)) or _str(a.get(attr.DB_NAME))
    if database and "|" in database:  # semconv: "{database}|{schema}" (SQL Server)
        database, _, schema = database.partition("|")
        default_schema = default_schema or schema or None
    host = _str(a.get(attr.SERVER_ADDRESS)) or _str(a.get(attr.NET_PEER_NAME))
    port = _int(a.get(attr.SERVER_PORT)) or _int(a.get(attr.NET_PEER_PORT))
    return DatabaseLocation(
        scheme,
        host,
        port,
        database,
        default_schema,
        explicit_namespace=_str(a.get(attr.OPENLINEAGE_DATASET_NAMESPACE)),
    )


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _sql(value: Any) -> str | None:
    # only a string is SQL: another type under a statement key is bad input, not a query
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError, OverflowError):  # int(inf) overflows
        return None


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(str(v) for v in value)
    except TypeError:
        return ()


class Converter:
    """Spans to events. Holds one bounded memory (the table schemas spans carried); both
    paths feed it the same spans and so give the same events."""

    def __init__(self, settings: LineageSettings | None = None) -> None:
        self.settings = settings or LineageSettings()
        self._schemas: OrderedDict[tuple[str, str], Columns] = OrderedDict()
        # shared, pre-serialized parts of events (bounded): jobs, dataset facets, datasets
        self._jobs: dict[Any, ev.Frozen] = {}
        self._dataset_facet_cache: dict[Any, ev.Frozen] = {}
        self._dataset_cache: dict[Any, ev.Frozen] = {}
        self._locations: dict[Any, DatabaseLocation] = {}
        self._parents: dict[Any, ev.Frozen] = {}
        self._shapes: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._resource: Any = None
        self._service: str | None = None
        self._datasets: dict[tuple[DatabaseLocation, str], Dataset] = {}
        self._engine_facet = ev.Frozen(ev.facet(
            ev.PROCESSING_ENGINE,
            name="otel-sqla-lineage",
            version=__version__,
            openlineageAdapterVersion=__version__,
        ))

    # -- statements ----------------------------------------------------------------------

    def summarize(self, span: SpanView) -> StatementSummary | None:
        """The statement's contribution, or None when the span is not a SQL statement."""
        a = span.attributes
        if not span.is_database_span:
            return None
        sql = _sql(a.get(attr.DB_QUERY_TEXT)) or _sql(a.get(attr.DB_STATEMENT))
        has_ours = attr.SQLALCHEMY_SOURCE in a
        if sql is None and not has_ours:
            return None  # a connect span, a pool span: database, but no statement
        # everything but the span and its row count is the same for every execution of a
        # statement: cached by the attribute values it is derived from
        key: tuple[Any, ...] | None = (
            sql, has_ours, a.get(attr.SQLALCHEMY_TABLES_READ),
            a.get(attr.SQLALCHEMY_TABLES_WRITTEN), a.get(attr.DB_OPERATION_NAME),
            a.get(attr.SQLALCHEMY_COLUMN_LINEAGE), *[a.get(k) for k in _LOCATION_KEYS],
        )
        if sql is not None and len(sql) > _MAX_SQL_CHARS:
            key = None  # not cached: the cache is bounded in entries, keep entries small
        try:
            shape = self._shapes.get(key) if key is not None else None
        except TypeError:  # an unhashable attribute value (OTLP arrays as lists)
            key, shape = None, None
        if shape is None:
            shape = self._shape(a, sql, has_ours)
            if key is not None:
                _bounded_put(self._shapes, key, shape)
        reads, writes, sql_text, dialect, operation, integration, lineage, location, label = (
            shape
        )
        schema = a.get(attr.SQLALCHEMY_SCHEMA)
        if schema is not None:
            for table, columns in decode_schemas(schema).items():
                self._remember_schema(location.namespace, table, columns)
        return StatementSummary(
            span, reads, writes, sql_text, dialect, operation,
            _int(a.get(attr.SQLALCHEMY_ROWCOUNT)), integration, lineage, location, label,
        )

    def _shape(self, a: Mapping[str, Any], sql: str | None, has_ours: bool) -> tuple[Any, ...]:
        location_key: tuple[Any, ...] | None = tuple(a.get(k) for k in _LOCATION_KEYS)
        try:
            location = self._locations.get(location_key)
        except TypeError:  # an unhashable value (a list where a string belongs): no cache
            location_key, location = None, None
        if location is None:
            location = location_from_attributes(a)
            if location_key is not None:
                _bounded_put(self._locations, location_key, location)
        system = _str(a.get(attr.DB_SYSTEM_NAME)) or _str(a.get(attr.DB_SYSTEM))
        if has_ours:
            read = _strings(a.get(attr.SQLALCHEMY_TABLES_READ))
            written = _strings(a.get(attr.SQLALCHEMY_TABLES_WRITTEN))
            operation = _str(a.get(attr.DB_OPERATION_NAME))
            lineage = _decode_column_lineage(a.get(attr.SQLALCHEMY_COLUMN_LINEAGE))
            integration = _SQLALCHEMY_INTEGRATION
        else:
            parsed = parse_sql(sql or "", system)  # logs, once per SQL, what it cannot read
            read, written = parsed.tables_read, parsed.tables_written
            operation = _str(a.get(attr.DB_OPERATION_NAME)) or parsed.operation
            by_column = {
                column: tuple((o.table, o.column) for o in origins)
                for column, origins in parsed.column_lineage
            }
            lineage = {table: by_column for table in written} if by_column else {}
            integration = _OTHER_INTEGRATION
        tables = sorted(set(written) or set(read))
        what = operation or "statement"
        return (
            tuple(self._dataset(location, t) for t in read),
            tuple(self._dataset(location, t) for t in written),
            # literals next to password/token columns never reach the sql facet
            redact_sql(sql)[:_MAX_SQL_CHARS] if sql else None,
            scheme_for(system) if system else None,
            operation,
            integration,
            lineage,
            location,
            f"{what} {','.join(tables)}" if tables else what,
        )

    def _dataset(self, location: DatabaseLocation, table: str) -> Dataset:
        key = (location, table)
        dataset = self._datasets.get(key)
        if dataset is None:
            dataset = Dataset(location.namespace, location.dataset_name(table), location.uri,
                              table)
            _bounded_put(self._datasets, key, dataset)
        return dataset

    def _remember_schema(self, namespace: str, table: str, columns: Columns) -> None:
        key = (namespace, table)
        self._schemas[key] = columns
        self._schemas.move_to_end(key)
        while len(self._schemas) > _MAX_SCHEMAS_REMEMBERED:
            self._schemas.popitem(last=False)

    # -- runs ----------------------------------------------------------------------------

    def _service_name(self, span: SpanView) -> str | None:
        # spans of one process share one resource mapping
        resource = span.resource
        if resource is not self._resource:
            self._service = span.service_name
            self._resource = resource
        return self._service

    def job_namespace(self, span: SpanView) -> str:
        return self.settings.namespace or self._service_name(span) or "default"

    def job_name(self, span: SpanView) -> str:
        service = self._service_name(span)
        return f"{service}.{span.name}" if service else span.name

    def statement_job_name(self, statement: StatementSummary) -> str:
        """Stable and human: ``library.INSERT book_history`` (never the SQL text)."""
        label = statement.label
        service = self._service_name(statement.span)
        return f"{service}.{label}" if service else label

    def ref(self, span: SpanView, statement: StatementSummary | None = None) -> RunRef:
        name = self.statement_job_name(statement) if statement else self.job_name(span)
        return RunRef(self.job_namespace(span), name, run_id_for(span.trace_id, span.span_id))

    def remote_parent_ref(self, span: SpanView) -> RunRef | None:
        """The parent run in another process: its runId follows from the trace context
        alone; its job name is not known here (see README, "Runs across processes")."""
        if span.parent_span_id is None or span.has_local_parent:
            return None
        return RunRef(
            self.job_namespace(span),
            UNKNOWN_PARENT_JOB,
            run_id_for(span.trace_id, span.parent_span_id),
        )

    @staticmethod
    def declared_parent(span: SpanView) -> tuple[RunRef, RunRef | None] | None:
        """The parent (and root) run the application named on the span itself
        (``openlineage.parent.id``), for a parent that is a run but not a span of this
        trace: an Airflow task run of the OpenLineage provider, a scheduler's job run."""
        parent = _parse_parent_id(span.attributes.get(attr.OPENLINEAGE_PARENT_ID))
        if parent is None:
            return None
        return parent, _parse_parent_id(span.attributes.get(attr.OPENLINEAGE_ROOT_PARENT_ID))

    def run_events(
        self,
        span: SpanView,
        statements: Sequence[StatementSummary],
        *,
        as_statement: bool = False,
        parent: RunRef | None = None,
        root: RunRef | None = None,
        ref: RunRef | None = None,
    ) -> list[dict[str, Any]]:
        """START and COMPLETE/FAIL for one run. ``as_statement``: the run is the statement
        span itself (granularity ``statement``, or a statement with no enclosing span)."""
        if ref is None:
            ref = self.ref(span, statements[0] if as_statement and statements else None)
        if parent is None or parent.name == UNKNOWN_PARENT_JOB:
            # a run of this trace is the closer parent; a declared one beats a remote span
            # whose job is not known here
            declared = self.declared_parent(span) if not as_statement else None
            if declared is not None:
                parent, root = declared
        run_facets = self._run_facets(span, parent, root)
        job = self._job(ref, statements, as_statement)
        ok = [s for s in statements if not s.failed]
        inputs = self._inputs(ok)
        start_outputs, end_outputs = self._outputs(ok)
        start = ev.run_event(
            event_type="START", event_time_ns=span.start_ns, run_id=ref.run_id,
            run_facets=run_facets, job=job, inputs=inputs, outputs=start_outputs,
        )
        end_facets = run_facets
        event_type = "COMPLETE"
        if span.failed:
            event_type = "FAIL"
            end_facets = ev.Frozen(run_facets, errorMessage=self._error_facet(span))
        end = ev.run_event(
            event_type=event_type, event_time_ns=span.end_ns, run_id=ref.run_id,
            run_facets=end_facets, job=job, inputs=inputs, outputs=end_outputs,
        )
        return [start, end]

    def _run_facets(
        self, span: SpanView, parent: RunRef | None, root: RunRef | None
    ) -> ev.Frozen:
        trace_hex = f"{span.trace_id:032x}"
        otel: dict[str, Any] = {
            "_producer": ev.PRODUCER,
            "_schemaURL": ev.OPENTELEMETRY_RUN,
            "spanId": f"{span.span_id:016x}",
            "traceId": trace_hex,
        }
        if span.parent_span_id:
            otel["parentSpanId"] = f"{span.parent_span_id:016x}"
        service = self._service_name(span)
        if service:
            otel["serviceName"] = service
        if not span.sampled:
            # recorded for lineage only (LineageSampler): no tracing backend has it, so no
            # link to one
            otel["sampled"] = False
        elif self.settings.trace_ui_url:
            otel["traceUrl"] = f"{self.settings.trace_ui_url}/trace/{trace_hex}"
        # START and COMPLETE share these objects (their parts serialize once)
        facets = ev.Frozen(opentelemetry=ev.Frozen(otel), processing_engine=self._engine_facet)
        if parent is not None:
            # siblings share their parent (every statement run of a job, at granularity
            # statement): one facet object, serialized once
            key = (parent, root)
            parent_facet = self._parents.get(key)
            if parent_facet is None:
                parent_facet = self._parent_facet(parent, root)
                _bounded_put(self._parents, key, parent_facet)
            facets["parent"] = parent_facet
        return facets

    @staticmethod
    def _parent_facet(parent: RunRef, root: RunRef | None) -> ev.Frozen:
        # "facets": {} as openlineage-python's ParentRunFacet serializes them
        fields: dict[str, Any] = {
            "job": {"facets": {}, "name": parent.name, "namespace": parent.namespace},
            "run": {"facets": {}, "runId": parent.run_id},
        }
        if root is not None:
            fields["root"] = {
                "job": {"facets": {}, "name": root.name, "namespace": root.namespace},
                "run": {"facets": {}, "runId": root.run_id},
            }
        return ev.Frozen(ev.facet(ev.PARENT_RUN, **fields))

    def _job(
        self, ref: RunRef, statements: Sequence[StatementSummary], as_statement: bool
    ) -> ev.Frozen:
        """The job part of the events, shared by every run of the same job shape."""
        integration = (
            _SQLALCHEMY_INTEGRATION
            if any(s.integration == _SQLALCHEMY_INTEGRATION for s in statements)
            or not statements
            else _OTHER_INTEGRATION
        )
        if len(statements) == 1:  # every statement run, and many jobs
            queries: tuple[str, ...] = (statements[0].sql,) if statements[0].sql else ()
        else:  # only what the facet shows is part of the key (bounds the cache's size)
            queries = tuple(dict.fromkeys(s.sql for s in statements if s.sql))
            queries = queries[:_MAX_SQL_IN_JOB_FACET]
        dialect = next((s.dialect for s in statements if s.dialect), None) if queries else None
        key = (ref.namespace, ref.name, integration, as_statement, queries, dialect)
        job = self._jobs.get(key)
        if job is None:
            facets: dict[str, Any] = {
                "jobType": ev.facet(
                    ev.JOB_TYPE,
                    processingType="BATCH",
                    integration=integration,
                    jobType="QUERY" if as_statement else "TASK",
                )
            }
            if queries:
                query = ";\n".join(queries)
                facets["sql"] = ev.facet(ev.SQL_JOB, query=query, dialect=dialect)
            job = ev.Frozen(facets=facets, name=ref.name, namespace=ref.namespace)
            _bounded_put(self._jobs, key, job)
        return job

    def _error_facet(self, span: SpanView) -> dict[str, Any]:
        message = span.status_message or ""
        stack = None
        for event in span.events:
            if event.name == "exception":
                message = message or str(event.attributes.get(attr.EXCEPTION_MESSAGE, ""))
                raw_stack = event.attributes.get(attr.EXCEPTION_STACKTRACE)
                stack = scrub_repeated_message(str(raw_stack)) if raw_stack else None
        language = str(span.resource.get("telemetry.sdk.language") or "unknown")
        return ev.facet(
            ev.ERROR_MESSAGE,
            message=scrub_repeated_message(message) or "failed",
            programmingLanguage=language,
            stackTrace=stack,
        )

    def _dataset_facets(self, dataset: Dataset) -> ev.Frozen:
        columns = self._schemas.get((dataset.namespace, dataset.table))
        key = (dataset, columns)
        facets = self._dataset_facet_cache.get(key)
        if facets is None:
            facets = ev.Frozen(
                dataSource=ev.facet(ev.DATASOURCE, name=dataset.namespace,
                                    uri=dataset.source_uri)
            )
            if columns:
                facets["schema"] = ev.facet(
                    ev.SCHEMA,
                    fields=[ev.schema_field(name, type_) for name, type_ in columns],
                )
            _bounded_put(self._dataset_facet_cache, key, facets)
        return facets

    def _inputs(self, statements: Iterable[StatementSummary]) -> list[dict[str, Any]]:
        seen: dict[tuple[str, str], Dataset] = {}
        for s in statements:
            for d in s.reads:
                seen.setdefault((d.namespace, d.name), d)
        out: list[dict[str, Any]] = []
        for _, d in sorted(seen.items()):
            key = ("in", d, self._schemas.get((d.namespace, d.table)))
            item = self._dataset_cache.get(key)
            if item is None:
                item = ev.Frozen(facets=self._dataset_facets(d), inputFacets={}, name=d.name,
                                 namespace=d.namespace)
                _bounded_put(self._dataset_cache, key, item)
            out.append(item)
        return out

    def _outputs(
        self, statements: Sequence[StatementSummary]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Outputs for START (no statistics yet) and for the end event."""
        seen: dict[tuple[str, str], Dataset] = {}
        rows: dict[tuple[str, str], int] = {}
        lineage: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
        for s in statements:
            for d in s.writes:
                key = (d.namespace, d.name)
                seen.setdefault(key, d)
                if s.rowcount is not None and len(s.writes) == 1:
                    rows[key] = rows.get(key, 0) + s.rowcount
                for column, origins in s.column_lineage.get(d.table, {}).items():
                    fields = lineage.setdefault(key, {}).setdefault(column, [])
                    for table, input_column in origins:
                        source = self._dataset(s.location, table) if s.location else None
                        if source is None:
                            continue
                        item: dict[str, Any] = {"field": input_column, "name": source.name,
                                                "namespace": source.namespace,
                                                "transformations": []}
                        if item not in fields:
                            fields.append(item)
        start: list[dict[str, Any]] = []
        end: list[dict[str, Any]] = []
        for key, d in sorted(seen.items()):
            facets: dict[str, Any] = self._dataset_facets(d)
            if key in lineage:
                facets = {**facets, "columnLineage": ev.facet(
                    ev.COLUMN_LINEAGE,
                    dataset=[],
                    fields={
                        column: {"inputFields": inputs}
                        for column, inputs in sorted(lineage[key].items())
                    },
                )}
                plain: dict[str, Any] = {"facets": facets, "name": d.name,
                                         "namespace": d.namespace, "outputFacets": {}}
            else:
                cache_key = ("out", d, self._schemas.get((d.namespace, d.table)))
                plain = self._dataset_cache.get(cache_key)  # type: ignore[assignment]
                if plain is None:
                    plain = ev.Frozen(facets=facets, name=d.name, namespace=d.namespace,
                                      outputFacets={})
                    _bounded_put(self._dataset_cache, cache_key, plain)
            start.append(plain)
            if key in rows:
                end.append({**plain, "outputFacets": {"outputStatistics": ev.facet(
                    ev.OUTPUT_STATISTICS, rowCount=rows[key])}})
            else:
                end.append(plain)
        return start, end


_CACHE_LIMIT: Final = 4096


def _parse_parent_id(value: Any) -> RunRef | None:
    """``namespace/job/runId``; the namespace may itself hold slashes
    (``airflow://host``), the job name does not."""
    if not isinstance(value, str):
        return None
    head, _, run_id = value.rpartition("/")
    namespace, _, job = head.rpartition("/")
    if not (namespace and job and run_id):
        return None
    try:
        run_id = str(uuid.UUID(run_id))
    except ValueError:
        return None
    return RunRef(namespace, job, run_id)


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def _decode_column_lineage(
    value: Any,
) -> dict[str, dict[str, tuple[tuple[str, str], ...]]]:
    """``db.sqlalchemy.column_lineage``: JSON {table: {column: [[in_table, in_col], ...]}}."""
    import json

    if not isinstance(value, str):
        return {}
    try:
        raw = json.loads(value)
    except ValueError:
        return {}
    out: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {}
    if not isinstance(raw, dict):
        return {}
    for table, columns in raw.items():
        if not isinstance(columns, dict):
            continue
        out[str(table)] = {
            str(col): tuple(
                (str(o[0]), str(o[1])) for o in origins if isinstance(o, list) and len(o) == 2
            )
            for col, origins in columns.items()
            if isinstance(origins, list)
        }
    return out
