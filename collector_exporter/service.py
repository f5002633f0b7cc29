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
from collector_exporter.redact_request import needs_redaction, redact_request
from collector_exporter.request_log import RequestLog
from otel_sqla_lineage.delivery import EventSink
from otel_sqla_lineage.pipeline import LineagePipeline
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spans import SpanView

_log = logging.getLogger(__name__)


class LineageTraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """With a ``request_log``, a request is acknowledged only once it is written there;
    what an earlier process left in it is replayed before the first request."""

    def __init__(
        self, lineage: LineageSettings, sink: EventSink, bearer_token: str | None = None,
        request_log: RequestLog | None = None, request_log_max_bytes: int = 64 * 1024 * 1024,
        checkpoint_interval: float | None = 0.5,
    ) -> None:
        self._pipeline = LineagePipeline(lineage, sink, spool_required=request_log is not None)
        self._lock = threading.Lock()  # guards the request counters
        # request log append + hand-over to the pipeline, atomic against a checkpoint
        self._log_lock = threading.Lock()
        self._log = request_log
        self._log_max_bytes = request_log_max_bytes
        # while spans are held, the log is compacted once it passes this
        self._compact_bytes = min(4 * 1024 * 1024, request_log_max_bytes // 4)
        self._expected_token = bearer_token or None
        self._counts = {"requests": 0, "requests_unauthenticated": 0, "spans_received": 0,
                        "spans_rejected": 0, "requests_replayed": 0,
                        "requests_unavailable": 0}
        # Back-pressure: past this many events not yet on disk, or while the spool refuses
        # events, Export answers UNAVAILABLE (the Collector retries) instead of letting the
        # delivery queue drop what was acknowledged.
        self._high_water = max(1, lineage.queue_max_events // 2)
        self._handed_mark = 0  # events known to be on disk (or dropped)
        self._spool_refusing = False  # set by the checkpoint: drops seen or spool nearly full
        self._refusing = False  # only to log the start and end of a refusal spell
        self._dropped_at_checkpoint = 0  # drops accounted for by the last checkpoint
        self._dropped_watched = 0  # drops seen by the last _watch_spool
        self._carried_through = 0  # segments whose held spans are copied forward already
        self._stop = threading.Event()
        if request_log is not None:
            self._replay(request_log)
        if request_log is not None and checkpoint_interval is not None:
            self._checkpoint_interval = checkpoint_interval
            threading.Thread(target=self._checkpoint_loop, name="request-log-checkpoint",
                             daemon=True).start()

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
        if self._log is None:
            converted_failures = self._pipeline.add(children_first(decoded.spans))
        else:
            overloaded = self._overloaded()
            if overloaded:
                with self._lock:
                    self._counts["requests_unavailable"] += 1
                context.abort(grpc.StatusCode.UNAVAILABLE,
                              f"lineage service busy ({overloaded}); retry later")
            # decoded already: only the logged copy changes (rejected spans are not
            # decoded, so a request with any is walked whole)
            if decoded.rejected or needs_redaction(decoded.spans):
                redact_request(request)
            record = request.SerializeToString()
            with self._log_lock:
                try:
                    self._log.append(record)
                except OSError as exc:
                    with self._lock:
                        self._counts["requests_unavailable"] += 1
                    _log.error("collector_exporter: cannot write the request log %s (%s); "
                               "refusing the request (the sender retries it)",
                               self._log.directory, exc)
                    context.abort(grpc.StatusCode.UNAVAILABLE,
                                  "lineage service cannot persist the request; retry later")
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

    def _overloaded(self) -> str | None:
        """Why a request must wait, or None. Checked before the request is logged: an
        acknowledged request whose events the queue or spool then drops is lost until
        the next start."""
        reason = None
        if self._spool_refusing:
            reason = "the event spool is full or refusing events"
        else:
            put = self._pipeline.put_count
            if put - self._handed_mark > self._high_water:
                # a zero timeout only looks: how far the spooler got
                if self._pipeline.handed_off(put, 0):
                    self._handed_mark = put
                elif not self._pipeline.handed_off(put - self._high_water, 0):
                    reason = f"over {self._high_water} events wait for the event spool"
        if (reason is not None) != self._refusing:
            self._refusing = reason is not None
            if reason is not None:
                _log.warning("collector_exporter: %s; answering UNAVAILABLE until it "
                             "drains (the sender retries)", reason)
            else:
                _log.warning("collector_exporter: accepting requests again (%d refused so "
                             "far)", self.stats()["requests_unavailable"])
        return reason

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
        if self._log is not None:
            out["request_log_bytes"] = self._log.bytes
        return out

    def flush(self, timeout: float | None = None) -> bool:
        """Emit every held run and wait for delivery (graceful shutdown)."""
        return self._pipeline.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        self._stop.set()
        flushed = self._pipeline.close(timeout)
        if self._log is not None:
            dropped = self._pipeline.stats()["dropped"]
            with self._log_lock:
                closed = self._log.rotate()
                if flushed and dropped == self._dropped_at_checkpoint:
                    # every event is delivered or in the spool: the log is done
                    self._log.discard_through(closed)
                elif dropped != self._dropped_at_checkpoint:
                    _log.warning("collector_exporter: %d event(s) were dropped since the "
                                 "last checkpoint; the request log %s stays for the next "
                                 "start (replayed then, at least once)",
                                 dropped - self._dropped_at_checkpoint, self._log.directory)
                self._log.close()
        return flushed

    def checkpoint(self, timeout: float = 30.0) -> bool:
        """Deletes the request log up to now once nothing derived from it is only in
        memory: no span held for run assembly, every event so far in the spool, none
        dropped since the previous checkpoint (else the segments stay for the next start,
        whose replay delivers them). Called periodically. While spans are always held
        (sustained load), the log is compacted to the held traces' spans, and past
        ``request_log_max_bytes`` held runs are emitted early (logged) to cut it."""
        log = self._log
        if log is None:
            return False
        self._watch_spool()
        with self._log_lock:
            if log.empty:
                return True
            held = self._pipeline.held
            if held and log.bytes <= self._compact_bytes:
                return False
            if held and log.bytes > self._log_max_bytes:
                _log.warning("collector_exporter: request log %s passed %d bytes with spans "
                             "still waiting for their parents; emitting %d held span(s) now",
                             log.directory, self._log_max_bytes, held)
                self._pipeline.release_held()
                held = 0
            closed = log.rotate()
            traces = self._pipeline.held_traces() if held else set()
            if not held:
                target = self._pipeline.put_count
        if held:
            # parsed outside the lock (closed segments do not change): Export goes on
            copies = self._held_requests(log, closed, traces)
            with self._log_lock:
                # a trace emitted meanwhile has its events before this target: not copied
                still_held = self._pipeline.held_traces()
                for request in copies:
                    if _keep_traces(request, still_held):
                        log.append(request.SerializeToString())
                self._carried_through = closed
                target = self._pipeline.put_count
        if not self._pipeline.handed_off(target, timeout):
            return False
        dropped = self._pipeline.stats()["dropped"]
        with self._log_lock:
            if dropped != self._dropped_at_checkpoint:
                _log.warning("collector_exporter: %d event(s) were dropped (delivery queue or "
                             "spool full); the request log %s up to segment %d stays for the "
                             "next start, whose replay delivers them (at least once)",
                             dropped - self._dropped_at_checkpoint, log.directory, closed)
                self._dropped_at_checkpoint = dropped
                log.keep_through(closed)
                return False
            log.discard_through(closed)
        return True

    def _watch_spool(self) -> None:
        """Export is refused while the spool drops events or is nearly full."""
        stats = self._pipeline.stats()
        max_bytes = self._pipeline.settings.spool_max_bytes
        dropped_now = stats["dropped"] != self._dropped_watched
        self._dropped_watched = stats["dropped"]
        self._spool_refusing = (
            dropped_now or stats.get("spool_bytes", 0) >= max_bytes - max_bytes // 16)

    def _held_requests(self, log: RequestLog, closed: int,
                       traces: set[int]) -> list[trace_service_pb2.ExportTraceServiceRequest]:
        """The logged requests cut to the spans of traces still held, so the segments up
        to ``closed`` can go: the log shrinks to what is held (replay may then emit some
        of those traces' runs twice, at least once). Segments copied forward before (a
        checkpoint that timed out) or kept for the next start are not copied again."""
        out = []
        after = max(self._carried_through, log.kept_through)
        for payload in log.records_through(closed, after=after):
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(payload)
            if _keep_traces(request, traces):
                out.append(request)
        return out

    def _checkpoint_loop(self) -> None:
        while not self._stop.wait(self._checkpoint_interval):
            try:
                self.checkpoint()
            except Exception:
                _log.exception("collector_exporter: request log checkpoint failed")

    def _replay(self, log: RequestLog) -> None:
        requests = spans = 0
        for payload in log.replay():
            request = trace_service_pb2.ExportTraceServiceRequest()
            try:
                request.ParseFromString(payload)
            except Exception as exc:  # a CRC-checked record that does not parse: log it
                _log.warning("collector_exporter: a logged request does not parse (%s); "
                             "skipped", exc)
                continue
            decoded = decode_request(request)
            ordered = children_first(decoded.spans)
            chunk = max(1, self._high_water // 4)
            for start in range(0, len(ordered), chunk):
                self._pipeline.add(ordered[start:start + chunk])
                self._wait_for_queue_room()
            requests += 1
            spans += len(decoded.spans)
        if requests:
            with self._lock:
                self._counts["requests_replayed"] = requests
            _log.warning("collector_exporter: replayed %d acknowledged request(s) (%d spans) "
                         "from the request log %s; runs already delivered before the restart "
                         "are sent again (at least once)", requests, spans, log.directory)

    def _wait_for_queue_room(self) -> None:
        """Replay feeds the queue much faster than the spooler drains it: wait for the
        spool to take what was put, rather than drop acknowledged spans' events."""
        put = self._pipeline.put_count
        if put - self._handed_mark < self._high_water:
            return
        if not self._pipeline.handed_off(put, REPLAY_WAIT_SECONDS):
            _log.warning("collector_exporter: the event spool took no events for %.0f s "
                         "during replay; going on (events may be dropped, then the request "
                         "log stays for the next start)", REPLAY_WAIT_SECONDS)
        self._handed_mark = put


REPLAY_WAIT_SECONDS = 60.0


def _keep_traces(request: trace_service_pb2.ExportTraceServiceRequest,
                 traces: set[int]) -> bool:
    """Cuts ``request`` down to the spans of ``traces``; False if none is left."""
    keep = False
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            spans = [s for s in scope_spans.spans if int.from_bytes(s.trace_id, "big") in traces]
            keep = keep or bool(spans)
            del scope_spans.spans[:]
            scope_spans.spans.extend(spans)
    return keep


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
