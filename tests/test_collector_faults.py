"""The lineage path with the real OpenTelemetry Collector (otel-collector-config.yaml) when
collector_exporter is killed with ``kill -9`` mid-stream and started again: the Collector's
``retry_on_failure``/``sending_queue`` hold what could not be sent, collector_exporter
replays what it acknowledged, and every span the Collector accepted from the app ends up
as lineage."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from procs.otlp_tools import (
    free_port,
    port_open,
    read_events,
    request,
    span,
    sqlalchemy_statement,
    start_collector_exporter,
    start_otelcol,
    stop,
    wait_for,
)
from spanfactory import expected_run_id

pytestmark = [pytest.mark.collector, pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "otel-collector-config.yaml"


def start_exporter(tmp: Path, port: int, n: int) -> subprocess.Popen[Any]:
    proc, _ = start_collector_exporter(
        ["--listen", f"127.0.0.1:{port}", "--events-file", str(tmp / "events.jsonl"),
         "--spool-dir", str(tmp / "spool")],
        tmp / f"collector_exporter-{n}.log", tmp)
    return proc


def lineage_retried(collector_log: Path) -> bool:
    """The Collector logged a retry of the lineage exporter (not of the Jaeger one, which
    retries all along: nothing listens on its port in these tests)."""
    return any("Will retry" in line and '"otlp_grpc/lineage"' in line
               for line in collector_log.read_text().splitlines())


def test_collector_exporter_killed_and_restarted_behind_the_collector_loses_nothing(
    otelcol_binary: Path, tmp_path: Path
) -> None:
    lineage_port, grpc_port = free_port(), free_port()
    exporter = start_exporter(tmp_path, lineage_port, 0)
    collector, collector_log = start_otelcol(
        otelcol_binary, CONFIG, tmp_path, grpc_port=grpc_port, http_port=free_port(),
        metrics_port=free_port(), lineage_port=lineage_port)
    accepted: list[tuple[int, int]] = []
    done = threading.Event()

    def app() -> None:
        """An app's OTLP exporter: one trace per request, a few hundred per second."""
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            k = 0
            while not done.is_set():
                k += 1
                trace_id = 0x7000 << 64 | k
                try:
                    stub.Export(request([
                        sqlalchemy_statement(0x11, 0x22, operation="INSERT",
                                             written=("loans",), trace_id=trace_id),
                        span(0x22, "checkout", trace_id=trace_id)]), timeout=10)
                    accepted.append((trace_id, 0x22))
                except grpc.RpcError:
                    pass  # not accepted: not promised
                time.sleep(0.003)

    try:
        wait_for(lambda: port_open(grpc_port), 60, "the Collector's OTLP receiver")
        sender = threading.Thread(target=app, daemon=True)
        sender.start()
        wait_for(lambda: len(read_events(tmp_path / "events.jsonl")) > 100, 60,
                 "lineage flowing")
        exporter.kill()
        assert exporter.wait(10) == -9
        # the Collector keeps accepting, queueing and retrying meanwhile
        wait_for(lambda: lineage_retried(collector_log), 60,
                 "the Collector to meet the outage and retry")
        exporter = start_exporter(tmp_path, lineage_port, 1)
        before = len(accepted)
        wait_for(lambda: len(accepted) >= max(before + 50, 201), 90,
                 "traffic after the restart")
        done.set()
        sender.join(30)
        expected = {expected_run_id(*ack) for ack in accepted}

        def all_there() -> bool:
            runs = {e["run"]["runId"] for e in read_events(tmp_path / "events.jsonl")
                    if e["eventType"] == "COMPLETE"}
            return expected <= runs

        wait_for(all_there, 90, "every accepted trace's run; Collector log tail:\n"
                 + collector_log.read_text()[-2000:], interval=0.5)
    finally:
        stop(collector, 20)
        stop(exporter, 30)
    events = read_events(tmp_path / "events.jsonl")
    types: dict[str, list[str]] = {}
    for event in events:
        types.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert all(types[run][:2] == ["START", "COMPLETE"] for run in expected)
    assert len(accepted) > 200
    assert lineage_retried(collector_log)  # the outage was met and ridden out
    print(f"\n{len(accepted)} traces accepted by the Collector, {len(expected)} runs, all "
          f"delivered; {sum(len(t) // 2 - 1 for t in types.values())} sent twice")


def test_a_full_lineage_queue_gives_the_app_an_error_not_a_silent_drop(
    otelcol_binary: Path, tmp_path: Path
) -> None:
    """collector_exporter down and a sending queue of 2 requests (LINEAGE_QUEUE_SIZE): the
    Collector answers the app's exporter UNAVAILABLE once the queue is full (with a batch
    processor in traces/lineage it answered OK and dropped the spans); every request the
    app got OK for, or retried until OK, ends up as lineage once the service is up."""
    lineage_port, grpc_port = free_port(), free_port()
    collector, collector_log = start_otelcol(
        otelcol_binary, CONFIG, tmp_path, grpc_port=grpc_port, http_port=free_port(),
        metrics_port=free_port(), lineage_port=lineage_port, LINEAGE_QUEUE_SIZE="2")
    exporter = None
    refused: list[str] = []
    try:
        wait_for(lambda: port_open(grpc_port), 60, "the Collector's OTLP receiver")
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)

            def send(k: int) -> bool:
                try:
                    stub.Export(request([
                        sqlalchemy_statement(0x11, 0x22, operation="INSERT",
                                             written=("loans",), trace_id=0x8000 + k),
                        span(0x22, "checkout", trace_id=0x8000 + k)]), timeout=10)
                    return True
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # retryable
                    refused.append(str(exc.details()))
                    return False

            pending = [k for k in range(1, 11) if not send(k)]
            assert refused, "a full sending queue must refuse, not drop silently"
            assert all("sending queue is full" in r for r in refused), refused
            exporter = start_exporter(tmp_path, lineage_port, 0)
            deadline = time.monotonic() + 90
            while pending and time.monotonic() < deadline:  # the app's exporter retrying
                pending = [k for k in pending if not send(k)]
                time.sleep(0.2)
            assert pending == []

        expected = {expected_run_id(0x8000 + k, 0x22) for k in range(1, 11)}

        def all_there() -> bool:
            runs = {e["run"]["runId"] for e in read_events(tmp_path / "events.jsonl")
                    if e["eventType"] == "COMPLETE"}
            return expected <= runs

        wait_for(all_there, 90, "every trace's run; Collector log tail:\n"
                 + collector_log.read_text()[-2000:], interval=0.5)
    finally:
        stop(collector, 20)
        if exporter is not None:
            stop(exporter, 30)
    print(f"\n{len(refused)} Export calls refused with UNAVAILABLE while the queue was full; "
          "all 10 runs delivered after the app's retries")
