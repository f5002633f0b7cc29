"""The request as the request log keeps it: without the secrets the events never carry.

Why: the log holds acknowledged requests on disk until their events are spooled, and
possibly across restarts. Other languages' instrumentations put SQL with its literals in
``db.statement`` / ``db.query.text``, and exception messages may quote bound values. The
converter redacts both when it builds events (``redact_sql``, ``scrub_repeated_message``); doing
the same before the write keeps them off the disk, and since both functions give the same
result when applied again, a replayed request yields the same events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from otel_sqla_lineage.redact import redact_sql
from otel_sqla_lineage.scrub import scrub_repeated_message
from otel_sqla_lineage.spans import SpanView

_SQL_KEYS = frozenset({"db.statement", "db.query.text"})
_ERROR_KEYS = frozenset({"exception.message", "exception.stacktrace"})
_SCRUBS_TO_NOTHING = "DETAIL: hidden by otel-sqla-lineage"


def needs_redaction(spans: Iterable[SpanView]) -> bool:
    """Whether :func:`redact_request` would change anything, from the decoded spans (plain
    dicts: much cheaper than walking the protobuf; most SQL has nothing to redact)."""
    for span in spans:
        for key in _SQL_KEYS:
            value = span.attributes.get(key)
            if isinstance(value, str) and redact_sql(value) is not value:
                return True
        if span.status_message and _scrubbed(span.status_message) \
                != span.status_message:
            return True
        for event in span.events:  # the decoder keeps only exception events
            for key in _ERROR_KEYS:
                value = event.attributes.get(key)
                if isinstance(value, str) and _scrubbed(value) != value:
                    return True
    return False


def redact_request(request: ExportTraceServiceRequest) -> None:
    """Redacts ``request`` in place (call it after decoding: the live path converts the
    spans as received, like the in-process exporter)."""
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                for kv in span.attributes:
                    if kv.key in _SQL_KEYS:
                        _redact_value(kv, redact_sql)
                if span.status.message:
                    # an empty message would let the converter fall back to the exception
                    # event's; this one scrubs to "" again, as the original did
                    span.status.message = (_scrubbed(span.status.message)
                                           or _SCRUBS_TO_NOTHING)
                for event in span.events:
                    if event.name == "exception":
                        for kv in event.attributes:
                            if kv.key in _ERROR_KEYS:
                                _redact_value(kv, _scrubbed)


def _scrubbed(message: str) -> str:
    """Cached (see :func:`scrub_repeated_message`): a failing statement repeats the same
    message and stack trace in every request."""
    return scrub_repeated_message(message)


def _redact_value(kv: KeyValue, redact: Callable[[str], str]) -> None:
    if kv.value.WhichOneof("value") != "string_value":
        return  # the converter only reads strings there
    text = kv.value.string_value
    redacted = redact(text)
    if redacted != text:
        kv.value.string_value = redacted
