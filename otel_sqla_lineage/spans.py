"""The neutral span view the converter works on, and its constructor from the SDK's
``ReadableSpan``. (collector_exporter builds the same view from OTLP protobuf.)

Keeping the converter on this small view, not on SDK or protobuf types, is what lets the
in-process exporter and collector_exporter give identical events for identical spans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from otel_sqla_lineage import attributes as attr

EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SpanEventView:
    name: str
    time_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)


# Not frozen: one is built per span on the hot path, and a frozen dataclass's __init__
# costs several microseconds more. Treat it as immutable all the same.
@dataclass(slots=True)
class SpanView:
    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=dict)
    resource: Mapping[str, Any] = field(default_factory=dict)
    # "UNSET", "OK" or "ERROR"
    status: str = "UNSET"
    status_message: str | None = None
    # "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"
    kind: str = "INTERNAL"
    # True when the parent lives in another process (W3C traceparent); None: unknown
    parent_is_remote: bool | None = False
    events: tuple[SpanEventView, ...] = ()
    sampled: bool = True

    @property
    def service_name(self) -> str | None:
        value = self.resource.get(attr.SERVICE_NAME)
        return str(value) if value else None

    @property
    def is_database_span(self) -> bool:
        a = self.attributes
        return attr.DB_SYSTEM in a or attr.DB_SYSTEM_NAME in a

    @property
    def failed(self) -> bool:
        return self.status == "ERROR"

    @property
    def has_local_parent(self) -> bool:
        """A parent we may still see end here (unknown counts as local: OTLP from older
        SDKs does not say, and waiting for a parent that never comes only costs time)."""
        return self.parent_span_id is not None and self.parent_is_remote is not True


def from_readable_span(span: ReadableSpan) -> SpanView:
    context = span.get_span_context()
    parent = span.parent
    status = span.status
    return SpanView(
        trace_id=context.trace_id if context else 0,
        span_id=context.span_id if context else 0,
        parent_span_id=parent.span_id if parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        # plain dicts: the SDK's BoundedAttributes answers each get() through the Mapping
        # mixin, and the converter reads a dozen keys per span
        attributes=_plain(span.attributes) if span.attributes else EMPTY,
        resource=span.resource.attributes if span.resource is not None else EMPTY,
        status=status.status_code.name if status is not None else "UNSET",
        status_message=status.description if status is not None else None,
        kind=span.kind.name,
        parent_is_remote=bool(parent.is_remote) if parent is not None else False,
        events=tuple(
            SpanEventView(e.name, e.timestamp, e.attributes or EMPTY) for e in span.events
        ) if span.events else (),
        sampled=bool(context.trace_flags.sampled) if context else True,
    )


def _plain(attributes: Any) -> dict[str, Any]:
    if type(attributes) is dict:
        return attributes
    copy = getattr(attributes, "copy", None)  # BoundedAttributes.copy(): its dict, copied
    copied = copy() if copy is not None else None
    return copied if type(copied) is dict else dict(attributes)
