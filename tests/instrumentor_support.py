"""Helpers of the instrumentor tests: the seeded library database, a log of the statements
the driver ran, and the contract attributes of a span.

The statement log is kept by a ``before_cursor_execute`` listener of our own on the engine,
independent of the code under test, so "exactly one span per statement" is checked against
what the database was actually sent: same SQL, same order, same count.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import models
import sqlalchemy
from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

SQLA_VERSION = tuple(int(part) for part in sqlalchemy.__version__.split(".")[:2])

DB_OPERATION_NAME = "db.operation.name"
DB_COLLECTION_NAME = "db.collection.name"
MAPPERS = "db.sqlalchemy.mappers"
TABLES_READ = "db.sqlalchemy.tables.read"
TABLES_WRITTEN = "db.sqlalchemy.tables.written"
SOURCE = "db.sqlalchemy.source"
RUN_ID = "openlineage.run.id"
CONTRACT_KEYS = (DB_OPERATION_NAME, DB_COLLECTION_NAME, MAPPERS, TABLES_READ, TABLES_WRITTEN,
                 SOURCE)

UPSTREAM_SCOPE = "opentelemetry.instrumentation.sqlalchemy"
OUR_SCOPE = "otel_sqla_lineage.instrumentor"


def expected(
    operation: str,
    source: str,
    *,
    collection: str | None = None,
    mappers: tuple[str, ...] = (),
    read: tuple[str, ...] = (),
    written: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The contract attributes a span should carry; empty ones are absent from the span."""
    out: dict[str, Any] = {DB_OPERATION_NAME: operation, SOURCE: source}
    if collection is not None:
        out[DB_COLLECTION_NAME] = collection
    if mappers:
        out[MAPPERS] = mappers
    if read:
        out[TABLES_READ] = read
    if written:
        out[TABLES_WRITTEN] = written
    return out


def lineage(span: ReadableSpan) -> dict[str, Any]:
    """The contract attributes present on ``span`` (sequences as tuples)."""
    attrs = span.attributes or {}
    out: dict[str, Any] = {}
    for key in CONTRACT_KEYS:
        if key in attrs:
            value = attrs[key]
            out[key] = tuple(value) if isinstance(value, (list, tuple)) else value
    return out


def statement_of(span: ReadableSpan) -> str | None:
    attrs = span.attributes or {}
    value = attrs.get("db.statement", attrs.get("db.query.text"))
    return None if value is None else str(value)


class StatementLog:
    """Every statement the engine handed to a DBAPI cursor, in order."""

    def __init__(self, engine: Any) -> None:
        self.statements: list[str] = []
        self._engine: Engine = getattr(engine, "sync_engine", engine)
        event.listen(self._engine, "before_cursor_execute", self._record)

    def _record(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
        executemany: bool,
    ) -> None:
        self.statements.append(statement)

    def clear(self) -> None:
        self.statements.clear()

    def close(self) -> None:
        if event.contains(self._engine, "before_cursor_execute", self._record):
            event.remove(self._engine, "before_cursor_execute", self._record)


def spans_per_statement(traced: Any, log: StatementLog) -> list[ReadableSpan]:
    """The statement spans finished since the last clear, asserted to be exactly one per
    statement the driver ran (same SQL text, same order)."""
    spans = traced.statement_spans()
    traced_statements = [statement_of(s) for s in spans]
    assert traced_statements == log.statements, (
        f"expected exactly one span per executed statement:\n spans:    {traced_statements}"
        f"\n executed: {log.statements}"
    )
    assert log.statements, "the action ran no statement at all"
    return spans


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def attach_inventory(engine: Any, inventory_path: Path) -> None:
    """SQLite has no schemas; an attached database named ``inventory`` stands in for one."""
    target = getattr(engine, "sync_engine", engine)

    @event.listens_for(target, "connect")
    def _attach(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"ATTACH DATABASE '{inventory_path}' AS inventory")
        cursor.close()


def make_sqlite_engine(directory: Path, name: str = "library.db", **kwargs: Any) -> Engine:
    """A file SQLite engine with the ``inventory`` schema attached. ``sqlalchemy.create_engine``
    is looked up at call time, so an instrumentation that wrapped it applies."""
    engine = sqlalchemy.create_engine(sqlite_url(directory / name), **kwargs)
    attach_inventory(engine, directory / f"inventory-{name}")
    return engine


