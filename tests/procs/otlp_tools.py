"""Helpers of the collector_exporter tests: OTLP spans crafted by hand (fixed ids and times,
attributes as our instrumentor or a semconv-only instrumentation sets them), free loopback
ports, waiting, child processes that are always stopped (collector_exporter and the
Collector started as users start them), and a self-signed certificate.

Imported by the tests as ``procs.otlp_tools`` (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
TRACE = 0x0AF7651916CD43DD8448EB211C80319C
LIBRARY = {"service.name": "library", "telemetry.sdk.language": "python"}
JAVA = {"service.name": "checkout-java", "telemetry.sdk.language": "java",
        "telemetry.sdk.name": "opentelemetry"}

# SpanFlags: the W3C "sampled" bit plus "has is_remote" (+ "is_remote"), as the Java and Go
# SDKs set them
SAMPLED_LOCAL = 0x101
SAMPLED_REMOTE = 0x301

T = TypeVar("T")

COLLECTOR_EXPORTER = (sys.executable, "-m", "collector_exporter")
# collector_exporter's log line once it serves; the port is the one bound (``--listen ...:0``)
LISTENING = re.compile(r"listening for OTLP traces on \S+ \(port (\d+), ")


def any_value(value: Any) -> AnyValue:
    """A Python value as OTLP's AnyValue: lists become arrays, dicts key/value lists, and
    anything else without an OTLP type its ``str``."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[
            KeyValue(key=str(k), value=any_value(v)) for k, v in value.items()]))
    return AnyValue(string_value=str(value))


def key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def span(span_id: int, name: str, *, parent: int | None = None, trace_id: int = TRACE,
         start: int = 0, end: int = 100, attributes: Mapping[str, Any] | None = None,
         kind: int = Span.SPAN_KIND_INTERNAL, error: str | None = None,
         flags: int = SAMPLED_LOCAL) -> Span:
    """One OTLP span; ``start``/``end`` in ms after T0."""
    out = Span(
        trace_id=trace_id.to_bytes(16, "big"),
        span_id=span_id.to_bytes(8, "big"),
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=T0 + start * 1_000_000,
        end_time_unix_nano=T0 + end * 1_000_000,
        attributes=key_values(attributes or {}),
        flags=flags,
    )
    if parent is not None:
        out.parent_span_id = parent.to_bytes(8, "big")
    if error is not None:
        out.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return out


def sqlalchemy_statement(span_id: int, parent: int | None, *, operation: str,
                         read: Sequence[str] = (), written: Sequence[str] = (),
                         trace_id: int = TRACE, start: int = 10, end: int = 20,
                         sql: str | None = None) -> Span:
    """A statement span as upstream's instrumentation + ours leave it (SQLite file)."""
    attributes: dict[str, Any] = {
        "db.system": "sqlite",
        "db.name": "/srv/library.db",
        "db.statement": sql or f"{operation} ...",
        "db.operation.name": operation,
        "db.sqlalchemy.source": "orm",
        "db.sqlalchemy.database": "/srv/library.db",
        "openlineage.dataset.namespace": "sqlite://apphost/srv/library.db",
    }
    if read:
        attributes["db.sqlalchemy.tables.read"] = tuple(read)
    if written:
        attributes["db.sqlalchemy.tables.written"] = tuple(written)
    return span(span_id, f"{operation} /srv/library.db", parent=parent, trace_id=trace_id,
                start=start, end=end, attributes=attributes, kind=Span.SPAN_KIND_CLIENT)


def semconv_statement(span_id: int, parent: int | None, *, attributes: Mapping[str, Any],
                      trace_id: int = TRACE, start: int = 10, end: int = 20) -> Span:
    """A database span from another language's instrumentation: semantic conventions only."""
    return span(span_id, str(attributes.get("db.operation.name", "query")), parent=parent,
                trace_id=trace_id, start=start, end=end, attributes=attributes,
                kind=Span.SPAN_KIND_CLIENT)


