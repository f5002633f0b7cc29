"""collector_exporter end to end against the real OpenTelemetry Collector, same load, one run.

Load: real SQLAlchemy spans. The library demo's scenario (tests/…/demo: jobs that read,
write and fail, ORM and Core, exception events) runs twice on SQLite under upstream's
instrumentation + ours, captured in memory. The first run (which carries the
``db.sqlalchemy.schema`` announcements) is the warm-up request; the traces of the second run
are the template. ``--spans`` spans are made of copies of those traces (fresh trace ids),
whole traces per request, ``--batch`` spans per request or a little more, encoded exactly
as the SDK's OTLP encoder groups them (resource → instrumentation scope → spans; statement
scope first, since a trace's first span to end is a statement). Every request is encoded to
bytes before any clock starts.

a) collector_exporter: ``python -m collector_exporter`` in a child process pinned to one CPU,
   JSON-lines file transport. An OTLP/gRPC client (this process, pinned to another CPU)
   sends the requests one after another; the clock stops when the service's ``delivered``
   counter (``/metrics``) says every expected event is in the file. Line count, drops and
   rejections are checked after.
b) the Collector built by scripts/provision_otelcol.sh, pinned to one CPU with
   GOMAXPROCS=1: otlp receiver → batch (timeout 20ms, so its timer is no tail) → debug
   exporter (verbosity basic). Same requests; the clock stops when the Collector's
   ``otelcol_exporter_sent_spans`` counter reaches the span count.

Fresh processes every round; the rounds alternate which target goes first. Reported:
medians over ``--rounds`` rounds of spans/s, and collector_exporter / Collector.
Target: collector_exporter >= 20,000 spans/s on one core.

    python benchmarks/bench_collector.py            # 100,000 spans, 3 rounds
    python benchmarks/bench_collector.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from _common import free_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

TARGET = 20_000
ROOT = Path(__file__).resolve().parent.parent
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


# -- load -------------------------------------------------------------------------------


def capture_demo_spans(workdir: Path) -> list[list[Any]]:
    """Two runs of the demo scenario, instrumented; each run's finished spans in end order."""
    import contextlib
    import io

    import sqlalchemy as sa
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from otel_sqla_lineage import SQLAlchemyLineageInstrumentor
    from otel_sqla_lineage.demo.__main__ import run_scenario
    from otel_sqla_lineage.demo.app import Library

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "library"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    runs = []
    try:
        engine = sa.create_engine(f"sqlite:///{workdir / 'library.db'}")
        library = Library(engine, provider.get_tracer("otel_sqla_lineage.demo"))
        for _ in range(2):
            with contextlib.redirect_stdout(io.StringIO()):
                run_scenario(library)
            runs.append(list(memory.get_finished_spans()))
            memory.clear()
        engine.dispose()
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    return runs


def encode(spans: list[Any]) -> ExportTraceServiceRequest:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request: ExportTraceServiceRequest = encode_spans(spans)
    return request


@dataclass
class Load:
    warmup: bytes
    warmup_spans: int
    warmup_events: int
    requests: list[bytes]
    spans: int
    events: int
    statements: int


def expected_events(request: ExportTraceServiceRequest) -> tuple[int, int]:
    """(events, statement spans) the shared assembler gives for ``request`` (job runs)."""
    from collector_exporter.decode import decode_request
    from collector_exporter.service import children_first
    from otel_sqla_lineage.assemble import RunAssembler
    from otel_sqla_lineage.convert import Converter
    from otel_sqla_lineage.settings import LineageSettings

    assembler = RunAssembler(Converter(LineageSettings()))
    events = 0
    for view in children_first(decode_request(request).spans):  # as the service does
        events += len(assembler.add(view))
    events += len(assembler.drain())
    return events, assembler.stats.statements_seen


def build_load(n_spans: int, batch: int, workdir: Path) -> Load:
    first, second = capture_demo_spans(workdir)
    warmup = encode(first)
    by_trace: dict[int, list[Any]] = defaultdict(list)
    for s in second:
        by_trace[s.get_span_context().trace_id].append(s)
    # one template request per trace (the SDK's grouping), and what it yields
    templates = []
    for spans in by_trace.values():
        request = encode(spans)
        events, statements = expected_events(request)
        templates.append((request, len(spans), events, statements))
    requests: list[bytes] = []
    total_spans = total_events = total_statements = 0
    copy = 0
    while total_spans < n_spans:
        batch_request = ExportTraceServiceRequest()
        scopes: dict[str, ScopeSpans] = {}
        resource_spans = batch_request.resource_spans.add()
        in_batch = 0
        while in_batch < batch and total_spans + in_batch < n_spans:
            request, count, events, statements = templates[copy % len(templates)]
            copy += 1
            trace_id = (0xB0 << 120 | copy).to_bytes(16, "big")
            rs: ResourceSpans = request.resource_spans[0]
            if not resource_spans.HasField("resource"):
                resource_spans.resource.CopyFrom(rs.resource)
            for scope_spans in rs.scope_spans:
                target = scopes.get(scope_spans.scope.name)
                if target is None:
                    target = scopes[scope_spans.scope.name] = resource_spans.scope_spans.add()
                    target.scope.CopyFrom(scope_spans.scope)
                for span in scope_spans.spans:
                    clone = target.spans.add()
                    clone.CopyFrom(span)
                    clone.trace_id = trace_id
            in_batch += count
            total_events += events
            total_statements += statements
        total_spans += in_batch
        requests.append(batch_request.SerializeToString())
    warmup_events, _ = expected_events(warmup)
    return Load(warmup.SerializeToString(), len(first), warmup_events, requests, total_spans,
                total_events, total_statements)


