"""Fakes for fault injection only: a lineage backend that fails or hangs. Every other test
talks to real parts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FailingSink:
    """A destination that raises on every event, or on the first ``failures`` only (a
    backend with a transient fault: a timed-out answer, a dropped connection)."""

    description = "fake failing sink"

    def __init__(self, failures: int | None = None) -> None:
        self.attempts = 0
        self.failures = failures
        self.received: list[Any] = []

    def emit(self, event: Any) -> None:
        self.attempts += 1
        if self.failures is None or self.attempts <= self.failures:
            raise ConnectionError("fake backend is down")
        self.received.append(event)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class HangingSink:
    """A destination that blocks until released (a backend that never answers)."""

    description = "fake hanging sink"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received: list[Any] = []

    def emit(self, event: Any) -> None:
        self.release.wait(30)
        self.received.append(event)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.release.set()


class _QuietHandler(BaseHTTPRequestHandler):
    """What every fake's handler shares: reading a POST's body, and no access-log line per
    request in the test output."""

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def log_message(self, *args: object) -> None:
        pass


def _start(
    handler: type[BaseHTTPRequestHandler], *, daemon_threads: bool = False,
) -> tuple[ThreadingHTTPServer, str]:
    """Serves ``handler`` on a free loopback port from a daemon thread; returns the server (for
    ``_stop``) and its URL. ``daemon_threads`` lets ``_stop`` return without waiting for
    requests still in a handler (one told to hang)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = daemon_threads
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server, url = _start(handler)
    try:
        yield url
    finally:
        _stop(server)


@contextmanager
def fake_lineage_backend_returning(status: int) -> Iterator[tuple[str, list[bytes]]]:
    """A fake OpenLineage HTTP endpoint on loopback answering every POST with ``status``."""
    bodies: list[bytes] = []

    class Handler(_QuietHandler):
        def do_POST(self) -> None:
            bodies.append(self.read_body())
            self.send_response(status)
            self.end_headers()

    with _serving(Handler) as url:
        yield url, bodies


class SwitchableBackend:
    """A fake OpenLineage HTTP endpoint whose answer can be changed while it runs: ``status``
    5xx (the backend failing), ``hang`` (it takes requests and never answers), or 200 (it
    is back). ``accepted`` holds the events it answered 2xx for, in arrival order."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.hang = False
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self._released = threading.Event()
        backend = self

        class Handler(_QuietHandler):
            def do_POST(self) -> None:
                body = self.read_body()
                if backend.hang:
                    backend._released.wait(60)
                status = backend.status
                if 200 <= status < 300:
                    backend.accepted.append(json.loads(body))
                else:
                    backend.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server, self.url = _start(Handler, daemon_threads=True)

    def close(self) -> None:
        self._released.set()
        _stop(self._server)


@contextmanager
def switchable_lineage_backend(status: int = 200) -> Iterator[SwitchableBackend]:
    backend = SwitchableBackend(status)
    try:
        yield backend
    finally:
        backend.close()


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: bytes


@contextmanager
def fake_lineage_backend_recording(
    status: int = 200,
) -> Iterator[tuple[str, list[RecordedRequest]]]:
    """A fake OpenLineage HTTP endpoint on loopback that keeps each POST's path, headers
    and body (to check what credentials reached it) and answers ``status``."""
    received: list[RecordedRequest] = []

    class Handler(_QuietHandler):
        def do_POST(self) -> None:
            body = self.read_body()
            received.append(RecordedRequest(self.path, dict(self.headers.items()), body))
            self.send_response(status)
            self.end_headers()

    with _serving(Handler) as url:
        yield url, received
