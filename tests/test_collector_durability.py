"""collector_exporter under load and ``kill -9``: several OTLP clients send at once,
the service is killed mid-stream and started again on the same spool; every span it
acknowledged has its run's events (START before COMPLETE) in the output. The clients
retry what was not acknowledged, as the Collector's ``retry_on_failure`` does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from fakes import switchable_lineage_backend
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from procs.otlp_tools import (
    TRACE,
    clean_env,
    free_port,
    logged_traces,
    request,
    span,
    sqlalchemy_statement,
    start_collector_exporter,
    stop,
    wait_for,
)
from spanfactory import expected_run_id

from collector_exporter.request_log import RequestLog
from collector_exporter.service import LineageTraceService
from otel_sqla_lineage.delivery import JsonLinesSink
from otel_sqla_lineage.settings import LineageSettings

pytestmark = pytest.mark.subprocess

CLIENTS = 4
SECONDS = 6.0
KILL_AFTER = 2.5
MIN_RUNS = 100  # acknowledged traces before the clients stop (half before the kill)


def start(tmp_path: Path, port: int, n: int, **env: str) -> tuple[subprocess.Popen[Any], Path]:
    log = tmp_path / f"service-{n}.log"
    proc, _ = start_collector_exporter(
        ["--listen", f"127.0.0.1:{port}", "--events-file", str(tmp_path / "events.jsonl"),
         "--spool-dir", str(tmp_path / "spool"), "--stats-interval", "1"],
        log, tmp_path, env=env)
    return proc, log


def parsed_events(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The events, and how many lines do not parse (a line cut by ``kill -9``)."""
    events, torn = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            torn += 1
    return events, torn


class Client(threading.Thread):
    """Sends one trace per iteration (a statement and its enclosing span), every other
    trace split over two requests so some statements wait in the service for their
    parent; retries each request until it is acknowledged."""

    def __init__(self, number: int, port: int, until: Callable[[], bool]) -> None:
        super().__init__(name=f"client-{number}", daemon=True)
        self.number = number
        self.until = until
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 300)])
        self.stub = trace_service_pb2_grpc.TraceServiceStub(self.channel)
        self.acked: list[tuple[int, int]] = []  # (trace id, enclosing span id)
        self.spans = 0
        self.retries = 0

    def send(self, spans: list[Any]) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.stub.Export(request(spans), timeout=5)
                self.spans += len(spans)
                return
            except grpc.RpcError:
                self.retries += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def run(self) -> None:
        k = 0
        while not self.until():
            k += 1
            trace_id = (self.number + 1) << 100 | k
            statement = sqlalchemy_statement(k << 8 | 1, k << 8 | 2, operation="SELECT",
                                             read=("books",), trace_id=trace_id)
            parent = span(k << 8 | 2, f"job_{self.number}", trace_id=trace_id)
            if k % 2:
                self.send([statement])
                self.send([parent])
            else:
                self.send([statement, parent])
            self.acked.append((trace_id, k << 8 | 2))
        self.channel.close()


