"""Spans in (from any thread), events out: the shared run assembly under a lock, in front
of a bounded delivery queue that also expires what waited too long. The in-process
exporter and collector_exporter are thin shells around one of these."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from otel_sqla_lineage.assemble import RunAssembler
from otel_sqla_lineage.convert import Converter
from otel_sqla_lineage.delivery import DeliveryQueue, EventSink
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spans import SpanView

_log = logging.getLogger(__name__)


class LineagePipeline:
    def __init__(self, settings: LineageSettings, sink: EventSink) -> None:
        self.settings = settings
        self._assembler = RunAssembler(Converter(settings))
        self._lock = threading.Lock()
        self._delivery = DeliveryQueue(sink, settings.queue_max_events, tick=self._expire)

    @property
    def sink(self) -> EventSink:
        return self._delivery.sink

    def add(self, spans: Iterable[SpanView]) -> int:
        """Assemble and queue; returns how many spans could not be converted (logged)."""
        events: list[dict[str, Any]] = []
        failures = 0
        with self._lock:
            for span in spans:
                try:
                    events.extend(self._assembler.add(span))
                except Exception:
                    failures += 1
                    _log.exception(
                        "otel-sqla-lineage: span %r could not be converted; skipped", span.name
                    )
        if events:  # most spans (statements held for their run) emit nothing yet
            self._delivery.put_many(events)
        return failures

    def _expire(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._assembler.expire()

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = self._assembler.stats.as_dict()
            out["held"] = self._assembler.held
        out.update(
            delivered=self._delivery.delivered,
            dropped=self._delivery.dropped,
            failed=self._delivery.failed,
        )
        return out

    def flush(self, timeout: float | None = None) -> bool:
        """Emit every held run and statement, and wait until the sink has them."""
        with self._lock:
            events = self._assembler.drain()
        self._delivery.put_many(events)
        return self._delivery.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        flushed = self.flush(timeout)
        self._delivery.close(timeout)
        return flushed
