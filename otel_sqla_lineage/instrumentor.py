"""``SQLAlchemyLineageInstrumentor``: lineage attributes on the spans of SQLAlchemy statements.

It stands on ``opentelemetry-instrumentation-sqlalchemy``: that package makes one span per
statement; we add what the statement touches (see :mod:`otel_sqla_lineage.attributes`).

How it fits together:

* ``instrument()`` makes sure upstream instruments SQLAlchemy, passing its dependency check
  (which refuses SQLAlchemy 2.1 although it works on it). If upstream is already instrumented
  (``opentelemetry-instrument`` loaded its entry point first), upstream's singleton keeps its
  state and we only add our listeners: exactly one span per statement in either load order.
* Our listeners are registered once on the ``Engine`` *class*, so they cover every engine:
  sync and asyncio (``AsyncEngine`` runs on a sync engine), created before or after
  ``instrument()``. SQLAlchemy runs class-level listeners before an engine's own, so at
  ``after_cursor_execute`` / ``handle_error`` upstream's span is still open to enrich.
* An engine that upstream does not trace (created before ``instrument()`` and not passed as
  ``engine=``) gets an equivalent span from us instead, so no statement goes unseen.
* Lineage is derived once per compiled statement (or SQL text) and cached; the
  per-statement cost is a cache lookup and one ``set_attributes`` call. A failure is logged
  once per statement shape and never reaches the application.
* Under ``LineageSampler``, a statement of a sampled-out trace has no recorded span: the
  same attributes go to lineage as a span view instead (:mod:`otel_sqla_lineage.light_statements`).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from sqlalchemy import event
from sqlalchemy.engine import Engine

from otel_sqla_lineage import attributes as attr
from otel_sqla_lineage.light_statements import LIGHT_PATH, LightStatement, mark_statement, take_mark
from otel_sqla_lineage.naming import DatabaseLocation, default_schema_of, location_from_url
from otel_sqla_lineage.package import _instruments
from otel_sqla_lineage.redact import redact_sql
from otel_sqla_lineage.runid import run_id_for
from otel_sqla_lineage.schema import SchemaAnnouncer
from otel_sqla_lineage.scrub import scrub_error_message
from otel_sqla_lineage.settings import Granularity, LineageSettings
from otel_sqla_lineage.statement import StatementLineage, StatementLineageCache
from otel_sqla_lineage.version import __version__

if TYPE_CHECKING:
    from otel_sqla_lineage.schema_at_start import SchemaAtStart

_log = logging.getLogger(__name__)

# Upstream keeps the statement span on the execution context under this name (engine.py,
# 0.40b0 .. 0.66b1). We only read it; a test pins that upstream still sets it.
_UPSTREAM_SPAN_ATTR = "_otel_span"
_MAX_LOGGED_FAILURES = 1024
_UPSTREAM_KWARGS = (
    "tracer_provider",
    "meter_provider",
    "enable_commenter",
    "commenter_options",
    "enable_attribute_commenter",
)


_MAX_MERGED_PER_ENGINE = 2048


class _EngineInfo:
    """What we know of one engine, computed at its first statement, and the span
    attributes of each statement shape run on it (lineage + engine), merged once."""

    __slots__ = ("attributes", "merged", "schema_key", "upstream_traced")

    def __init__(self, upstream_traced: bool, attributes: dict[str, Any], schema_key: str):
        self.upstream_traced = upstream_traced
        self.attributes = attributes
        self.schema_key = schema_key
        self.merged: dict[StatementLineage, dict[str, Any]] = {}

    def attributes_for(self, lineage: StatementLineage) -> dict[str, Any]:
        merged = self.merged.get(lineage)
        if merged is None:
            if len(self.merged) >= _MAX_MERGED_PER_ENGINE:
                self.merged.clear()
            merged = self.merged[lineage] = {**lineage.attributes, **self.attributes}
        return merged


class _StatementHooks:
    """The three SQLAlchemy listeners, and the state they share."""

    def __init__(
        self, tracer: Tracer, granularity: Granularity, schemas: SchemaAnnouncer,
        on_new_engine: Callable[[DatabaseLocation, Any], None] | None = None,
    ):
        self._tracer = tracer
        self._on_new_engine = on_new_engine
        self._granularity = granularity
        self._schemas = schemas
        self._cache = StatementLineageCache()
        self._engines: weakref.WeakKeyDictionary[Engine, _EngineInfo] = (
            weakref.WeakKeyDictionary()
        )
        self._own_spans: weakref.WeakKeyDictionary[Any, Span] = weakref.WeakKeyDictionary()
        self._failed_shapes: set[str] = set()
        self._lock = threading.Lock()
        # the enclosing span stamped last: statements of one job come in a row, so most
        # statements skip the look-up of the current span (racy reads are harmless: a
        # mismatch only stamps the same id again)
        self._last_stamped = 0
        # (engine as events name it, its info), weakly: replaced whole, so racy reads
        # are safe
        self._last_engine: tuple[weakref.ref[Any], _EngineInfo] | None = None

    # -- listeners ---------------------------------------------------------------------

    def before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
        executemany: bool,
    ) -> None:
        try:
            info = self._engine_info(conn.engine, conn)
            if LIGHT_PATH.active:
                mark_statement(statement)  # for LineageSampler: the next span is a statement's
            if info.upstream_traced or context is None or not is_instrumentation_enabled():
                return
            self._own_spans[context] = self._start_own_span(statement, conn)
        except Exception:
            self._log_failure(statement)

    def after_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
        executemany: bool,
    ) -> None:
        light = take_mark() if LIGHT_PATH.active else None
        if context is None:  # DBAPI-level executions some dialects make
            return
        own = self._own_spans.pop(context, None) if self._own_spans else None
        span = own or getattr(context, _UPSTREAM_SPAN_ATTR, None)
        if span is None:
            return
        try:
            if span.is_recording():
                self._enrich(span, conn, context, statement, cursor=cursor)
            elif type(light) is LightStatement:
                self._feed_light(light, span, conn.engine, conn, context, statement,
                                 cursor=cursor)
        except Exception:
            self._log_failure(statement)
        finally:
            if own is not None:
                own.end()

    def handle_error(self, exception_context: Any) -> None:
        light = take_mark() if LIGHT_PATH.active else None
        context = exception_context.execution_context
        if context is None:
            return
        own = self._own_spans.pop(context, None) if self._own_spans else None
        span = own or getattr(context, _UPSTREAM_SPAN_ATTR, None)
        if span is None:
            return
        statement = exception_context.statement or ""
        try:
            if type(light) is LightStatement and not span.is_recording():
                message = scrub_error_message(str(exception_context.original_exception))
                self._feed_light(light, span, exception_context.engine,
                                 exception_context.connection, context, statement, cursor=None,
                                 error=message)
            elif span.is_recording():
                self._enrich(span, exception_context.connection, context, statement, cursor=None)
                # scrubbed: drivers put bound values in messages (PostgreSQL's DETAIL,
                # "invalid input syntax for type integer: \"…\""). Upstream's own listener
                # would set the raw message and end its span: we end it here with ours and
                # take it off the context, so upstream's listener finds nothing to do.
                message = scrub_error_message(str(exception_context.original_exception))
                span.set_status(Status(StatusCode.ERROR, message))
        except Exception:
            self._log_failure(statement)
        finally:
            if own is not None:
                own.end()
            elif span.is_recording() and _take_upstream_span(context):
                span.end()

    # -- work --------------------------------------------------------------------------

    def _enrich(
        self, span: Span, conn: Any, context: Any, statement: str, *, cursor: Any
    ) -> None:
        attributes = self._lineage_attributes(
            conn, context, statement, cursor, span.get_span_context(),
            getattr(span, "parent", None),
        )
        redacted = redact_sql(statement)
        if redacted is not statement:
            # literals next to password/token columns in text() SQL: upstream recorded
            # the raw text; the span is still open, so the recorded text is replaced
            attributes.update(_redacted_statement_attributes(span, redacted))
        # one call: the SDK takes its lock and validates per call
        span.set_attributes(attributes)

    def _feed_light(
        self, light: LightStatement, span: Span, engine: Any, conn: Any, context: Any,
        statement: str, *, cursor: Any, error: str | None = None,
    ) -> None:
        """Lineage of a statement span LineageSampler dropped: the attributes the recorded
        span would carry (upstream's that lineage reads, then ours), without the span."""
        span_context = span.get_span_context()
        if span_context.trace_id != light.trace_id or span_context.span_id == light.parent.span_id:
            return  # not the span the sampler saw (a disabled tracer hands out its parent)
        attributes = _upstream_like_attributes(light.statement, engine.url, engine.dialect.name)
        attributes.update(
            self._lineage_attributes(conn, context, statement, cursor, span_context, light.parent)
        )
        name = _first_word(light.statement) or "sql"
        light.feed(span_context.span_id, name, attributes, error)

    def _lineage_attributes(
        self, conn: Any, context: Any, statement: str, cursor: Any,
        span_context: trace.SpanContext, parent: trace.SpanContext | None,
    ) -> dict[str, Any]:
        lineage = self._cache.for_execution(context, statement)
        info = self._engine_info(conn.engine, conn) if conn is not None else None
        attributes = info.attributes_for(lineage) if info is not None else lineage.attributes
        extra: dict[str, Any] = {attr.OPENLINEAGE_RUN_ID: self._run_id(span_context, parent)}
        if info is not None and lineage.tables:
            described = self._schemas.describe(info.schema_key, lineage, context)
            if described:
                extra[attr.SQLALCHEMY_SCHEMA] = described
        if cursor is not None and lineage.tables_written:
            rowcount = getattr(cursor, "rowcount", -1)
            # With RETURNING, some drivers (sqlite3) count rows only as they are fetched,
            # so a 0 before the fetch is not an answer: report nothing rather than 0.
            if isinstance(rowcount, int) and (
                rowcount > 0 or (rowcount == 0 and getattr(cursor, "description", None) is None)
            ):
                extra[attr.SQLALCHEMY_ROWCOUNT] = rowcount
        return {**attributes, **extra}

    def _run_id(self, span_context: trace.SpanContext, parent: trace.SpanContext | None) -> str:
        """The ``openlineage.run.id`` of a statement span; also stamped on its enclosing
        span, so Jaeger leads to the run. The exporter computes the same id."""
        if self._granularity != "job" or parent is None or parent.is_remote:
            return run_id_for(span_context.trace_id, span_context.span_id)
        run_id = run_id_for(span_context.trace_id, parent.span_id)
        if parent.span_id == self._last_stamped:
            return run_id
        enclosing = trace.get_current_span()
        if enclosing.get_span_context().span_id == parent.span_id:
            existing = getattr(enclosing, "attributes", None) or {}
            if attr.DB_SYSTEM in existing:
                # a database span in between (a hand-made "db" span): the run is the span
                # above it, as the exporter sees it; that span is out of reach to stamp
                above = getattr(enclosing, "parent", None)
                if above is not None and not above.is_remote:
                    return run_id_for(span_context.trace_id, above.span_id)
                return run_id_for(span_context.trace_id, span_context.span_id)
            if enclosing.is_recording():
                enclosing.set_attribute(attr.OPENLINEAGE_RUN_ID, run_id)
        self._last_stamped = parent.span_id
        return run_id

    def _engine_info(self, engine: Engine, conn: Any) -> _EngineInfo:
        last = self._last_engine
        if last is not None and last[0]() is engine:  # statements come in runs per engine
            return last[1]
        base = _base_engine(engine)
        info = self._engines.get(base)
        if info is not None:
            self._last_engine = (weakref.ref(engine), info)
            return info
        proxy, engine = engine, base
        new_location = None
        with self._lock:
            info = self._engines.get(engine)
            if info is None:
                dialect = conn.dialect
                location = location_from_url(
                    engine.url, getattr(dialect, "default_schema_name", None)
                )
                # Only what upstream's attributes do not already say: the exact namespace
                # (absolute SQLite path, host as the app sees it) and a default schema
                # other than the dialect's usual one (search_path, login default).
                attributes: dict[str, Any] = {
                    attr.OPENLINEAGE_DATASET_NAMESPACE: location.namespace,
                }
                if location.default_schema and location.default_schema != default_schema_of(
                    location.scheme
                ):
                    attributes[attr.SQLALCHEMY_DEFAULT_SCHEMA] = location.default_schema
                info = _EngineInfo(_upstream_traces(engine), attributes, location.namespace)
                self._engines[engine] = info
                new_location = location
        self._last_engine = (weakref.ref(proxy), info)
        if new_location is not None and self._on_new_engine is not None:
            self._on_new_engine(new_location, conn.dialect)  # logs and swallows its failures
        return info

    def mark_upstream_traced(self, engine: Engine) -> None:
        with self._lock:
            info = self._engines.get(_base_engine(engine))
            if info is not None:
                info.upstream_traced = True

    def _start_own_span(self, statement: str, conn: Any) -> Span:
        """A span like upstream's (its default, pre-1.26 semantic conventions), for an
        engine upstream does not trace."""
        operation = _first_word(statement)
        span = self._tracer.start_span(operation or "sql", kind=SpanKind.CLIENT)
        if span.is_recording():
            span.set_attributes(
                _upstream_like_attributes(statement, conn.engine.url, conn.dialect.name)
            )
        return span

    def _log_failure(self, statement: str) -> None:
        shape = redact_sql(statement)[:200]
        with self._lock:
            if shape in self._failed_shapes:
                return
            if len(self._failed_shapes) < _MAX_LOGGED_FAILURES:
                self._failed_shapes.add(shape)
        _log.warning(
            "otel-sqla-lineage: no lineage for statement %r (logged once per statement shape)",
            shape,
            exc_info=True,
        )

    def listeners(self) -> Iterable[tuple[str, Any]]:
        return (
            ("before_cursor_execute", self.before_cursor_execute),
            ("after_cursor_execute", self.after_cursor_execute),
            ("handle_error", self.handle_error),
        )


def _take_upstream_span(context: Any) -> bool:
    """Upstream's ``handle_error`` ends the span it finds on the context; False when the
    context refuses the change (upstream then ends the span, with the status we set)."""
    try:
        setattr(context, _UPSTREAM_SPAN_ATTR, None)
    except Exception:
        return False
    return True


def _redacted_statement_attributes(span: Span, redacted: str) -> dict[str, str]:
    """The statement attributes the span holds (``db.statement`` and/or
    ``db.query.text``, per ``OTEL_SEMCONV_STABILITY_OPT_IN``), each redacted; a comment
    upstream's commenter added is kept, since it is redacted in place."""
    recorded = getattr(span, "attributes", None) or {}
    out: dict[str, str] = {}
    for key in (attr.DB_STATEMENT, attr.DB_QUERY_TEXT):
        value = recorded.get(key)
        if isinstance(value, str):
            out[key] = redact_sql(value)
    return out or {attr.DB_STATEMENT: redacted}


def _db_system(dialect_name: str) -> str:
    # upstream's _normalize_vendor
    if "sqlite" in dialect_name:
        return "sqlite"
    if "postgres" in dialect_name:
        return "postgresql"
    return dialect_name


def _upstream_like_attributes(statement: str, url: Any, dialect_name: str) -> dict[str, Any]:
    """Upstream's span attributes that lineage reads (its default, pre-1.26 semantic
    conventions; the converter reads the newer names alike)."""
    attributes: dict[str, Any] = {
        attr.DB_SYSTEM: _db_system(dialect_name),
        attr.DB_STATEMENT: redact_sql(statement),
    }
    if url.database:
        attributes[attr.DB_NAME] = url.database
    if url.host:
        attributes[attr.NET_PEER_NAME] = url.host
    if url.port:
        attributes[attr.NET_PEER_PORT] = url.port
    return attributes


def _first_word(statement: str) -> str | None:
    words = statement.lstrip().split(None, 1)
    return words[0].upper() if words else None


def _base_engine(engine: Any) -> Any:
    """``engine.execution_options(...)`` returns an OptionEngine proxying the engine that
    carries the listeners; events fire with the proxy as ``conn.engine``."""
    for _ in range(8):
        proxied = getattr(engine, "_proxied", None)
        if proxied is None:
            break
        engine = proxied
    return engine


def _upstream_traces(engine: Engine) -> bool:
    from opentelemetry.instrumentation.sqlalchemy import engine as upstream_engine

    return bool(event.contains(engine, "after_cursor_execute", upstream_engine._after_cur_exec))


class SQLAlchemyLineageInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds ORM mapper and table attributes to the spans of SQLAlchemy statements.

    ``instrument()`` takes the keyword arguments of upstream's ``SQLAlchemyInstrumentor``
    (``engine``, ``engines``, ``tracer_provider``, ``meter_provider``, ``enable_commenter``,
    ``commenter_options``, ``enable_attribute_commenter``) plus ``granularity`` (``job`` or
    ``statement``: which run ``openlineage.run.id`` names; default from
    ``OTEL_SQLA_LINEAGE_GRANULARITY``) and ``emit_schema_at_start`` (send a DatasetEvent
    per mapped table once per engine, before its first statement; default from
    ``OTEL_SQLA_LINEAGE_EMIT_SCHEMA_AT_START``, see :mod:`otel_sqla_lineage.schema_at_start`).
    """

    _hooks: _StatementHooks | None = None
    _schema_at_start: SchemaAtStart | None = None
    _instrumented_upstream: bool = False

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> Any:
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        settings = LineageSettings.from_env(
            granularity=kwargs.get("granularity"),
            emit_schema_at_start=kwargs.get("emit_schema_at_start"),
        )
        tracer_provider: TracerProvider | None = kwargs.get("tracer_provider")
        tracer = trace.get_tracer(__name__, __version__, tracer_provider)
        at_start = None
        if settings.emit_schema_at_start:  # imports sqlalchemy.orm: only when asked for
            from otel_sqla_lineage.schema_at_start import SchemaAtStart

            at_start = SchemaAtStart(settings)
        hooks = _StatementHooks(
            tracer, settings.granularity, SchemaAnnouncer(settings.schema_max_columns),
            at_start.engine_seen if at_start is not None else None,
        )
        if at_start is not None:
            at_start.listen()
        self._schema_at_start = at_start
        upstream = SQLAlchemyInstrumentor()
        upstream_kwargs = {k: kwargs[k] for k in _UPSTREAM_KWARGS if k in kwargs}
        self._instrumented_upstream = False
        if not upstream.is_instrumented_by_opentelemetry:
            # sqlalchemy.ext.asyncio binds create_engine when first imported; imported after
            # upstream wraps it, every async engine would get two tracers (upstream issue
            # opentelemetry-python-contrib#2149). Import it first.
            import sqlalchemy.ext.asyncio  # noqa: F401

            # Upstream's version gate says "< 2.1"; its code runs on 2.1 unchanged.
            upstream.instrument(skip_dep_check=True, **upstream_kwargs)
            self._instrumented_upstream = True
        for name, listener in hooks.listeners():
            event.listen(Engine, name, listener)
        self._hooks = hooks
        explicit = _explicit_engines(kwargs)
        for engine in explicit:
            _trace_with_upstream(engine, upstream_kwargs)
            hooks.mark_upstream_traced(engine)
        if kwargs.get("engine") is not None:
            return kwargs["engine"]
        return explicit or None

    def _uninstrument(self, **kwargs: Any) -> None:
        hooks = self._hooks
        if hooks is not None:
            for name, listener in hooks.listeners():
                if event.contains(Engine, name, listener):
                    event.remove(Engine, name, listener)
            self._hooks = None
        at_start = self._schema_at_start
        if at_start is not None:
            self._schema_at_start = None
            at_start.remove()
            at_start.close(5.0)
        if self._instrumented_upstream:
            from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

            self._instrumented_upstream = False
            try:
                SQLAlchemyInstrumentor().uninstrument()
            except Exception:  # never into the app; what upstream left is logged
                _log.exception("otel-sqla-lineage: upstream SQLAlchemy uninstrument failed")


def _explicit_engines(kwargs: dict[str, Any]) -> list[Engine]:
    engines: list[Any] = []
    if kwargs.get("engine") is not None:
        engines.append(kwargs["engine"])
    extra = kwargs.get("engines")
    if isinstance(extra, Sequence):
        engines.extend(extra)
    # an AsyncEngine runs on its sync_engine, which is where events fire
    return [getattr(e, "sync_engine", e) for e in engines]


def _trace_with_upstream(engine: Engine, upstream_kwargs: dict[str, Any]) -> None:
    """Give an engine created before instrumentation upstream's span-making listeners."""
    if _upstream_traces(engine):
        return
    from opentelemetry.instrumentation.sqlalchemy import engine as upstream_engine
    from opentelemetry.instrumentation.sqlalchemy.version import __version__ as upstream_version
    from opentelemetry.metrics import get_meter

    tracer = trace.get_tracer(
        "opentelemetry.instrumentation.sqlalchemy",
        upstream_version,
        upstream_kwargs.get("tracer_provider"),
    )
    meter = get_meter(
        "opentelemetry.instrumentation.sqlalchemy",
        upstream_version,
        upstream_kwargs.get("meter_provider"),
    )
    connections_usage = meter.create_up_down_counter(
        name="db.client.connections.usage",
        unit="connections",
        description="The number of connections that are currently in state described by "
        "the state attribute.",
    )
    upstream_engine.EngineTracer(  # type: ignore[no-untyped-call]
        tracer,
        engine,
        connections_usage,
        upstream_kwargs.get("enable_commenter", False),
        upstream_kwargs.get("commenter_options", {}),
        upstream_kwargs.get("enable_attribute_commenter", False),
    )

