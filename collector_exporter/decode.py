"""OTLP protobuf spans -> the neutral span view the shared converter reads.

Bad input is rejected span by span with a reason (the service answers with OTLP
``partial_success``), never with an exception out of the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags, Status

from otel_sqla_lineage.spans import SpanEventView, SpanView

_KINDS = {
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
_STATUS = {
    Status.STATUS_CODE_UNSET: "UNSET",
    Status.STATUS_CODE_OK: "OK",
    Status.STATUS_CODE_ERROR: "ERROR",
}
_MAX_ATTRIBUTE_CHARS = 64 * 1024
_MAX_DEPTH = 4


@dataclass
class Decoded:
    spans: list[SpanView] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < 5 and reason not in self.reasons:
            self.reasons.append(reason)


def any_value(value: AnyValue, depth: int = 0) -> Any:
    """An OTLP attribute value as the SDK would hold it (arrays become tuples)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value[:_MAX_ATTRIBUTE_CHARS]
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "array_value" and depth < _MAX_DEPTH:
        return tuple(any_value(v, depth + 1) for v in value.array_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    if kind == "kvlist_value" and depth < _MAX_DEPTH:
        return str({kv.key: any_value(kv.value, depth + 1) for kv in value.kvlist_value.values})
    return None


def attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in pairs:
        if isinstance(kv, KeyValue) and kv.key:
            value = any_value(kv.value)
            if value is not None:
                out[kv.key] = value
    return out


def _span_view(span: Span, resource: dict[str, Any]) -> SpanView:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        raise ValueError("trace_id must be 16 bytes, not all zero")
    if len(span.span_id) != 8 or not any(span.span_id):
        raise ValueError("span_id must be 8 bytes, not all zero")
    parent: int | None = None
    if span.parent_span_id:
        if len(span.parent_span_id) != 8:
            raise ValueError("parent_span_id must be 8 bytes")
        parent = int.from_bytes(span.parent_span_id, "big") or None
    span_id = int.from_bytes(span.span_id, "big")
    if parent == span_id:
        raise ValueError("a span cannot be its own parent")
    if span.end_time_unix_nano and span.end_time_unix_nano < span.start_time_unix_nano:
        raise ValueError("span ends before it starts")
    flags = span.flags
    remote: bool | None = None
    if flags & SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK:
        remote = bool(flags & SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
    return SpanView(
        trace_id=int.from_bytes(span.trace_id, "big"),
        span_id=span_id,
        parent_span_id=parent,
        name=span.name[:1024] or "unnamed",
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano or span.start_time_unix_nano,
        attributes=attributes(span.attributes),
        resource=resource,
        status=_STATUS.get(span.status.code, "UNSET"),
        status_message=span.status.message or None,
        kind=_KINDS.get(span.kind, "INTERNAL"),
        parent_is_remote=remote if parent is not None else False,
        events=tuple(
            SpanEventView(e.name, e.time_unix_nano, attributes(e.attributes))
            for e in span.events
            if e.name == "exception"
        ),
        # OTLP carries the W3C flags only since proto 1.1; absent means "sampled" (the
        # span was exported)
        sampled=bool(flags & 0x01) if flags & SpanFlags.SPAN_FLAGS_TRACE_FLAGS_MASK else True,
    )


def decode_request(request: ExportTraceServiceRequest) -> Decoded:
    out = Decoded()
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for span in _spans(resource_spans):
            try:
                out.spans.append(_span_view(span, resource))
            except ValueError as exc:
                out.reject(str(exc))
    return out


def _spans(resource_spans: Any) -> Iterator[Span]:
    for scope_spans in resource_spans.scope_spans:
        yield from scope_spans.spans
