"""Airflow's metadata database as lineage jobs: one span per transaction Airflow runs on its
metadata database, named after the Airflow function that holds the session.

Why: Airflow's own statements (dag_run, task_instance, xcom, ...) mostly run outside any
span -- the scheduler loop of ``airflow dags test`` has none, and the in-process Execution
API runs its handlers on a thread the request span does not reach -- so each statement
would be a job of its own (``airflow.SELECT dag_run``). An Airflow developer thinks in
units of work instead: ``DagRun.update_state``, the ``ti_run`` endpoint, ``DAG.test``'s
own loop. Each of those owns a SQLAlchemy session and commits it; a transaction is the
unit of work, and the function that holds the session is its name.

* ``after_begin`` (the transaction's first statement): start a span named
  ``<module without "airflow.">.<qualified function name>`` of the outermost Airflow
  frame that holds this session in a local variable (the provide_session wrapper and the
  Execution API's session dependency are skipped: the function they serve is the owner);
* every statement of that transaction runs with the span as its current span, set in
  ``before_cursor_execute`` and reset in ``after_cursor_execute``/``handle_error``, on
  whichever thread runs it (so the exporter groups them under it, "job" granularity);
* ``after_transaction_end`` of the outermost transaction ends the span.

Only Airflow's own engines are touched (``airflow.settings.engine`` and the async one).
Loaded from ``airflow_local_settings.py`` (Airflow imports it before it creates its
engine). Never raises into Airflow: a failure is logged once and the statement runs on.
"""

from __future__ import annotations

import logging
import sys
import weakref
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

_SPAN = "otel_sqla_lineage.airflow_transaction_span"
# frames that hand a session to the function that uses it, never its owner
_PLUMBING = (
    "airflow.utils.session",
    "airflow.api_fastapi.common.db",
    "airflow.utils.retries",
    "airflow.utils.sqlalchemy",
)
_tokens: weakref.WeakKeyDictionary[Any, object] = weakref.WeakKeyDictionary()
_installed = False
_failed = False


def install() -> None:
    """Idempotent: listen to every Session and Engine, act only on Airflow's engines."""
    global _installed
    if _installed:
        return
    _installed = True
    event.listen(Session, "after_begin", _on_begin)
    event.listen(Session, "after_transaction_end", _on_end)
    # first of all before_cursor_execute listeners: the statement span starts under ours
    event.listen(Engine, "before_cursor_execute", _enter, insert=True)
    event.listen(Engine, "after_cursor_execute", _leave)
    event.listen(Engine, "handle_error", _leave_on_error)


def _airflow_engines() -> tuple[Any, ...]:
    settings = sys.modules.get("airflow.settings")
    if settings is None:
        return ()
    engines = [getattr(settings, "engine", None)]
    async_engine = getattr(settings, "async_engine", None)
    if async_engine is not None:
        engines.append(getattr(async_engine, "sync_engine", None))
    return tuple(e for e in engines if e is not None)


def owner_name(session: Session, frame: Any) -> str:
    """``models.dagrun.DagRun.update_state``: the outermost Airflow function whose locals
    hold ``session``, not counting the helpers that only hand it over."""
    found = None
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith("airflow.") and not module.startswith(_PLUMBING):
            if any(value is session for value in frame.f_locals.values()):
                code = frame.f_code
                found = f"{module.removeprefix('airflow.')}." + getattr(
                    code, "co_qualname", code.co_name)
            elif found is not None:
                break  # the caller does not know the session: found is the owner
        frame = frame.f_back
    return found or "metadata_session"


def _guard(fn: Any) -> Any:
    def guarded(*args: Any) -> None:
        global _failed
        try:
            fn(*args)
        except Exception:
            if not _failed:
                _failed = True
                _log.warning("airflow_metadata_spans: %s failed; Airflow runs on "
                             "(logged once)", fn.__name__, exc_info=True)
    guarded.__name__ = fn.__name__
    return guarded


@_guard
def _on_begin(session: Session, transaction: Any, connection: Any) -> None:
    if connection.engine not in _airflow_engines():
        return
    held = session.info.get(_SPAN)
    if held is None:
        name = owner_name(session, sys._getframe(1))
        span = _tracer.start_span(name, attributes={"airflow.metadata.owner": name})
        held = session.info[_SPAN] = (span, [])
    # the pooled connection's own dict: still reachable when the Connection is closed
    info = connection.info
    held[1].append(info)
    info[_SPAN] = held[0]


@_guard
def _on_end(session: Session, transaction: Any) -> None:
    if transaction.parent is not None:
        return
    held = session.info.pop(_SPAN, None)
    if held is None:
        return
    span, infos = held
    span.end()
    for info in infos:
        if info.get(_SPAN) is span:
            del info[_SPAN]


@_guard
def _enter(conn: Any, cursor: Any, statement: Any, params: Any, context: Any,
           executemany: Any) -> None:
    span = conn.info.get(_SPAN) if context is not None else None
    if span is not None:
        _tokens[context] = otel_context.attach(trace.set_span_in_context(span))


def _reset(context: Any) -> None:
    token = _tokens.pop(context, None) if context is not None else None
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]


@_guard
def _leave(conn: Any, cursor: Any, statement: Any, params: Any, context: Any,
           executemany: Any) -> None:
    _reset(context)


@_guard
def _leave_on_error(exception_context: Any) -> None:
    _reset(exception_context.execution_context)
