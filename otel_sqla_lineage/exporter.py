"""``OpenLineageSpanExporter``: an SDK ``SpanExporter`` that turns finished spans into
OpenLineage run events sharing run IDs with the traces.

A thin shell: spans become :class:`~otel_sqla_lineage.spans.SpanView`, go through the
shared :class:`~otel_sqla_lineage.assemble.RunAssembler` (the pure converter inside), and
the events go to a bounded delivery queue. ``export`` never blocks on I/O and never raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_sqla_lineage.assemble import RunAssembler
from otel_sqla_lineage.convert import Converter
from otel_sqla_lineage.delivery import DeliveryQueue, EventSink, sink_from_environment
from otel_sqla_lineage.settings import Granularity, LineageSettings
from otel_sqla_lineage.spans import from_readable_span

_log = logging.getLogger(__name__)


class OpenLineageSpanExporter(SpanExporter):
    """Finished spans in, OpenLineage events out.

    Every argument is optional; unset ones come from the environment (see the README's
    settings table), so ``OTEL_TRACES_EXPORTER=openlineage`` works with no code.
    ``sink`` replaces the OpenLineage transport resolution (tests, custom destinations).
    """

    def __init__(
        self,
        *,
        granularity: Granularity | None = None,
        namespace: str | None = None,
        trace_ui_url: str | None = None,
        buffer_max_spans: int | None = None,
        buffer_timeout_seconds: float | None = None,
        queue_max_events: int | None = None,
        settings: LineageSettings | None = None,
        sink: EventSink | None = None,
    ) -> None:
        overrides: dict[str, Any] = {
            "granularity": granularity,
            "namespace": namespace,
            "trace_ui_url": trace_ui_url,
            "buffer_max_spans": buffer_max_spans,
            "buffer_timeout_seconds": buffer_timeout_seconds,
            "queue_max_events": queue_max_events,
        }
        self.settings = settings or LineageSettings.from_env(**overrides)
        self._assembler = RunAssembler(Converter(self.settings))
        self._lock = threading.Lock()
        self._shutdown = False
        self._delivery = DeliveryQueue(
            sink if sink is not None else sink_from_environment(self.settings),
            self.settings.queue_max_events,
            tick=self._expire,
        )

    @property
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

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        events = []
        with self._lock:
            for span in spans:
                try:
                    events.extend(self._assembler.add(from_readable_span(span)))
                except Exception:
                    _log.exception(
                        "otel-sqla-lineage: span %r could not be converted; skipped",
                        getattr(span, "name", "?"),
                    )
        self._delivery.put_many(events)
        return SpanExportResult.SUCCESS

    def _expire(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._assembler.expire()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Emit every held run and statement, and wait until the transport has them."""
        with self._lock:
            events = self._assembler.drain()
        self._delivery.put_many(events)
        return self._delivery.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self.force_flush()
        self._shutdown = True
        self._delivery.close(30.0)
