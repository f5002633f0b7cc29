"""Synthetic spans with fixed ids and times, shaped like what upstream + our instrumentor
put on real spans (see test_exporter_sqlite.py for the real thing)."""

from __future__ import annotations

import uuid
from typing import Any

from otel_sqla_lineage.spans import SpanEventView, SpanView

TRACE = 0x0AF7651916CD43DD8448EB211C80319C
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
RUN_ID_NAMESPACE = uuid.UUID("5a2cde9c-eb3f-5eae-95e2-86bf67b8a06d")
RESOURCE = {"service.name": "library", "telemetry.sdk.language": "python"}


def expected_run_id(trace_id: int, span_id: int) -> str:
    """The documented formula, written out independently of otel_sqla_lineage.runid."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, f"{trace_id:032x}{span_id:016x}"))


def app_span(span_id: int, name: str, *, parent: int | None = None, start: int = 0,
             end: int = 100, status: str = "UNSET", message: str | None = None,
             remote_parent: bool = False, events: tuple[SpanEventView, ...] = (),
             trace_id: int = TRACE) -> SpanView:
    return SpanView(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
        start_ns=T0 + start * 1_000_000, end_ns=T0 + end * 1_000_000, attributes={},
        resource=RESOURCE, status=status, status_message=message, kind="INTERNAL",
        parent_is_remote=remote_parent if parent is not None else False, events=events,
    )


def sqlite_statement(span_id: int, parent: int | None, *, sql: str, operation: str,
                     read: tuple[str, ...] = (), written: tuple[str, ...] = (),
                     start: int = 10, end: int = 20, status: str = "UNSET",
                     extra: dict[str, Any] | None = None, trace_id: int = TRACE,
                     remote_parent: bool = False) -> SpanView:
    attributes: dict[str, Any] = {
        "db.system": "sqlite",
        "db.name": "/srv/library.db",
        "db.statement": sql,
        "db.operation.name": operation,
        "db.sqlalchemy.source": "orm",
        "openlineage.dataset.namespace": "sqlite://apphost/srv/library.db",
    }
    if read:
        attributes["db.sqlalchemy.tables.read"] = read
    if written:
        attributes["db.sqlalchemy.tables.written"] = written
    attributes.update(extra or {})
    return SpanView(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent,
        name=f"{operation} /srv/library.db", start_ns=T0 + start * 1_000_000,
        end_ns=T0 + end * 1_000_000, attributes=attributes, resource=RESOURCE,
        status=status, kind="CLIENT",
        parent_is_remote=remote_parent if parent is not None else False,
    )
