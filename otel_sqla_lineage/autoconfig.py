"""``opentelemetry-instrument`` set-up for complete lineage under sampling.

With ``OTEL_TRACES_SAMPLER=lineage_…`` the SDK's configurator builds the provider with our
:class:`~otel_sqla_lineage.sampling.LineageSampler` and wraps ``OTEL_TRACES_EXPORTER``'s
``openlineage`` exporter in a ``BatchSpanProcessor``, which only ever sees sampled spans.
The configurator offers no hook to add a processor of our own, so this runs from the
``opentelemetry_post_instrument`` entry point (after the configurator and the
instrumentors, before the application) and attaches an
:class:`~otel_sqla_lineage.sampling.UnsampledSpanProcessor` for each lineage exporter of
the global provider. It never raises into the application's start: it logs what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from otel_sqla_lineage.exporter import OpenLineageSpanExporter
from otel_sqla_lineage.sampling import LineageSampler, UnsampledSpanProcessor

_log = logging.getLogger(__name__)


def attach_unsampled_span_processor(provider: object | None = None) -> int:
    """Attach the unsampled-span feed to ``provider`` (default: the global one) when its
    sampler is a :class:`LineageSampler`; returns how many processors were added."""
    try:
        return _attach(provider if provider is not None else trace.get_tracer_provider())
    except Exception:
        _log.exception("otel-sqla-lineage: could not attach the unsampled-span processor; "
                       "sampled-out traces will have no lineage")
        return 0


def _attach(provider: object) -> int:
    if not isinstance(provider, TracerProvider):
        return 0
    if not isinstance(provider.sampler, LineageSampler):
        return 0
    processors = list(_processors(provider))
    fed = {id(p.exporter) for p in processors if isinstance(p, UnsampledSpanProcessor)}
    exporters = [
        e for e in (getattr(p, "span_exporter", None) for p in processors)
        if isinstance(e, OpenLineageSpanExporter)
    ]
    if not exporters:
        _log.warning(
            "otel-sqla-lineage: the sampler is %s but no openlineage exporter is configured "
            "(OTEL_TRACES_EXPORTER=otlp,openlineage); sampled-out spans are recorded for "
            "nothing", provider.sampler.get_description())
        return 0
    added = 0
    for exporter in exporters:
        if id(exporter) not in fed:
            provider.add_span_processor(UnsampledSpanProcessor(exporter))
            added += 1
    if added:
        _log.info("otel-sqla-lineage: %s; sampled-out spans go to lineage only",
                  provider.sampler.get_description())
    return added


def _processors(provider: TracerProvider) -> Iterable[SpanProcessor]:
    # The SDK has no public list of a provider's processors; this shape (a multi-span
    # processor holding a tuple) has been stable since SDK 1.0. If it changes we say so.
    active = getattr(provider, "_active_span_processor", None)
    processors = getattr(active, "_span_processors", None)
    if not isinstance(processors, tuple):
        raise RuntimeError("the SDK's TracerProvider no longer lists its span processors "
                           "where otel-sqla-lineage looks for them")
    return processors
