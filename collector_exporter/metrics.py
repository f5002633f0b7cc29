"""The service's own counters, served in the Prometheus text format on ``/metrics`` (and
logged periodically): what was received, rejected, held, emitted, dropped."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Snapshot = Callable[[], dict[str, int]]

_HELP = {
    "requests": "OTLP export requests received",
    "requests_unauthenticated": "requests refused for a missing or wrong bearer token",
    "spans_received": "spans received",
    "spans_rejected": "spans rejected as malformed (reported as OTLP partial success)",
    "spans_seen": "spans that reached the converter",
    "statements_seen": "database statement spans",
    "runs_emitted": "OpenLineage runs emitted",
    "events_emitted": "OpenLineage events emitted",
    "held": "statements and runs held waiting for their enclosing span",
    "expired": "held spans emitted without their parent after the max age",
    "evicted": "held spans emitted early because the buffer was full",
    "delivered": "events the OpenLineage transport accepted",
    "failed": "failed delivery attempts (retried from the spool when there is one)",
    "dropped": "events dropped because the delivery queue or the spool was full",
    "spool_pending": "events in the on-disk spool waiting for the backend",
    "spool_bytes": "bytes of the on-disk spool's segment files",
    "spool_corrupt": "unreadable spool lines skipped",
    "spool_errors": "spool I/O errors survived (the failed step is retried with backoff)",
    "request_log_bytes": "bytes of acknowledged requests not yet turned into spooled events",
    "requests_replayed": "acknowledged requests replayed from the request log at start",
    "requests_unavailable": (
        "requests refused as UNAVAILABLE (the Collector retries): the request log could "
        "not be written, or the delivery queue or spool is near full"
    ),
}
_GAUGES = {"held", "spool_pending", "spool_bytes", "request_log_bytes"}


def render(snapshot: dict[str, int]) -> str:
    lines = []
    for key, value in sorted(snapshot.items()):
        name = f"collector_exporter_{key}"
        kind = "gauge" if key in _GAUGES else "counter"
        lines.append(f"# HELP {name} {_HELP.get(key, key)}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name} {value}")
    return "\n".join(lines) + "\n"


def serve_metrics(address: str, snapshot: Snapshot) -> ThreadingHTTPServer:
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = render(snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
