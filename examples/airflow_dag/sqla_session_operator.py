"""``SQLAlchemySessionOperator``: run a function with an ORM session on an Airflow
connection -- committed when it returns, rolled back when it raises, always closed --
inside a span named ``<dag_id>.<task_id>``, so the task is one lineage job whose inputs
and outputs are the tables its statements read and wrote.

Why a span of our own: ``airflow dags test`` runs tasks in-process without the
``worker.<task_id>`` span Airflow's task runner makes in a real worker, and even there the
task's job should carry the task's name. When Airflow's OpenLineage provider is installed,
the span also carries ``openlineage.parent.id`` / ``openlineage.root_parent.id`` from the
provider's ``lineage_parent_id`` / ``lineage_root_parent_id`` macros, so our run's
``parent`` facet names the provider's task run and ``root`` its DAG run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from airflow.sdk import BaseHook, BaseOperator
from opentelemetry import trace
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine
from sqlalchemy.orm import Session

_log = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)

# Airflow connection types -> SQLAlchemy drivers
_DRIVERS = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2",
            "sqlite": "sqlite"}
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()

SessionCallable = Callable[[Session, dict[str, Any]], Any]


def engine_for(conn_id: str) -> Engine:
    """One engine per connection id and process. ``hide_parameters``: SQLAlchemy puts
    bound values in its exception text, which the task log and the span would show."""
    with _engines_lock:
        engine = _engines.get(conn_id)
        if engine is None:
            conn = BaseHook.get_connection(conn_id)
            driver = _DRIVERS.get(conn.conn_type or "")
            if driver is None:
                raise ValueError(f"connection {conn_id!r}: type {conn.conn_type!r} is not "
                                 f"one of {sorted(_DRIVERS)}")
            if driver == "sqlite":
                url = URL.create(driver, database=conn.host or conn.schema)
            else:
                url = URL.create(driver, username=conn.login, password=conn.password,
                                 host=conn.host, port=conn.port, database=conn.schema)
            engine = _engines[conn_id] = create_engine(url, hide_parameters=True)
        return engine


def _openlineage_parent(context: dict[str, Any]) -> dict[str, str]:
    """The provider's task run as ``namespace/job/runId`` (and its DAG run as root)."""
    try:
        from airflow.providers.openlineage.plugins.macros import (
            lineage_parent_id,
            lineage_root_parent_id,
        )
    except ImportError:
        return {}
    ti = context["ti"]
    try:
        return {"openlineage.parent.id": lineage_parent_id(ti),
                "openlineage.root_parent.id": lineage_root_parent_id(ti)}
    except Exception:  # the task runs on without a parent facet
        _log.warning("no OpenLineage parent for %s", ti, exc_info=True)
        return {}


class SQLAlchemySessionOperator(BaseOperator):  # type: ignore[misc]  # Any without airflow
    """``python_callable(session, context)`` with a managed ORM session on ``conn_id``."""

    def __init__(self, *, conn_id: str, python_callable: SessionCallable,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.python_callable = python_callable

    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        attributes = {
            "airflow.dag_id": ti.dag_id,
            "airflow.task_id": ti.task_id,
            "airflow.dag_run.run_id": ti.run_id,
            "airflow.task_instance.try_number": ti.try_number,
            **_openlineage_parent(context),
        }
        # the span records the exception and ends with status ERROR: the run FAILs
        with _tracer.start_as_current_span(f"{ti.dag_id}.{ti.task_id}",
                                           attributes=attributes):
            session = Session(engine_for(self.conn_id))
            try:
                result = self.python_callable(session, context)
                session.commit()
                return result
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
