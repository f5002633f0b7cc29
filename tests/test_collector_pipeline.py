"""The whole pipeline with a real OpenTelemetry Collector (built by
scripts/provision_otelcol.sh) running the project's otel-collector-config.yaml: an app under
``opentelemetry-instrument`` exports OTLP to the Collector, the Collector exports to
collector_exporter (a child process), which writes OpenLineage events. Jaeger is not running:
the Collector's Jaeger exporter just retries.

The design's promise, checked here end to end: the Collector path gives the events the
in-process exporter gives for the same spans, run IDs included."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from procs.otlp_tools import (
    JAVA,
    clean_env,
    free_port,
    metrics,
    port_open,
    read_events,
    request,
    semconv_statement,
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
PROCS = Path(__file__).parent / "procs"
BIN = Path(sys.executable).parent
CONFIG = ROOT / "otel-collector-config.yaml"


@dataclass
class Pipeline:
    tmp: Path
    collector: subprocess.Popen[Any]
    collector_log: Path
    exporter: subprocess.Popen[Any]
    exporter_log: Path
    events_file: Path
    otlp_grpc_port: int
    otlp_http_port: int
    collector_metrics_port: int
    exporter_metrics_port: int

    def events(self) -> list[dict[str, Any]]:
        return read_events(self.events_file)

    def wait_events(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        return wait_for(lambda: (e := self.events()) and len(e) >= count and e, timeout,
                        f"{count} events from collector_exporter; Collector log tail:\n"
                        + self.collector_log.read_text()[-3000:])

    def export(self, req: Any) -> Any:
        """OTLP/gRPC to the Collector, as an app's exporter would send it."""
        with grpc.insecure_channel(f"127.0.0.1:{self.otlp_grpc_port}") as channel:
            return trace_service_pb2_grpc.TraceServiceStub(channel).Export(req, timeout=10)

    def settle(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Events, once collector_exporter's converter has seen every span the Collector
        accepted and every event it emitted is delivered (runs still held are not emitted).

        ``spans_seen``, not ``spans_received``: a request is counted as received before its
        spans reach the converter, and in that gap the emitted and delivered counters still
        agree on the previous requests' events, which made this wait return early."""
        def settled() -> bool:
            accepted = sum(v for k, v in metrics(self.collector_metrics_port).items()
                           if k.startswith("otelcol_receiver_accepted_spans"))
            ours = metrics(self.exporter_metrics_port)
            return (accepted > 0 and ours["collector_exporter_spans_seen"] >= accepted
                    and ours["collector_exporter_delivered"]
                    == ours["collector_exporter_events_emitted"])

        wait_for(settled, timeout, "collector_exporter to convert what the Collector accepted; "
                 "Collector log tail:\n" + self.collector_log.read_text()[-3000:], interval=0.2)
        return self.events()

    def collector_counter(self, name: str, exporter: str) -> float:
        return sum(v for k, v in metrics(self.collector_metrics_port).items()
                   if k.startswith(name) and f'exporter="{exporter}"' in k)


StartPipeline = Callable[..., Pipeline]


@pytest.fixture
def start_pipeline(otelcol_binary: Path, tmp_path: Path) -> Iterator[StartPipeline]:
    """collector_exporter and the Collector on free loopback ports; both stopped after the
    test (SIGTERM, then SIGKILL), leaving no process behind."""
    procs: list[subprocess.Popen[Any]] = []

    def start(*exporter_args: str) -> Pipeline:
        events_file = tmp_path / "collector-path-events.jsonl"
        exporter_log = tmp_path / "collector_exporter.log"
        exporter_metrics = free_port()
        exporter, lineage_port = start_collector_exporter(
            ["--listen", "127.0.0.1:0", "--events-file", str(events_file), "--metrics-listen",
             f"127.0.0.1:{exporter_metrics}", "--stats-interval", "1", *exporter_args],
            exporter_log, tmp_path)
        procs.append(exporter)
        grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
        collector, collector_log = start_otelcol(
            otelcol_binary, CONFIG, tmp_path, grpc_port=grpc_port, http_port=http_port,
            metrics_port=metrics_port, lineage_port=lineage_port)
        procs.append(collector)

        def ready() -> bool:
            if collector.poll() is not None:
                raise AssertionError(f"the Collector exited {collector.returncode}:\n"
                                     f"{collector_log.read_text()[-4000:]}")
            return port_open(grpc_port) and port_open(http_port) and port_open(metrics_port)

        wait_for(ready, 60, "the Collector's OTLP receivers")
        return Pipeline(tmp_path, collector, collector_log, exporter, exporter_log, events_file,
                        grpc_port, http_port, metrics_port, exporter_metrics)

    yield start
    for proc in reversed(procs):  # the Collector first: it drains into collector_exporter
        stop(proc, timeout=20)
    assert all(proc.poll() is not None for proc in procs)


def run_app(pipeline: Pipeline, mode: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """tests/procs/library_app.py under opentelemetry-instrument: OTLP to the Collector
    and, beside it, the in-process exporter writing its own events file."""
    in_process = pipeline.tmp / "in-process-events.jsonl"
    env = clean_env(
        HOME=str(pipeline.tmp),
        OTEL_SERVICE_NAME="library",
        OTEL_TRACES_EXPORTER="otlp,openlineage",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{pipeline.otlp_grpc_port}",
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        # batches are cut where the app flushes, not by a timer: deterministic requests
        OTEL_BSP_SCHEDULE_DELAY="60000",
        OTEL_SQLA_LINEAGE_FILE=str(in_process),
    )
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(PROCS / "library_app.py"),
         str(pipeline.tmp / "library.db"), mode],
        capture_output=True, text=True, env=env, cwd=pipeline.tmp, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "library app done" in result.stdout
    return result, in_process


def canonical(events: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in events)


def by_job(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["job"]["name"], []).append(event)
    return out


def test_instrumented_app_through_the_real_collector_gives_the_in_process_events(
    start_pipeline: StartPipeline,
) -> None:
    pipeline = start_pipeline()
    _, in_process_file = run_app(pipeline, "steps")
    in_process = read_events(in_process_file)
    assert len(in_process) == 20  # the demo: 10 runs
    events = pipeline.settle()

    jobs = by_job(events)
    assert [e["eventType"] for e in jobs["library.checkout_book"]].count("FAIL") == 1
    assert sorted(e["eventType"] for e in jobs["library.checkout_book"]) == \
        ["COMPLETE", "COMPLETE", "FAIL", "START", "START", "START"]
    inventory = jobs["library.book_inventory"][-1]
    assert [d["name"] for d in inventory["inputs"]] == ["books"]
    fields = inventory["inputs"][0]["facets"]["schema"]["fields"]
    assert [f["name"] for f in fields] == ["id", "title", "author", "copies_available"]
    assert inventory["inputs"][0]["namespace"].startswith("sqlite://")
    checkout = next(e for e in jobs["library.checkout_book"] if e["eventType"] == "COMPLETE")
    assert [d["name"] for d in checkout["outputs"]] == ["book_history", "books"]
    assert jobs["library.register_user"][-1]["eventType"] == "FAIL"
    # run IDs follow from the trace context of the app's spans
    for event in events:
        otel = event["run"]["facets"]["opentelemetry"]
        assert event["run"]["runId"] == expected_run_id(int(otel["traceId"], 16),
                                                        int(otel["spanId"], 16))
    # the design's promise: the same spans give the same events on both paths
    assert canonical(events) == canonical(in_process)


def test_batch_opening_with_another_application_span_through_the_real_collector(
    start_pipeline: StartPipeline,
) -> None:
    """A batch cut as BatchSpanProcessor cuts them in any busy app: a span with no SQL ends,
    then a job runs its statements and ends, all before the next export. Both paths must
    still agree (see test_collector_service's scope-order test for the mechanism)."""
    pipeline = start_pipeline()
    _, in_process_file = run_app(pipeline, "cut")
    in_process = read_events(in_process_file)
    assert "library.checkout_book" in by_job(in_process)
    events = pipeline.settle()
    held = metrics(pipeline.exporter_metrics_port)["collector_exporter_held"]
    assert "library.checkout_book" in by_job(events), (
        f"collector_exporter emitted {sorted(by_job(events))} and holds {held:.0f} "
        "statement(s) for an enclosing span it has already seen end")
    assert canonical(events) == canonical(in_process)


POSTGRES_JAVA_SPAN = {
    "db.system.name": "postgresql", "db.namespace": "shop", "server.address": "db.internal",
    "server.port": 5433, "db.operation.name": "INSERT",
    "db.query.text": "INSERT INTO orders (id, cart_id) SELECT id, cart_id FROM carts "
                     "WHERE status = $1",
}


def java_request(trace_id: int) -> Any:
    return request([
        semconv_statement(0x21, 0xD1, attributes=POSTGRES_JAVA_SPAN, trace_id=trace_id),
        span(0xD1, "POST /checkout", kind=Span.SPAN_KIND_SERVER, start=0, end=50,
             trace_id=trace_id),
    ], resource=JAVA, scope="io.opentelemetry.jdbc")


def assert_java_run(events: list[dict[str, Any]], trace_id: int) -> None:
    mine = [e for e in events if e["run"]["runId"] == expected_run_id(trace_id, 0xD1)]
    assert [e["eventType"] for e in mine] == ["START", "COMPLETE"]
    complete = mine[1]
    assert complete["job"]["name"] == "checkout-java.POST /checkout"
    assert complete["job"]["namespace"] == "checkout-java"
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("postgres://db.internal:5433", "shop.public.carts")]
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == [
        ("postgres://db.internal:5433", "shop.public.orders")]


