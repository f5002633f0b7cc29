"""collector_exporter never acknowledges a request whose events it then drops: replay and
Export wait for (or refuse while) the bounded delivery queue and the spool are full, and
the request log is kept whenever an event was dropped. Faults are injected by named
monkeypatches of the spool (``blocked_spool``, ``full_spool``) and of ``os.write`` /
``os.ftruncate`` (a disk failing mid-write)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fakes import FailingSink
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from procs.otlp_tools import (
    key_values,
    logged_traces,
    read_events,
    request,
    semconv_statement,
    span,
    sqlalchemy_statement,
    wait_for,
)
from spanfactory import expected_run_id

from collector_exporter.request_log import RequestLog
from collector_exporter.server import build_server
from collector_exporter.service import LineageTraceService
from collector_exporter.settings import ServiceSettings
from otel_sqla_lineage.delivery import JsonLinesSink
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spool import Spool


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code = code


class Context:
    """The part of grpc.ServicerContext the service uses (no token configured)."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


def trace(k: int) -> ExportTraceServiceRequest:
    """One complete run (a statement and its enclosing span): two events."""
    return request([sqlalchemy_statement(0x11, 0x22, operation="SELECT", read=("books",),
                                         trace_id=k),
                    span(0x22, f"job{k}", trace_id=k)])


def service(tmp_path: Path, queue_max_events: int = 10_000, **kwargs: Any
            ) -> LineageTraceService:
    settings = LineageSettings(spool_dir=str(tmp_path / "spool" / "events"),
                               queue_max_events=queue_max_events)
    return LineageTraceService(settings, JsonLinesSink(tmp_path / "events.jsonl"), None,
                               RequestLog(tmp_path / "spool" / "requests"),
                               checkpoint_interval=None, **kwargs)


def complete_runs(path: Path) -> set[str]:
    seen: dict[str, list[str]] = {}
    for event in read_events(path):
        seen.setdefault(event["run"]["runId"], []).append(event["eventType"])
    return {run for run, types in seen.items() if types[:2] == ["START", "COMPLETE"]}