def request(spans: Sequence[Span], resource: Mapping[str, Any] | None = None,
            scope: str = "tests") -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=key_values(resource if resource is not None else LIBRARY)),
        scope_spans=[ScopeSpans(scope=InstrumentationScope(name=scope), spans=list(spans))],
    )])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Polls ``check`` until it returns something truthy; fails saying ``what`` never came."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_bytes()
    # a line being written while we read is not complete yet: only what ends in a newline
    complete = text[: text.rfind(b"\n") + 1].decode("utf-8")
    return [json.loads(line) for line in complete.splitlines() if line]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without OpenTelemetry or OpenLineage settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "OPENLINEAGE"))}
    env.update(extra)
    return env


def stop(proc: subprocess.Popen[Any], timeout: float = 15.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit code (negative: killed)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def metrics(port: int) -> dict[str, float]:
    """A Prometheus text endpoint on loopback, as {name{labels}: value}."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def start_collector_exporter(
    options: Sequence[str], log: Path, cwd: Path, *,
    command: Sequence[str] = COLLECTOR_EXPORTER, env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[Any], int]:
    """collector_exporter in a child process (``command`` + ``options``), its output in
    ``log``, in ``cwd`` with a clean environment (``HOME`` is ``cwd`` unless ``env`` says
    otherwise; plus ``env``). Returns
    once it logs that it listens: the process and its port. Fails with the log when it exits
    first; stops it when it never says it listens."""
    with log.open("w") as out:
        proc = subprocess.Popen([*command, *options], stdout=out, stderr=subprocess.STDOUT,
                                cwd=cwd, env=clean_env(**{"HOME": str(cwd), **(env or {})}))

    def listening() -> int | None:
        found = LISTENING.search(log.read_text())
        if found is None and proc.poll() is not None:
            raise AssertionError(f"collector_exporter exited {proc.returncode}:\n"
                                 f"{log.read_text()}")
        return int(found.group(1)) if found else None

    try:
        port = wait_for(listening, 60, "collector_exporter's 'listening' log line")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def start_otelcol(binary: Path, config: Path, cwd: Path, *, grpc_port: int, http_port: int,
                  metrics_port: int, lineage_port: int,
                  **extra_env: str) -> tuple[subprocess.Popen[Any], Path]:
    """The real Collector running ``config`` (the project's otel-collector-config.yaml reads
    its endpoints from these variables) on the given loopback ports, exporting lineage to
    ``lineage_port``; Jaeger gets a port nobody listens on (its exporter just retries).
    ``extra_env``: more of the config's variables (``LINEAGE_QUEUE_SIZE``, ...).
    Returns the process and its log; the caller waits for what it needs to be ready."""
    log = cwd / "otelcol.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(binary), "--config", str(config)], stdout=out, stderr=subprocess.STDOUT,
            cwd=cwd, env=clean_env(
                HOME=str(cwd),
                OTELCOL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{grpc_port}",
                OTELCOL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{http_port}",
                OTELCOL_METRICS_PORT=str(metrics_port),
                LINEAGE_OTLP_ENDPOINT=f"127.0.0.1:{lineage_port}",
                JAEGER_OTLP_ENDPOINT=f"127.0.0.1:{free_port()}",
                **extra_env,
            ))
    return proc, log


def self_signed_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1 made by the openssl CLI: the cert
    and key files. Fails (never skips) when openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        import pytest

        pytest.fail("the TLS tests need the openssl command line tool", pytrace=False)
    cert, key = directory / f"{name}-cert.pem", directory / f"{name}-key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def logged_traces(directory: Path) -> list[set[int]]:
    """The trace ids of each request in collector_exporter's request log, in log order."""
    from collector_exporter.request_log import RequestLog

    out = []
    for payload in RequestLog(directory).replay():
        req = ExportTraceServiceRequest.FromString(payload)
        out.append({int.from_bytes(s.trace_id, "big") for rs in req.resource_spans
                    for ss in rs.scope_spans for s in ss.spans})
    return out
