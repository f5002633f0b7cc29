"""``OpenLineageSpanExporter``: an SDK ``SpanExporter`` that turns finished spans into
OpenLineage run events sharing run IDs with the traces.

A thin shell: spans become :class:`~otel_sqla_lineage.spans.SpanView` and go into the
shared :class:`~otel_sqla_lineage.pipeline.LineagePipeline` (run assembly and the pure
converter, then a bounded delivery queue). ``export`` never blocks on I/O, never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_sqla_lineage.delivery import EventSink, sink_from_environment
from otel_sqla_lineage.pipeline import LineagePipeline
from otel_sqla_lineage.settings import Granularity, LineageSettings
from otel_sqla_lineage.spans import SpanView, from_readable_span

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
        spool_dir: str | None = None,
        spool_max_bytes: int | None = None,
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
            "spool_dir": spool_dir,
            "spool_max_bytes": spool_max_bytes,
        }
        self.settings = settings or LineageSettings.from_env(**overrides)
        self._pipeline = LineagePipeline(
            self.settings,
            sink if sink is not None else sink_from_environment(self.settings),
        )
        self._shutdown = False

    @property
    def stats(self) -> dict[str, int]:
        return self._pipeline.stats()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        views = []
        for span in spans:
            try:
                views.append(from_readable_span(span))
            except Exception:  # never into the SDK's worker (or the app's thread)
                _log.exception("otel-sqla-lineage: span %r could not be read; skipped",
                               getattr(span, "name", "?"))
        self._pipeline.add(views)  # logs and skips what it cannot convert; never raises
        return SpanExportResult.SUCCESS

    def add_views(self, views: Sequence[SpanView]) -> None:
        """Spans already as views (sampled-out statements that were never recorded)."""
        if not self._shutdown:
            self._pipeline.add(views)  # logs and skips what it cannot convert; never raises

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Emit every held run and statement, and wait until the transport has them."""
        return self._pipeline.flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._pipeline.close(30.0)
