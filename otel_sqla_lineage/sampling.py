"""Complete lineage under trace sampling.

A head sampler that drops 90 to 99% of traces makes the SDK skip those spans entirely, so a
span-based lineage exporter would miss 90 to 99% of the writes. Two small parts fix that
without changing what tracing backends receive:

* :class:`LineageSampler` wraps your sampler: its "sample" decisions stand, its DROP
  decisions become RECORD_ONLY. The span is recorded (attributes, status, end) but its
  trace flags stay *not sampled*, so propagation (``traceparent``), the SDK's
  Batch/SimpleSpanProcessor and therefore OTLP/Jaeger keep your decision.
* :class:`UnsampledSpanProcessor` hands those recorded-but-unsampled spans to the
  lineage exporter, which the SDK's export processors never show them to. Sampled spans
  are left to the exporter's own BatchSpanProcessor, so nothing is fed twice.

SQLAlchemy statement spans, most of the spans and most of the cost, are the exception:
in a sampled-out trace, under a recorded span, with an ``UnsampledSpanProcessor`` on the
provider, they stay dropped (a ``NonRecordingSpan``, which still has its span id), and
``SQLAlchemyLineageInstrumentor`` gives the lineage exporter the very view the recorded
span would have given (see :mod:`otel_sqla_lineage.light_statements`). Same runs, same
events; about half the CPU of recording them (README, "What recording sampled-out spans
costs").

In code::

    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    lineage = OpenLineageSpanExporter()
    provider = TracerProvider(sampler=LineageSampler(ParentBased(TraceIdRatioBased(0.1))))
    provider.add_span_processor(BatchSpanProcessor(otlp_exporter))    # 10% of traces
    provider.add_span_processor(BatchSpanProcessor(lineage))          # sampled spans
    provider.add_span_processor(UnsampledSpanProcessor(lineage))      # the other 90%

With ``opentelemetry-instrument``: ``OTEL_TRACES_SAMPLER=lineage_parentbased_traceidratio``
(or ``lineage_`` + any SDK sampler name, see :data:`SAMPLER_NAMES`) with
``OTEL_TRACES_SAMPLER_ARG=0.1`` and ``OTEL_TRACES_EXPORTER=otlp,openlineage``; the
processor is attached by :func:`otel_sqla_lineage.autoconfig.attach_unsampled_span_processor`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from otel_sqla_lineage.light_statements import (
    LIGHT_PATH,
    LightStatement,
    clear_mark,
    peek_mark,
    set_light,
)
from otel_sqla_lineage.spans import SpanView

if TYPE_CHECKING:
    from otel_sqla_lineage.exporter import OpenLineageSpanExporter

_log = logging.getLogger(__name__)


class LineageSampler(Sampler):
    """Your sampler's decision for tracing backends; every span recorded for lineage.

    A DROP becomes RECORD_ONLY, whatever the span: at sampling time nobody knows whether a
    span will enclose statements, and a run without its enclosing span loses its job name
    and waits ``buffer_timeout_seconds``. The one exception is a SQLAlchemy statement's
    own span, which upstream starts bare (so its name and attributes cannot tell) but our
    instrumentor marks just before: when lineage can have it without recording (see the
    module's docstring), its DROP stands. Not even upstream SQLAlchemy instrumentation's
    ``connect`` span is left out: a pool's first connection runs the dialect's own
    statements inside it, and without it those would wait, then be runs of their own.

    The SDK's ``AlwaysRecordSampler`` (recent SDKs) does nearly the same; this is our own
    type so that ``opentelemetry-instrument`` set-up can recognise it and attach
    :class:`UnsampledSpanProcessor`, and so it works on every SDK we support. The cost
    (benchmarks/bench_sampling.py) is in the README.
    """

    def __init__(self, delegate: Sampler) -> None:
        if not isinstance(delegate, Sampler):
            raise TypeError(f"LineageSampler wraps a Sampler, not {type(delegate).__name__}")
        self.delegate = delegate
        LIGHT_PATH.active = True

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self.delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        # the first span after the instrumentor's mark is its statement's; a light mark
        # stays until the statement ends (a DB-API instrumentation's span may start first)
        mark = peek_mark()
        if type(mark) is str:
            clear_mark()
        if result.decision is not Decision.DROP:
            return result
        if type(mark) is str:
            # of a dropped trace: it stays dropped if lineage can have it without the span
            light = _light_statement(mark, parent_context, trace_id)
            if light is not None:
                set_light(light)
                return result
        # only "recorded" changes, never "sampled". The span keeps the attributes it was
        # started with (the SDK's samplers leave them out of a DROP: nothing to record),
        # and any the delegate added.
        kept = {**attributes, **result.attributes} if attributes else result.attributes
        return SamplingResult(Decision.RECORD_ONLY, kept, result.trace_state)

    def get_description(self) -> str:
        return f"LineageSampler{{{self.delegate.get_description()}}}"


class UnsampledSpanProcessor(SpanProcessor):
    """Feeds spans that were recorded but not sampled to ``exporter``.

    Put it beside the ``BatchSpanProcessor(exporter)`` that handles the sampled ones.
    ``on_end`` runs on the application's thread: it converts the span into the exporter's
    run assembly (no I/O; delivery is the exporter's background thread) and never raises.
    Nothing is buffered here, so ``force_flush`` has nothing to do, and ``shutdown``
    leaves the exporter to its BatchSpanProcessor, which owns it.
    """

    def __init__(self, exporter: OpenLineageSpanExporter) -> None:
        self.exporter = exporter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def feed_view(self, view: SpanView) -> None:
        """A sampled-out statement that was never recorded (see
        :mod:`otel_sqla_lineage.light_statements`), already as the exporter's view."""
        self.exporter.add_views((view,))

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None or context.trace_flags.sampled:
            return  # sampled: the exporter's BatchSpanProcessor has it
        try:
            self.exporter.export((span,))
        except Exception:  # export() does not raise; this guards the app all the same
            _log.exception("otel-sqla-lineage: unsampled span %r skipped", span.name)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _light_statement(
    statement: str, parent_context: Context | None, trace_id: int
) -> LightStatement | None:
    """The light path's start, when the statement's parent is a recorded span of this
    unsampled trace whose provider feeds unsampled spans to lineage; else None."""
    parent = trace.get_current_span(parent_context)
    if not isinstance(parent, Span) or not parent.is_recording():
        return None
    context = parent.get_span_context()
    if context.trace_id != trace_id or context.trace_flags.sampled:
        return None
    feeds = _feeds_of(parent)
    if not feeds:
        return None
    resource = parent.resource
    return LightStatement(statement, context, resource.attributes, feeds)


# (the provider's processor tuple, its UnsampledSpanProcessors' feeds); replaced whole
_last_feeds: tuple[object, tuple[Any, ...]] | None = None


def _feeds_of(span: Span) -> tuple[Any, ...]:
    # The SDK has no public way from a span to its provider's processors: its span keeps
    # the provider's multi-processor, which holds a tuple replaced on every
    # add_span_processor (stable since SDK 1.0). Anything else: no light path.
    global _last_feeds
    processors = getattr(getattr(span, "_span_processor", None), "_span_processors", None)
    if not isinstance(processors, tuple):
        return ()
    last = _last_feeds
    if last is not None and last[0] is processors:
        return last[1]
    feeds = tuple(p.feed_view for p in processors if isinstance(p, UnsampledSpanProcessor))
    _last_feeds = (processors, feeds)
    return feeds


# -- OTEL_TRACES_SAMPLER entry points ----------------------------------------------------
# The SDK calls the factory with OTEL_TRACES_SAMPLER_ARG as a string (or None): it
# converts the argument itself only for its own two ratio sampler names.


def _ratio(arg: object) -> float:
    if arg is None or (isinstance(arg, str) and not arg.strip()):
        return 1.0
    try:
        rate = float(arg)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        _log.warning("otel-sqla-lineage: OTEL_TRACES_SAMPLER_ARG=%r is not a number; "
                     "using ratio 1.0", arg)
        return 1.0
    if not 0.0 <= rate <= 1.0:
        _log.warning("otel-sqla-lineage: OTEL_TRACES_SAMPLER_ARG=%r is outside [0, 1]; "
                     "using ratio 1.0", arg)
        return 1.0
    return rate


def lineage_always_on(arg: object = None) -> Sampler:
    return LineageSampler(ALWAYS_ON)


def lineage_always_off(arg: object = None) -> Sampler:
    return LineageSampler(ALWAYS_OFF)


def lineage_traceidratio(arg: object = None) -> Sampler:
    return LineageSampler(TraceIdRatioBased(_ratio(arg)))


def lineage_parentbased_always_on(arg: object = None) -> Sampler:
    return LineageSampler(ParentBased(ALWAYS_ON))


def lineage_parentbased_always_off(arg: object = None) -> Sampler:
    return LineageSampler(ParentBased(ALWAYS_OFF))


def lineage_parentbased_traceidratio(arg: object = None) -> Sampler:
    return LineageSampler(ParentBased(TraceIdRatioBased(_ratio(arg))))


# name in OTEL_TRACES_SAMPLER -> factory (pinned against pyproject.toml by a test)
SAMPLER_NAMES: Final[dict[str, Callable[[object], Sampler]]] = {
    "lineage_always_on": lineage_always_on,
    "lineage_always_off": lineage_always_off,
    "lineage_traceidratio": lineage_traceidratio,
    "lineage_parentbased_always_on": lineage_parentbased_always_on,
    "lineage_parentbased_always_off": lineage_parentbased_always_off,
    "lineage_parentbased_traceidratio": lineage_parentbased_traceidratio,
}