# -- processes --------------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def wait(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """``argv`` run on one CPU, every thread of it (taskset sets it before exec, so the Go
    runtime's and gRPC's threads inherit it)."""
    if cpu is None:
        return argv
    taskset = shutil.which("taskset")
    if taskset is None:
        raise SystemExit("taskset (util-linux) is needed to pin the processes to one CPU")
    return [taskset, "-c", str(cpu), *argv]


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "OPENLINEAGE"))}
    env.update(extra)
    return env


def send_all(port: int, requests: list[bytes]) -> tuple[float, float]:
    """Sends ``requests`` one after another: (wall seconds, this process's CPU seconds)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ]) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        export = channel.unary_unary(EXPORT)
        t0, c0 = time.perf_counter(), time.process_time()
        for body in requests:
            export(body, timeout=60)
        return time.perf_counter() - t0, time.process_time() - c0


@dataclass
class Result:
    seconds: float
    send_seconds: float
    client_cpu_seconds: float
    note: str


def run_collector_exporter(load: Load, cpu: int | None, workdir: Path) -> Result:
    events_file = workdir / "events.jsonl"
    events_file.unlink(missing_ok=True)
    port, metrics_port = free_port(), free_port()
    log = (workdir / "collector_exporter.log").open("w")
    proc = subprocess.Popen(
        pinned(cpu, [
            sys.executable, "-m", "collector_exporter", "--listen", f"127.0.0.1:{port}",
            "--events-file", str(events_file), "--metrics-listen", f"127.0.0.1:{metrics_port}",
            "--queue-max-events", str(2 * (load.events + load.warmup_events) + 1000),
            "--stats-interval", "5", "--log-level", "WARNING"]),
        stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=clean_env(HOME=str(workdir)),
    )
    try:
        send_all(port, [load.warmup])
        wait(lambda: scrape(metrics_port)["collector_exporter_delivered"] >= load.warmup_events,
             60, "the warm-up events")
        want = load.warmup_events + load.events
        t0 = time.perf_counter()
        send_seconds, client_cpu = send_all(port, load.requests)
        wait(lambda: scrape(metrics_port)["collector_exporter_delivered"] >= want, 600,
             "collector_exporter to deliver every event")
        seconds = time.perf_counter() - t0
        counters = scrape(metrics_port)
    finally:
        stop(proc)
        log.close()
    with events_file.open() as f:
        lines = sum(1 for _ in f)
    problems = [f"{k.removeprefix('collector_exporter_')}={v:.0f}" for k, v in counters.items()
                if k.endswith(("_dropped", "_failed", "_rejected", "_held", "_evicted",
                               "_expired")) and v]
    if lines != want or problems:
        raise SystemExit(f"collector_exporter: {lines} lines for {want} events; {problems}")
    return Result(seconds, send_seconds, client_cpu, f"{lines} event lines")


COLLECTOR_CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
        max_recv_msg_size_mib: 64
processors:
  batch:
    timeout: 20ms
exporters:
  debug:
    verbosity: basic
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
  telemetry:
    logs:
      level: info
    metrics:
      level: normal
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics_port}
"""


def sent_spans(metrics_port: int) -> float:
    return sum(v for k, v in scrape(metrics_port).items()
               if k.startswith("otelcol_exporter_sent_spans") and 'exporter="debug"' in k)


def run_otelcol(binary: Path, load: Load, cpu: int | None, workdir: Path) -> Result:
    port, metrics_port = free_port(), free_port()
    config = workdir / "otelcol-bench.yaml"
    config.write_text(COLLECTOR_CONFIG.format(port=port, metrics_port=metrics_port))
    log = (workdir / "otelcol.log").open("w")
    proc = subprocess.Popen(pinned(cpu, [str(binary), "--config", str(config)]), stdout=log,
                            stderr=subprocess.STDOUT, cwd=workdir, env=clean_env(GOMAXPROCS="1"))
    try:
        def up() -> bool:
            if proc.poll() is not None:
                raise SystemExit(f"the Collector exited: {(workdir / 'otelcol.log').read_text()}")
            try:
                scrape(metrics_port)
                return True
            except OSError:
                return False

        wait(up, 60, "the Collector")
        send_all(port, [load.warmup])
        wait(lambda: sent_spans(metrics_port) >= load.warmup_spans, 60, "the warm-up spans")
        want = load.warmup_spans + load.spans
        t0 = time.perf_counter()
        send_seconds, client_cpu = send_all(port, load.requests)
        wait(lambda: sent_spans(metrics_port) >= want, 600,
             "the Collector's debug exporter to send every span")
        seconds = time.perf_counter() - t0
    finally:
        stop(proc)
        log.close()
    return Result(seconds, send_seconds, client_cpu, "debug exporter")


def provision_otelcol() -> Path:
    script = ROOT / "scripts" / "provision_otelcol.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Spans/s: collector_exporter end to end (OTLP gRPC → service → JSON-lines "
        "file) and the real OpenTelemetry Collector (otlp → batch → debug), same requests, "
        "each pinned to one CPU; medians over rounds and their ratio.",
    )
    parser.add_argument("--spans", type=int, default=100_000,
                        help="spans per round (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=512,
                        help="spans per OTLP request, whole traces (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: %(default)s)")
    parser.add_argument("--service-cpu", type=int, default=None,
                        help="CPU for the service and the Collector (default: the first allowed)")
    parser.add_argument("--client-cpu", type=int, default=None,
                        help="CPU for the OTLP client (default: the last allowed)")
    parser.add_argument("--otelcol", type=Path, default=None,
                        help="Collector binary (default: built by scripts/provision_otelcol.sh)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: 5,000 spans, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.spans, args.rounds = 5_000, 1

    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    service_cpu = args.service_cpu if args.service_cpu is not None else (
        allowed[0] if allowed else None)
    client_cpu = args.client_cpu if args.client_cpu is not None else (
        allowed[-1] if allowed else None)
    if client_cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {client_cpu})
    binary = args.otelcol or provision_otelcol()

    with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
        workdir = Path(tmp)
        load = build_load(args.spans, args.batch, workdir)
        size = sum(len(r) for r in load.requests)
        print(f"load: {load.spans:,} spans ({load.statements:,} statement spans) in "
              f"{len(load.requests)} requests of ~{load.spans // len(load.requests)} spans "
              f"({size / len(load.requests) / 1024:.0f} KiB each), {load.events:,} events "
              f"expected; service/Collector on CPU {service_cpu}, client on CPU {client_cpu}; "
              f"{binary.name}; Python {sys.version.split()[0]}", flush=True)
        results: dict[str, list[Result]] = {"collector_exporter": [], "otelcol": []}
        for r in range(args.rounds):
            order = ["collector_exporter", "otelcol"]
            if r % 2:
                order.reverse()
            for name in order:
                if name == "collector_exporter":
                    result = run_collector_exporter(load, service_cpu, workdir)
                else:
                    result = run_otelcol(binary, load, service_cpu, workdir)
                results[name].append(result)
                print(f"  round {r + 1} {name:<18} {load.spans / result.seconds:12,.0f} spans/s"
                      f"  ({result.seconds:.2f}s; client sending {result.send_seconds:.2f}s, "
                      f"{result.client_cpu_seconds / result.seconds:.0%} of its CPU busy; "
                      f"{result.note})", flush=True)

    rates = {name: statistics.median(load.spans / x.seconds for x in rs)
             for name, rs in results.items()}
    ratio = rates["collector_exporter"] / rates["otelcol"]
    print()
    print(f"median of {args.rounds} round(s), one CPU each")
    print(f"  collector_exporter (OTLP gRPC -> service -> file)    "
          f"{rates['collector_exporter']:>12,.0f} spans/s   target >= {TARGET:,}: "
          f"{'met' if rates['collector_exporter'] >= TARGET else 'NOT met'}")
    print(f"  OpenTelemetry Collector (otlp -> batch -> debug)    {rates['otelcol']:>12,.0f}"
          " spans/s")
    print(f"  collector_exporter / Collector                      {ratio:12.3f}"
          f"  (Collector is {1 / ratio:.1f}x faster)")
    for name, rs in results.items():
        busy = statistics.median(x.client_cpu_seconds / x.seconds for x in rs)
        if busy > 0.8:
            print(f"  note: {name}: the client's CPU was {busy:.0%} busy, so this figure is "
                  "bounded by the one sequential Python client: a lower bound")
    print(json.dumps({"spans": load.spans, "rounds": args.rounds,
                      "collector_exporter_spans_per_s": round(rates["collector_exporter"]),
                      "otelcol_spans_per_s": round(rates["otelcol"]),
                      "ratio": round(ratio, 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
