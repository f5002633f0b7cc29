"""Spans in (from any thread), events out: the shared run assembly under a lock, in front
of a bounded delivery queue that also expires what waited too long. The in-process
exporter and collector_exporter are thin shells around one of these."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from otel_sqla_lineage.assemble import RunAssembler
from otel_sqla_lineage.convert import Converter
from otel_sqla_lineage.delivery import DeliveryQueue, EventSink, SpooledDelivery
from otel_sqla_lineage.errors import ConfigError
from otel_sqla_lineage.forking import ForkRegistry
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spans import SpanView
from otel_sqla_lineage.spool import Spool, claim_spool

_log = logging.getLogger(__name__)


class LineagePipeline:
    """``spool_required``: a spool directory that cannot be used is a ConfigError (the
    collector_exporter refuses to start); otherwise it is logged and delivery goes on
    without a spool, since an instrumented app must not fail because of its lineage."""

    def __init__(
        self, settings: LineageSettings, sink: EventSink, *, spool_required: bool = False
    ) -> None:
        if settings.spool_dir is not None:
            # resolved once: a forked child claims its slot in the same directory even if
            # the app changed its working directory since
            settings = dataclasses.replace(
                settings, spool_dir=str(Path(settings.spool_dir).absolute()))
        self.settings = settings
        self._spool_required = spool_required
        self._assembler = RunAssembler(Converter(settings))
        self._lock = threading.Lock()
        self._delivery = self._new_delivery(sink, settings.queue_max_events)
        # in a forked child, until its first event: the sink and bound of its delivery
        self._unclaimed: tuple[EventSink, int] | None = None
        self._claim_lock = threading.Lock()
        _PIPELINES.add(self)

    def _new_delivery(self, sink: EventSink, max_events: int) -> DeliveryQueue | SpooledDelivery:
        spool = _open_spool(self.settings, required=self._spool_required)
        if spool is not None:
            try:
                return SpooledDelivery(sink, spool, max_events, tick=self._expire)
            except Exception:
                if self._spool_required:
                    spool.close()
                    raise
                _log.exception("otel-sqla-lineage: cannot start delivery from the spool %s; "
                               "delivering without a spool", spool.directory)
                spool.close()  # its lock must not outlive it
        return DeliveryQueue(sink, max_events, tick=self._expire)

    def _active(self) -> DeliveryQueue | SpooledDelivery:
        """The delivery, set up at first use in a forked child: a fork that never emits
        (``subprocess`` with ``preexec_fn``, a daemonising double fork, a ``multiprocessing``
        helper) takes no spool slot, starts no thread and sends no earlier backlog."""
        if self._unclaimed is not None:
            with self._claim_lock:
                if self._unclaimed is not None:
                    self._delivery = self._new_delivery(*self._unclaimed)
                    self._unclaimed = None
        return self._delivery

    def after_fork_in_child(self) -> None:
        """A forked child (gunicorn --preload) starts empty, with a fresh lock (the
        parent's export thread may have held it at the fork); the held runs are the
        parent's to emit. The parent's spool is not the child's: at its first event the
        child claims a worker slot of the same directory (none free: no spool)."""
        self._lock = threading.Lock()
        self._claim_lock = threading.Lock()
        self._assembler = RunAssembler(Converter(self.settings))
        old = self._delivery
        if isinstance(old, SpooledDelivery):
            old.after_fork_in_child()  # idempotent: drops the inherited spool
            if old.forked_away:
                self._unclaimed = (old.sink, old.max_events)

    @property
    def sink(self) -> EventSink:
        return self._delivery.sink

    def add(self, spans: Iterable[SpanView]) -> int:
        """Assemble and queue; returns how many spans could not be converted (logged)."""
        events: list[dict[str, Any]] = []
        failures = 0
        for span in spans:
            # the lock per span, not per batch: the app's thread (the light path for
            # sampled-out statements) must not wait for a whole batch of 512 spans
            try:
                with self._lock:
                    events.extend(self._assembler.add(span))
            except Exception:
                failures += 1
                _log.exception(
                    "otel-sqla-lineage: span %r could not be converted; skipped", span.name
                )
        if events:  # most spans (statements held for their run) emit nothing yet
            self._active().put_many(events)
        return failures

    def _expire(self) -> list[dict[str, Any]]:
        # queued under the lock, so put_count never misses events the assembler let go
        with self._lock:
            self._delivery.put_many(self._assembler.expire())
        return []

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = self._assembler.stats.as_dict()
            out["held"] = self._assembler.held
        out.update(
            delivered=self._delivery.delivered,
            dropped=self._delivery.dropped,
            failed=self._delivery.failed,
        )
        out.update(self._delivery.stats())
        return out

    @property
    def held(self) -> int:
        with self._lock:
            return self._assembler.held

    @property
    def put_count(self) -> int:
        """Events handed to delivery so far (a mark for :meth:`handed_off`). Exact only
        while no :meth:`add` runs (collector_exporter holds its request-log lock)."""
        with self._lock:
            return self._delivery.put_count

    def held_traces(self) -> set[int]:
        with self._lock:
            return self._assembler.held_traces()

    def handed_off(self, target: int, timeout: float | None = None) -> bool:
        """True once the first ``target`` events are spooled on disk (delivered or counted
        as failed without a spool, dropped if it was full): this process may then die
        without losing them."""
        return self._delivery.handed_off(target, timeout)

    def release_held(self) -> None:
        """Emit every held run now, without waiting for delivery."""
        with self._lock:
            events = self._assembler.drain()
            if events:  # queued under the lock, as in _expire
                self._active().put_many(events)

    def flush(self, timeout: float | None = None) -> bool:
        """Emit every held run and statement, and wait until the sink has them."""
        delivery = self._drain_into_delivery()
        return True if delivery is None else delivery.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Emit every held run; the delivery then waits for the sink within ``timeout``
        (with a spool: until everything is on disk, plus a short grace for the sink)."""
        delivery = self._drain_into_delivery()
        return True if delivery is None else delivery.close(timeout)

    def _drain_into_delivery(self) -> DeliveryQueue | SpooledDelivery | None:
        """Every held run and statement queued for delivery; None in a forked child that
        has emitted nothing (no slot to take, nothing to wait for)."""
        with self._lock:
            events = self._assembler.drain()
        if not events and self._unclaimed is not None:
            return None
        delivery = self._active()
        delivery.put_many(events)
        return delivery


# After the deliveries' registry (delivery is imported first): a pipeline's reset
# replaces its delivery, which has restarted by then.
_PIPELINES = ForkRegistry("lineage pipeline")


def _open_spool(settings: LineageSettings, *, required: bool) -> Spool | None:
    """``required`` (collector_exporter): the directory itself, exclusively. Otherwise
    (the library, maybe one of several worker processes) a free worker slot will do."""
    if settings.spool_dir is None:
        return None
    try:
        if required:
            return Spool(settings.spool_dir, settings.spool_max_bytes)
        spool = claim_spool(settings.spool_dir, settings.spool_max_bytes)
        if spool.directory.parent == Path(settings.spool_dir).absolute():
            _log.info("otel-sqla-lineage: spool directory %s is in use by another process; "
                      "process %d spools in %s", settings.spool_dir, os.getpid(),
                      spool.directory)
        return spool
    except (ConfigError, OSError) as exc:  # Spool turns its OSErrors into ConfigError
        if required and not isinstance(exc, ConfigError):
            raise ConfigError(f"cannot use spool directory {settings.spool_dir}: {exc}") \
                from exc
        if required:
            raise
        _log.error("otel-sqla-lineage: %s; delivering without a spool (events the backend "
                   "refuses are counted as failed, not kept)", exc)
        return None