@pytest.fixture
def blocked_spool(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Fault injection: the spool's writes hang until the event is set (a stalled disk)."""
    release = threading.Event()
    append = Spool.append

    def stalled(self: Spool, lines: list[str]) -> int:
        release.wait(30)
        return append(self, lines)

    monkeypatch.setattr(Spool, "append", stalled)
    yield release
    release.set()


@pytest.fixture
def full_spool(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Fault injection: the spool takes nothing (full) until the event is set."""
    has_room = threading.Event()
    append = Spool.append

    def full(self: Spool, lines: list[str]) -> int:
        return append(self, lines) if has_room.is_set() else 0

    monkeypatch.setattr(Spool, "append", full)
    yield has_room
    has_room.set()


def test_replay_into_a_small_queue_waits_for_it_and_loses_nothing(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "spool" / "requests")
    for k in range(1, 2001):
        log.append(trace(k).SerializeToString())
    log.close()
    svc = service(tmp_path, queue_max_events=500)  # replays 4,000 events through 500
    try:
        assert svc.stats()["requests_replayed"] == 2000
        assert svc.stats()["dropped"] == 0
        assert svc.checkpoint()
        assert logged_traces(tmp_path / "spool" / "requests") == []
        assert svc.flush(60)
    finally:
        svc.close(30)
    assert complete_runs(tmp_path / "events.jsonl") == {
        expected_run_id(k, 0x22) for k in range(1, 2001)}


def test_export_answers_unavailable_while_the_queue_is_over_its_high_water_mark(
    tmp_path: Path, blocked_spool: threading.Event
) -> None:
    svc = service(tmp_path, queue_max_events=20)  # high-water mark: 10 events
    acked, refused = [], 0
    try:
        for k in range(1, 41):
            try:
                svc.Export(trace(k), Context())
                acked.append(k)
            except Aborted as exc:
                assert exc.code == grpc.StatusCode.UNAVAILABLE  # retryable
                refused += 1
        assert refused > 0 and len(acked) <= 10
        assert svc.stats()["dropped"] == 0
        assert svc.stats()["requests_unavailable"] == refused
        blocked_spool.set()  # the disk is back: the queue drains, requests are taken again
        assert svc.flush(30)
        svc.Export(trace(100), Context())
        acked.append(100)
        assert svc.flush(30)
    finally:
        blocked_spool.set()
        svc.close(30)
    assert svc.stats()["dropped"] == 0
    assert complete_runs(tmp_path / "events.jsonl") == {
        expected_run_id(k, 0x22) for k in acked}


def test_checkpoint_keeps_the_request_log_after_drops_and_the_next_start_delivers(
    tmp_path: Path, full_spool: threading.Event
) -> None:
    svc = service(tmp_path)
    requests = tmp_path / "spool" / "requests"
    try:
        for k in range(1, 4):
            svc.Export(trace(k), Context())  # acknowledged; the spool then drops the events
        assert svc.flush(10)
        assert svc.stats()["dropped"] == 6
        assert not svc.checkpoint()
        assert logged_traces(requests) == [{1}, {2}, {3}]  # kept for the next start
        with pytest.raises(Aborted) as refused:  # the spool refused: the sender must wait
            svc.Export(trace(4), Context())
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE
        full_spool.set()  # room again
        svc.checkpoint()  # no new drop: requests are taken again
        svc.Export(trace(5), Context())
        assert svc.checkpoint()  # segment 5 goes; the kept ones stay
        assert logged_traces(requests) == [{1}, {2}, {3}]
    finally:
        svc.close(10)
    assert logged_traces(requests) == [{1}, {2}, {3}]
    restarted = service(tmp_path)
    try:
        assert restarted.stats()["requests_replayed"] == 3
        assert restarted.flush(10)
        assert restarted.checkpoint()
    finally:
        restarted.close(10)
    assert logged_traces(requests) == []
    assert complete_runs(tmp_path / "events.jsonl") == {
        expected_run_id(k, 0x22) for k in (1, 2, 3, 5)}


def test_a_checkpoint_that_timed_out_does_not_copy_held_spans_forward_twice(
    tmp_path: Path, blocked_spool: threading.Event
) -> None:
    blocked_spool.set()
    svc = service(tmp_path, request_log_max_bytes=64 * 1024)  # compaction at 16 KiB
    requests = tmp_path / "spool" / "requests"
    held = 0xABC
    try:
        svc.Export(request([sqlalchemy_statement(0x31, 0x32, operation="UPDATE",
                                                 written=("books",), trace_id=held)]),
                   Context())
        k = 0
        while svc.stats()["request_log_bytes"] <= 16 * 1024:
            k += 1
            svc.Export(trace(k), Context())

        def all_spooled() -> bool:  # (flush would emit the held trace)
            stats = svc.stats()
            return bool(stats["spool_pending"] + stats["delivered"] == stats["events_emitted"])

        wait_for(all_spooled, 10, "the events on disk")
        blocked_spool.clear()  # the spool stalls: the checkpoint cannot finish
        svc.Export(trace(k + 1), Context())
        assert not svc.checkpoint(timeout=0.3)
        blocked_spool.set()
        assert svc.checkpoint()
        assert logged_traces(requests) == [{held}]  # one copy, not one per checkpoint
        assert svc.stats()["held"] == 1
    finally:
        blocked_spool.set()
        svc.close(10)


def test_build_server_puts_the_event_spool_next_to_the_request_log(tmp_path: Path) -> None:
    """Without an event spool a failed delivery counted as done, and the checkpoint then
    deleted the only copy of an acknowledged request."""
    server, _, svc, _ = build_server(
        ServiceSettings(listen="127.0.0.1:0", lineage=LineageSettings(),
                        spool_dir=tmp_path / "spool"), FailingSink())
    try:
        svc.Export(trace(7), Context())
        svc.checkpoint()
        assert svc.stats().get("spool_pending") == 2  # kept on disk for a backend that is down
    finally:
        svc.close(5)
        server.stop(0).wait()
    restarted = LineageTraceService(
        LineageSettings(spool_dir=str(tmp_path / "spool" / "events")),
        JsonLinesSink(tmp_path / "events.jsonl"), None,
        RequestLog(tmp_path / "spool" / "requests"), checkpoint_interval=None)
    try:
        assert restarted.flush(10)
    finally:
        restarted.close(10)
    assert complete_runs(tmp_path / "events.jsonl") == {expected_run_id(7, 0x22)}


# -- the request log on a failing disk (fault injection: os.write / os.ftruncate) -------


@pytest.fixture
def one_short_write(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Fault injection: once armed, the next os.write writes half of its bytes (a disk
    full mid-way)."""
    real_write = os.write
    state = {"armed": False}

    def short(fd: int, data: Any) -> int:
        if state["armed"]:
            state["armed"] = False
            return real_write(fd, bytes(data)[: len(data) // 2])
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short)
    yield lambda: state.update(armed=True)
    monkeypatch.setattr(os, "write", real_write)


def test_a_short_write_is_cut_off_so_later_records_replay(
    tmp_path: Path, one_short_write: Callable[[], None]
) -> None:
    log = RequestLog(tmp_path)
    log.append(b"first")
    one_short_write()
    with pytest.raises(OSError, match="short write"):
        log.append(b"refused" * 100)
    log.append(b"acknowledged after the failure")
    log.close()
    assert list(RequestLog(tmp_path).replay()) == [b"first", b"acknowledged after the failure"]


def test_when_the_cut_fails_too_replay_skips_the_torn_record(
    tmp_path: Path, one_short_write: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_ftruncate(fd: int, length: int) -> None:
        raise OSError(5, "fake I/O error")  # fault injection

    monkeypatch.setattr(os, "ftruncate", failing_ftruncate)
    log = RequestLog(tmp_path)
    log.append(b"first")
    one_short_write()
    with pytest.raises(OSError):
        log.append(b"refused" * 100)
    log.append(b"acknowledged after the failure")
    log.close()
    monkeypatch.undo()
    assert list(RequestLog(tmp_path).replay()) == [b"first", b"acknowledged after the failure"]


def test_replay_resynchronises_past_a_torn_record_in_the_middle(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = RequestLog(tmp_path)
    for payload in (b"one", b"two", b"three"):
        log.append(payload)
    log.close()
    (segment,) = tmp_path.glob("*.otlp")
    data = segment.read_bytes()
    two_at = data.index(b"two") - 8
    segment.write_bytes(data[:two_at + 5] + data[two_at + 11:])  # "two" torn
    assert list(RequestLog(tmp_path).replay()) == [b"one", b"three"]
    assert "skipped to the next record" in caplog.text


# -- secrets at rest: the request log is redacted like the events -------------------------


def test_the_request_log_holds_no_secret_and_replay_gives_the_same_events(
    tmp_path: Path
) -> None:
    """A Java-style span with a token literal in its SQL, a failed statement whose status
    and exception event quote the bound values: none reaches the request log, and the
    events a replay of that log gives are the events of the live path."""
    secrets = ("tok-4711-secret", "hunter2-bound-value")
    statement = semconv_statement(0x51, 0x53, attributes={
        "db.system.name": "postgresql", "db.namespace": "shop",
        "server.address": "db.internal", "server.port": 5432,
        "db.query.text": f"UPDATE accounts SET api_token = '{secrets[0]}' WHERE id = 7"})
    failed = span(0x52, "INSERT shop", parent=0x53, attributes={
        "db.system.name": "postgresql", "db.namespace": "shop",
        "server.address": "db.internal", "server.port": 5432,
        "db.query.text": "INSERT INTO users (name, password) VALUES ($1, $2)"},
        kind=Span.SPAN_KIND_CLIENT,
        error=f"duplicate key [parameters: ('ada', '{secrets[1]}')]")
    parent = span(0x53, "signup", start=0, end=100,
                  error=f"IntegrityError: duplicate key [parameters: ('ada', '{secrets[1]}')]")
    parent.events.add(name="exception", time_unix_nano=parent.end_time_unix_nano,
                      attributes=key_values({
                          "exception.type": "IntegrityError",
                          "exception.message": f"duplicate key [parameters: ('ada', "
                                               f"'{secrets[1]}')]",
                          "exception.stacktrace": f"Traceback ...\n[parameters: ('ada', "
                                                  f"'{secrets[1]}')]"}))
    live = service(tmp_path / "live")
    try:
        live.Export(request([statement, failed, parent]), Context())
        logged = b"".join(p.read_bytes()
                          for p in (tmp_path / "live" / "spool" / "requests").iterdir())
        assert logged and not [s for s in secrets if s.encode() in logged]
        copy = tmp_path / "replay" / "spool" / "requests"
        copy.mkdir(parents=True)
        for p in (tmp_path / "live" / "spool" / "requests").iterdir():
            (copy / p.name).write_bytes(p.read_bytes())
        assert live.flush(10)
    finally:
        live.close(10)
    replayed = service(tmp_path / "replay")
    try:
        assert replayed.stats()["requests_replayed"] == 1
        assert replayed.flush(10)
    finally:
        replayed.close(10)
    live_events = read_events(tmp_path / "live" / "events.jsonl")
    assert len(live_events) == 2 and "errorMessage" in str(live_events)
    assert read_events(tmp_path / "replay" / "events.jsonl") == live_events
    assert not [s for s in secrets if s in str(live_events)]