def test_java_style_database_span_over_grpc_and_http_gives_the_right_datasets(
    start_pipeline: StartPipeline,
) -> None:
    pipeline = start_pipeline()
    pipeline.export(java_request(0x1111))
    body = java_request(0x2222).SerializeToString()
    post = urllib.request.Request(f"http://127.0.0.1:{pipeline.otlp_http_port}/v1/traces",
                                  data=body, method="POST",
                                  headers={"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(post, timeout=10) as answer:
        assert answer.status == 200
    events = pipeline.wait_events(4)
    assert_java_run(events, 0x1111)
    assert_java_run(events, 0x2222)


def test_malformed_and_oversized_requests_fail_and_the_next_request_still_works(
    start_pipeline: StartPipeline,
) -> None:
    # collector_exporter accepts less than the Collector's receiver (4 MiB)
    pipeline = start_pipeline("--max-message-bytes", str(256 * 1024))
    with grpc.insecure_channel(f"127.0.0.1:{pipeline.otlp_grpc_port}") as channel:
        raw = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        with pytest.raises(grpc.RpcError) as caught:
            raw(b"\xff\xff\xff not protobuf", timeout=10)
        assert caught.value.code() != grpc.StatusCode.OK
    # the Collector's own limit
    huge = sqlalchemy_statement(0x31, None, operation="SELECT", read=("books",),
                                sql="SELECT " + "x, " * 2_000_000 + "1 FROM books", trace_id=0x31)
    with pytest.raises(grpc.RpcError) as caught:
        pipeline.export(request([huge]))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # accepted by the Collector, refused by collector_exporter: not retried, counted
    big = sqlalchemy_statement(0x32, None, operation="SELECT", read=("books",),
                               sql="SELECT " + "x, " * 100_000 + "1 FROM books", trace_id=0x32)
    pipeline.export(request([big]))
    wait_for(lambda: pipeline.collector_counter("otelcol_exporter_send_failed_spans",
                                                "otlp_grpc/lineage") >= 1,
             30, "the Collector to give up on the oversized batch")
    # a malformed span beside a good one: collector_exporter rejects just that span
    bad = sqlalchemy_statement(0x33, 0x33, operation="SELECT", read=("books",), trace_id=0x33)
    good = sqlalchemy_statement(0x34, None, operation="INSERT", written=("loans",),
                                trace_id=0x34)
    pipeline.export(request([bad, good]))
    events = pipeline.wait_events(2, timeout=30)
    assert [e["job"]["name"] for e in events] == ["library.INSERT loans"] * 2
    counters = wait_for(lambda: (m := metrics(pipeline.exporter_metrics_port))
                        and m["collector_exporter_spans_rejected"] >= 1 and m, 10,
                        "collector_exporter's rejected counter")
    assert counters["collector_exporter_spans_rejected"] == 1
    assert pipeline.exporter.poll() is None and pipeline.collector.poll() is None


def test_sigterm_flushes_runs_held_for_a_parent_that_never_came(
    start_pipeline: StartPipeline,
) -> None:
    pipeline = start_pipeline()
    pipeline.export(request([
        sqlalchemy_statement(0x41, 0xF1, operation="SELECT", read=("books",), trace_id=0x41),
        sqlalchemy_statement(0x42, 0xF1, operation="UPDATE", written=("books",), trace_id=0x41),
    ]))
    wait_for(lambda: metrics(pipeline.exporter_metrics_port)["collector_exporter_held"] == 2,
             30, "two statements held by collector_exporter")
    assert pipeline.events() == []
    pipeline.exporter.send_signal(signal.SIGTERM)
    assert pipeline.exporter.wait(60) == 0, pipeline.exporter_log.read_text()[-3000:]
    events = pipeline.events()
    assert sorted({e["job"]["name"] for e in events}) == [
        "library.SELECT books", "library.UPDATE books"]
    assert {e["run"]["runId"] for e in events} == {expected_run_id(0x41, 0x41),
                                                    expected_run_id(0x41, 0x42)}
    assert "stopped (all held runs flushed)" in pipeline.exporter_log.read_text()