def test_kill_9_mid_stream_loses_no_acknowledged_span(tmp_path: Path) -> None:
    port = free_port()
    proc, _ = start(tmp_path, port, 0)
    began = time.monotonic()

    def acknowledged() -> int:
        return sum(len(client.acked) for client in clients)

    # by traffic, not only by the clock: a loaded machine may send little in SECONDS
    clients = [Client(n, port, lambda: time.monotonic() - began > SECONDS
                      and acknowledged() > MIN_RUNS)
               for n in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        wait_for(lambda: time.monotonic() - began > KILL_AFTER
                 and acknowledged() > MIN_RUNS // 2, 60, "traffic before the kill")
        proc.kill()
        assert proc.wait(10) == -9
        killed_at = time.monotonic() - began
        proc, log = start(tmp_path, port, 1)
        for client in clients:
            client.join(90)
            assert not client.is_alive()
        elapsed = time.monotonic() - began
    finally:
        assert stop(proc, 60) == 0
    restart_log = log.read_text()
    replayed = re.search(r"replayed (\d+) acknowledged request\(s\) \((\d+) spans\)",
                         restart_log)
    assert replayed, "the restarted service replays its request log\n" + restart_log[-2000:]
    events, torn = parsed_events(tmp_path / "events.jsonl")
    assert torn <= 1  # at most the line the kill cut in half
    seen: dict[str, list[str]] = {}
    for event in events:
        seen.setdefault(event["run"]["runId"], []).append(event["eventType"])
    acked = [ack for client in clients for ack in client.acked]
    lost = [ack for ack in acked if seen.get(expected_run_id(*ack), [])[:2]
            != ["START", "COMPLETE"]]
    duplicates = sum(max(0, len(types) - 2) for types in seen.values()) // 2
    spans = sum(c.spans for c in clients)
    print(f"\n{CLIENTS} clients, {spans} spans acknowledged in {elapsed:.1f}s "
          f"({spans / elapsed:.0f} spans/s incl. the restart), kill -9 at {killed_at:.1f}s, "
          f"{replayed.group(1)} requests ({replayed.group(2)} spans) replayed, "
          f"{sum(c.retries for c in clients)} client retries, {len(acked)} runs, "
          f"{duplicates} runs sent twice, {len(lost)} lost")
    assert len(acked) > MIN_RUNS
    assert lost == []


class Context:
    """The part of grpc.ServicerContext the service uses (no token configured)."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise grpc.RpcError(code, details)


def send_complete_traces(service: LineageTraceService, trace_ids: range) -> None:
    """One request per trace: a job and its SELECT, nothing left to hold."""
    for trace_id in trace_ids:
        service.Export(request([
            sqlalchemy_statement(0x11, 0x22, operation="SELECT", read=("books",),
                                 trace_id=trace_id),
            span(0x22, "job", trace_id=trace_id)]), Context())


def test_request_log_is_cut_when_nothing_is_held_and_compacted_to_held_traces(
    tmp_path: Path
) -> None:
    settings = LineageSettings(spool_dir=str(tmp_path / "spool" / "events"))
    service = LineageTraceService(settings, JsonLinesSink(tmp_path / "events.jsonl"), None,
                                  RequestLog(tmp_path / "spool" / "requests"),
                                  request_log_max_bytes=1024 * 1024, checkpoint_interval=None)
    requests = tmp_path / "spool" / "requests"
    try:
        send_complete_traces(service, range(0x101, 0x100 + 50))
        assert len(logged_traces(requests)) == 49  # acknowledged = logged
        assert service.checkpoint()  # nothing held: every event spooled, the log cut
        assert logged_traces(requests) == []
        # a statement whose parent has not come yet, then a lot of complete traces
        service.Export(request([sqlalchemy_statement(0x31, 0x32, operation="UPDATE",
                                                     written=("books",))]), Context())
        send_complete_traces(service, range(0x1001, 0x1000 + 800))
        assert service.stats()["held"] == 1
        # past the compaction size (a quarter of the maximum): only the held trace's
        # spans are carried forward
        assert 256 * 1024 < service.stats()["request_log_bytes"] < 1024 * 1024
        assert service.checkpoint()
        assert logged_traces(requests) == [{TRACE}]
        assert service.stats()["held"] == 1  # still waiting for its parent, not emitted
    finally:
        service.close(10)


def test_events_spooled_while_the_backend_is_down_survive_a_restart_of_the_service(
    tmp_path: Path
) -> None:
    with switchable_lineage_backend(status=503) as backend:
        port = free_port()
        proc, log = start(tmp_path, port, 0, OPENLINEAGE_URL=backend.url)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            for k in range(1, 6):
                stub.Export(request([
                    sqlalchemy_statement(0x11, 0x22, operation="INSERT", written=("loans",),
                                         trace_id=k),
                    span(0x22, f"job{k}", trace_id=k)]), timeout=10)
        wait_for(lambda: backend.refused > 0, 30, "the backend to refuse an event")
        assert stop(proc, 60) == 0
        assert "10 event(s) stay in the spool" in log.read_text()
        assert backend.accepted == []
        backend.status = 200
        proc, log = start(tmp_path, port, 1, OPENLINEAGE_URL=backend.url)
        try:
            wait_for(lambda: len(backend.accepted) == 10, 60, "the spooled events delivered")
        finally:
            assert stop(proc, 60) == 0
        assert "left in the spool" in log.read_text()
    assert [(e["job"]["name"], e["eventType"]) for e in backend.accepted] == [
        (f"library.job{k}", t) for k in range(1, 6) for t in ("START", "COMPLETE")]
    assert {e["run"]["runId"] for e in backend.accepted} == {
        expected_run_id(k, 0x22) for k in range(1, 6)}


def test_a_second_service_on_the_same_spool_is_refused_and_no_spool_keeps_nothing(
    tmp_path: Path
) -> None:
    port = free_port()
    first, _ = start(tmp_path, port, 0)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "collector_exporter", "--listen", "127.0.0.1:0",
             "--spool-dir", str(tmp_path / "spool")],
            capture_output=True, text=True, cwd=tmp_path, timeout=60,
            env=clean_env(HOME=str(tmp_path)))
        assert second.returncode == 2
        assert "is in use by another process" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        assert stop(first) == 0
    log = tmp_path / "no-spool.log"
    # --no-spool wins over the library's own setting in the environment
    proc, _ = start_collector_exporter(
        ["--listen", "127.0.0.1:0", "--no-spool", "--events-file",
         str(tmp_path / "no-spool.jsonl")],
        log, tmp_path / "spool", env={"HOME": str(tmp_path),
                                      "OTEL_SQLA_LINEAGE_SPOOL_DIR": str(tmp_path / "env-spool")})
    assert stop(proc) == 0
    assert "no spool (requests acknowledged once in memory)" in log.read_text()
    assert not (tmp_path / "spool" / "lineage-spool").exists()
    assert not (tmp_path / "env-spool").exists()