def seed(conn: Any) -> None:
    """The library's rows. Ids are fixed so tests can name them."""
    conn.execute(insert(models.users), [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}])
    conn.execute(insert(models.groups), [{"id": 1, "name": "readers"}])
    conn.execute(insert(models.user_groups), [{"user_id": 1, "group_id": 1}])
    conn.execute(insert(models.books), [{"id": 1, "title": "Dune"}, {"id": 2, "title": "Emma"}])
    conn.execute(
        insert(models.book_history),
        [
            {"id": 1, "user_id": 1, "book_id": 1, "checked_out": datetime.date(2024, 1, 2),
             "returned": datetime.date(2024, 1, 20)},
            {"id": 2, "user_id": 2, "book_id": 2, "checked_out": datetime.date(2024, 2, 1),
             "returned": None},
        ],
    )
    conn.execute(insert(models.posts), [{"id": 1, "user_id": 1, "title": "hello"}])
    conn.execute(insert(models.media), [{"id": 1, "kind": "ebook", "title": "Dune (ebook)"}])
    conn.execute(insert(models.ebooks), [{"id": 1, "file_format": "epub"}])
    conn.execute(
        insert(models.members),
        [{"id": 1, "kind": "member", "name": "carol", "role": None},
         {"id": 2, "kind": "staff", "name": "dave", "role": "librarian"}],
    )
    conn.execute(insert(models.stock_items), [{"id": 1, "book_id": 1, "quantity": 3}])


@dataclass
class Library:
    """The library database on one engine, seeded, with its statement log."""

    engine: Any
    traced: Any
    log: StatementLog
    _sessions: list[Session] = field(default_factory=list)

    def session(self, **kwargs: Any) -> Session:
        session = Session(self.engine, **kwargs)
        self._sessions.append(session)
        return session

    def run(self, action: Callable[[], Any]) -> list[ReadableSpan]:
        """Spans of the statements ``action`` ran, one per statement (asserted)."""
        self.traced.clear()
        self.log.clear()
        action()
        return spans_per_statement(self.traced, self.log)

    def close(self) -> None:
        for session in self._sessions:
            session.close()
        self.log.close()
        self.engine.dispose()


def open_library(traced: Any, directory: Path, **engine_kwargs: Any) -> Library:
    engine = make_sqlite_engine(directory, **engine_kwargs)
    models.metadata.create_all(engine)
    with engine.begin() as conn:
        seed(conn)
    library = Library(engine, traced, StatementLog(engine))
    traced.clear()
    return library


def iter_listener_modules(engine: Engine) -> Iterator[tuple[str, str]]:
    """(event, module) of every listener an engine would run for the statement events,
    class-level ones included (``handle_error`` lives on the dialect from 2.0)."""
    for name in ("before_cursor_execute", "after_cursor_execute"):
        for fn in getattr(engine.dispatch, name):
            yield name, str(getattr(fn, "__module__", None))
    dispatch = engine.dialect.dispatch if SQLA_VERSION >= (2, 0) else engine.dispatch
    for fn in dispatch.handle_error:
        yield "handle_error", str(getattr(fn, "__module__", None))


def reset_instrumentation() -> None:
    """Uninstrument ours and upstream's, and if an ``uninstrument()`` raises, clean up what it
    left so later tests start from nothing. The failure itself is asserted by the test that
    provoked it; this only keeps it from cascading."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor

    ours = SQLAlchemyLineageInstrumentor()
    upstream = SQLAlchemyInstrumentor()
    for instrumentor in (ours, upstream):
        if not instrumentor.is_instrumented_by_opentelemetry:
            continue
        try:
            instrumentor.uninstrument()
        except Exception:
            instrumentor._is_instrumented_by_opentelemetry = False
    if getattr(ours, "_instrumented_upstream", False):
        ours._instrumented_upstream = False
    for target_ref, identifier, fn in list(EngineTracer._remove_event_listener_params):
        target = target_ref()
        if target is not None and event.contains(target, identifier, fn):
            event.remove(target, identifier, fn)
    EngineTracer._remove_event_listener_params.clear()
