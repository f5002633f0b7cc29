"""The OTLP ``TraceService``: requests become span views, go through the same run
assembly and converter as the in-process exporter, and out through the same delivery."""

from __future__ import annotations

import hmac
import logging
import threading
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from collector_exporter.decode import decode_request
from otel_sqla_lineage.delivery import EventSink
from otel_sqla_lineage.pipeline import LineagePipeline
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spans import SpanView

_log = logging.getLogger(__name__)


class LineageTraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(
        self, lineage: LineageSettings, sink: EventSink, bearer_token: str | None = None
    ) -> None:
        self._pipeline = LineagePipeline(lineage, sink)
        self._lock = threading.Lock()  # guards the request counters
        self._expected_token = bearer_token or None
        self._counts = {"requests": 0, "requests_unauthenticated": 0, "spans_received": 0,
                        "spans_rejected": 0}

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self._counts["requests"] += 1
        if not self._authorized(context):
            with self._lock:
                self._counts["requests_unauthenticated"] += 1
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        decoded = decode_request(request)
        with self._lock:
            self._counts["spans_received"] += len(decoded.spans) + decoded.rejected
        converted_failures = self._pipeline.add(children_first(decoded.spans))
        with self._lock:
            self._counts["spans_rejected"] += decoded.rejected + converted_failures
        rejected = decoded.rejected + converted_failures
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            reasons = "; ".join(decoded.reasons) or "conversion failed"
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = f"{rejected} span(s) rejected: {reasons}"
            _log.warning("collector_exporter: %s", response.partial_success.error_message)
        return response

    def _authorized(self, context: Any) -> bool:
        if self._expected_token is None:
            return True
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                scheme, _, token = str(value).partition(" ")
                # the scheme is case-insensitive (RFC 7235); the token is compared in
                # constant time
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    token.strip().encode(), self._expected_token.encode()
                )
        return False

    def stats(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counts)
        out.update(self._pipeline.stats())
        return out

    def flush(self, timeout: float | None = None) -> bool:
        """Emit every held run and wait for delivery (graceful shutdown)."""
        return self._pipeline.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        return self._pipeline.close(timeout)

def children_first(spans: list[SpanView]) -> list[SpanView]:
    """The request's spans with every span after its descendants in the same request.

    The SDK's OTLP encoder groups spans by instrumentation scope, so an enclosing span can
    be listed before the statements that ended inside it; the assembler needs them in the
    order they ended (children first). Parent-id cycles (bad input) are cut, not followed.
    """
    if len(spans) < 2:
        return spans
    by_id = {(s.trace_id, s.span_id): s for s in spans}
    depth: dict[tuple[int, int], int] = {}
    for span in spans:
        chain = []
        key: tuple[int, int] | None = (span.trace_id, span.span_id)
        while key is not None and key in by_id and key not in depth and key not in chain:
            chain.append(key)
            parent = by_id[key].parent_span_id
            key = (key[0], parent) if parent is not None else None
        base = depth.get(key, -1) if key is not None and key not in chain else -1
        for offset, item in enumerate(reversed(chain), start=1):
            depth[item] = base + offset
    # deepest first; among equals, the order they came in (sorted is stable)
    return sorted(spans, key=lambda s: -depth[(s.trace_id, s.span_id)])
