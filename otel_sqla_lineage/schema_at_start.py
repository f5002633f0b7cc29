"""Emit-at-start: the static ``DatasetEvent`` s of ``otel-sqla-lineage schema``, sent by
the instrumented application itself, so Marquez shows every mapped table and its schema
before it is first queried (setting ``emit_schema_at_start``).

When: a table's dataset is named by the engine it is used through (the namespace comes
from the engine URL), and models are usually imported after ``instrument()``. So each
(engine, table) pair is announced once, at whichever comes last of

* the engine's first statement (before it runs): every table of every SQLAlchemy registry
  known then, in that engine's namespace, types rendered by its dialect;
* a mapper configuration (SQLAlchemy's ``after_configured``, which runs before the first
  ORM query of newly imported models): the new tables, for every engine seen so far.

Every table is announced for every engine: SQLAlchemy does not say which database a
registry's tables live in (sessions bind per call). An application with two databases
gets each table announced in both namespaces.

Never hurts the app: the work runs at most once per table and engine, failures are logged
and swallowed, and events go to a bounded queue drained by a background thread (the same
transport resolution as the exporter; no network I/O in the application's thread).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import event
from sqlalchemy.orm import Mapper

from otel_sqla_lineage.dataset_events import table_event
from otel_sqla_lineage.delivery import DeliveryQueue, EventSink, sink_from_environment
from otel_sqla_lineage.model_tables import FoundModels, table_snapshot
from otel_sqla_lineage.naming import DatabaseLocation
from otel_sqla_lineage.settings import LineageSettings

_log = logging.getLogger(__name__)

_MAX_ANNOUNCED: Final = 100_000  # (namespace, table) pairs remembered; beyond, no more events
_MAX_ENGINES: Final = 256


class SchemaAtStart:
    def __init__(
        self,
        settings: LineageSettings,
        sink_factory: Callable[[], EventSink] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self._settings = settings
        self._sink_factory = sink_factory or (lambda: sink_from_environment(settings))
        self._clock = clock
        self._lock = threading.Lock()
        self._found = FoundModels()
        self._engines: dict[str, tuple[DatabaseLocation, Any]] = {}
        self._announced: set[tuple[str, str]] = set()
        self._queue: DeliveryQueue | None = None
        self._failed = False

    # -- SQLAlchemy hooks ------------------------------------------------------------------

    def listen(self) -> None:
        event.listen(Mapper, "mapper_configured", self._mapper_configured)
        event.listen(Mapper, "after_configured", self._after_configured)

    def remove(self) -> None:
        for name, fn in (("mapper_configured", self._mapper_configured),
                         ("after_configured", self._after_configured)):
            if event.contains(Mapper, name, fn):
                event.remove(Mapper, name, fn)

    def _mapper_configured(self, mapper: Any, class_: Any) -> None:
        try:
            with self._lock:
                self._found.add_registry(mapper.registry)
        except Exception:
            self._log_failure()

    def _after_configured(self) -> None:
        self._announce()

    def engine_seen(self, location: DatabaseLocation, dialect: Any) -> None:
        """Called by the instrumentor at an engine's first statement, before it runs."""
        with self._lock:
            if len(self._engines) < _MAX_ENGINES:
                self._engines.setdefault(location.namespace, (location, dialect))
        self._announce()

    # -- work ------------------------------------------------------------------------------

    def _announce(self) -> None:
        try:
            events = self._pending_events()
            if events:
                self._delivery().put_many(events)
        except Exception:
            self._log_failure()

    def _pending_events(self) -> list[dict[str, Any]]:
        # outside our lock: SQLAlchemy takes its configure mutex here, and holds it while it
        # calls _mapper_configured, which takes our lock (one lock order, no deadlock)
        registries = _all_registries() if self._engines else []
        with self._lock:
            if not self._engines:
                return []
            for reg in registries:
                self._found.add_registry(reg)
            tables = self._found.tables()
            classes: dict[int, list[str]] | None = None
            now = self._clock()
            events = []
            for namespace, (location, dialect) in self._engines.items():
                for table in tables:
                    key = (namespace, str(table.fullname))
                    if key in self._announced or len(self._announced) >= _MAX_ANNOUNCED:
                        continue
                    self._announced.add(key)
                    if classes is None:
                        classes = self._found.mapped_classes()
                    snap = table_snapshot(table, dialect, classes.get(id(table), ()))
                    events.append(table_event(snap, location, now))
            return events

    def _delivery(self) -> DeliveryQueue:
        with self._lock:
            if self._queue is None:
                self._queue = DeliveryQueue(self._sink_factory(), self._settings.queue_max_events)
                # the queue's worker is a daemon: deliver what the app's start queued
                atexit.register(self.close, 5.0)
            return self._queue

    def flush(self, timeout: float | None = None) -> bool:
        queue = self._queue
        return queue.flush(timeout) if queue is not None else True

    def close(self, timeout: float | None = 30.0) -> None:
        with self._lock:
            queue, self._queue = self._queue, None
        if queue is not None:
            atexit.unregister(self.close)
            queue.close(timeout)

    def _log_failure(self) -> None:
        if self._failed:
            return
        self._failed = True
        _log.warning("otel-sqla-lineage: schema events at start failed (logged once)",
                     exc_info=True)


def _all_registries() -> list[Any]:
    """Every registry SQLAlchemy knows, including those configured before ``instrument()``
    (whose ``mapper_configured`` we missed). A private function of SQLAlchemy (1.4 .. 2.1);
    without it, registries are learnt from ``mapper_configured`` alone."""
    try:
        from sqlalchemy.orm import mapperlib

        getter = getattr(mapperlib, "_all_registries", None)
        if getter is not None:
            return list(getter())
        return list(getattr(mapperlib, "_mapper_registries", {}))
    except Exception:
        return []
