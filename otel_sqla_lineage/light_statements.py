"""Statement spans of sampled-out traces, given to lineage without recording them.

Recording a full SDK span per statement (span object, upstream's and our attributes, each
validated, the processors) costs about as much as the statement itself on a fast database,
and for a sampled-out trace only lineage will ever read it. So for those, three parts
cooperate through one context variable (per thread and per asyncio task, which is what
SQLAlchemy's greenlets share with their task):

1. ``SQLAlchemyLineageInstrumentor``'s class-level ``before_cursor_execute`` listener runs
   before upstream's engine-level one and calls :func:`mark_statement`: "the next span
   started here is this statement's".
2. :class:`~otel_sqla_lineage.sampling.LineageSampler` takes the mark when that span is
   sampled. If its delegate dropped the span, the parent is a recorded span of the same,
   unsampled trace and its provider has an ``UnsampledSpanProcessor``, it keeps the DROP
   (the SDK still gives the ``NonRecordingSpan`` its own span id) and leaves a
   :class:`LightStatement` in the mark. In any other case it records the span as before.
   Spans started while the statement runs (a DB-API instrumentation's: upstream does not
   make its span current, so theirs are the enclosing span's children) leave it in place.
3. At ``after_cursor_execute`` / ``handle_error`` the instrumentor takes the mark back
   and, for a non-recording span with a :class:`LightStatement`, computes the attributes
   the recorded span would have carried (the same code) and calls :meth:`LightStatement.feed`,
   which builds the :class:`~otel_sqla_lineage.spans.SpanView` the exporter would have
   built and hands it to the lineage pipelines (no I/O; never raises).

Nothing here runs until a ``LineageSampler`` exists (:data:`LIGHT_PATH`), so other
set-ups pay one attribute read per statement.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry.trace import SpanContext

from otel_sqla_lineage.spans import SpanView

_log = logging.getLogger(__name__)


class _LightPath:
    """Switched on by the first ``LineageSampler``; never off again (cheap when unused)."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False


LIGHT_PATH = _LightPath()


class LightStatement:
    """A statement span the sampler dropped, and what its lineage view needs from then."""

    __slots__ = ("feeds", "parent", "resource", "start_ns", "statement", "trace_id")

    def __init__(
        self,
        statement: str,
        parent: SpanContext,
        resource: Mapping[str, Any],
        feeds: Sequence[Callable[[SpanView], None]],
    ) -> None:
        self.statement = statement
        self.trace_id = parent.trace_id
        self.parent = parent
        self.resource = resource
        self.feeds = feeds
        self.start_ns = time.time_ns()

    def feed(
        self,
        span_id: int,
        name: str,
        attributes: dict[str, Any],
        error_message: str | None = None,
    ) -> None:
        """The view ``from_readable_span`` would give of the recorded span, to lineage."""
        view = SpanView(
            trace_id=self.trace_id,
            span_id=span_id,
            parent_span_id=self.parent.span_id,
            name=name,
            start_ns=self.start_ns,
            end_ns=time.time_ns(),
            attributes=attributes,
            resource=self.resource,
            status="ERROR" if error_message is not None else "UNSET",
            status_message=error_message,
            kind="CLIENT",
            parent_is_remote=False,
            sampled=False,
        )
        for feed in self.feeds:
            try:
                feed(view)
            except Exception:  # the feeds do not raise; this guards the app all the same
                _log.exception("otel-sqla-lineage: sampled-out statement %r skipped", name)


# str: a statement span is about to start (its SQL); LightStatement: the sampler dropped
# it for the light path; None: nothing pending
_mark: ContextVar[str | LightStatement | None] = ContextVar(
    "otel_sqla_lineage_statement_mark", default=None
)


def mark_statement(statement: str) -> None:
    _mark.set(statement)


def peek_mark() -> str | LightStatement | None:
    return _mark.get()


def clear_mark() -> None:
    _mark.set(None)


def take_mark() -> str | LightStatement | None:
    """The pending mark, cleared: each is for one span only."""
    mark = _mark.get()
    if mark is not None:
        _mark.set(None)
    return mark


def set_light(light: LightStatement) -> None:
    _mark.set(light)
