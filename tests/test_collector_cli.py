"""collector_exporter as users run it: ``python -m collector_exporter`` and the
``collector-exporter`` console script, in a child process. Options, refusals with exit
code 2, the log, the OpenLineage transport configured as for the library, and SIGTERM that
flushes held runs."""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from fakes import fake_lineage_backend_recording
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from procs.otlp_tools import (
    TRACE,
    clean_env,
    free_port,
    metrics,
    read_events,
    request,
    span,
    sqlalchemy_statement,
    start_collector_exporter,
    stop,
    wait_for,
)
from spanfactory import expected_run_id

pytestmark = pytest.mark.subprocess

BIN = Path(sys.executable).parent
COMMANDS = {
    "python-m": [sys.executable, "-m", "collector_exporter"],
    "console-script": [str(BIN / "collector-exporter")],
}


@dataclass
class ServiceProcess:
    proc: subprocess.Popen[Any]
    log: Path
    port: int
    events_file: Path
    metrics_port: int | None

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stub(self) -> Any:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return trace_service_pb2_grpc.TraceServiceStub(channel)

    def events(self) -> list[dict[str, Any]]:
        return read_events(self.events_file)


Start = Callable[..., ServiceProcess]


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Start]:
    """Starts the service in a child process on a free port (``--listen 127.0.0.1:0``; the
    port is read from its log line), in a clean environment and working directory."""
    procs: list[subprocess.Popen[Any]] = []

    def start(*args: str, command: str = "python-m", metrics_port: bool = True,
              env: dict[str, str] | None = None) -> ServiceProcess:
        n = len(procs)
        log = tmp_path / f"service-{n}.log"
        events_file = tmp_path / f"events-{n}.jsonl"
        port_for_metrics = free_port() if metrics_port else None
        # a short stats interval also bounds how long a signal that the kernel handed to a
        # non-main thread waits (see test_sigterm_delivered_to_a_worker_thread_...)
        options = ["--listen", "127.0.0.1:0", "--events-file", str(events_file),
                   "--stats-interval", "1", *args]
        if port_for_metrics is not None:
            options += ["--metrics-listen", f"127.0.0.1:{port_for_metrics}"]
        proc, port = start_collector_exporter(options, log, tmp_path,
                                              command=COMMANDS[command], env=env)
        procs.append(proc)
        return ServiceProcess(proc, log, port, events_file, port_for_metrics)

    yield start
    for proc in procs:
        stop(proc)
        assert proc.poll() is not None


def run_cli(*args: str, command: str = "python-m", cwd: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMANDS[command], *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=clean_env())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_every_option(command: str) -> None:
    result = run_cli("--help", command=command)
    assert result.returncode == 0, result.stderr
    for option in ("--listen", "--granularity", "--namespace", "--trace-ui-url", "--max-spans",
                   "--max-age", "--queue-max-events", "--openlineage-config", "--events-file",
                   "--tls-cert", "--tls-key", "--bearer-token-file", "--max-message-bytes",
                   "--metrics-listen", "--stats-interval", "--log-level", "--spool-dir",
                   "--spool-max-bytes", "--no-spool"):
        assert option in result.stdout, option
    assert "OPENLINEAGE_URL" in result.stdout  # says where lineage goes


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
    (["--tls-key", "{cert}"], "--tls-cert and --tls-key go together"),
    (["--tls-cert", "{missing}", "--tls-key", "{cert}"], "TLS file not found"),
    (["--listen", "4417"], "--listen must be host:port"),
    (["--max-message-bytes", "10"], "--max-message-bytes must be at least 1024"),
    (["--max-spans", "0"], "buffer_max_spans must be at least 1"),
    (["--openlineage-config", "{missing}"], "--openlineage-config: no file"),
], ids=["cert-without-key", "key-without-cert", "missing-cert", "listen-without-host",
        "tiny-max-message", "zero-max-spans", "missing-openlineage-config"])
def test_bad_option_combination_exits_2_with_a_clear_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not checked before the pairing\n")
    argv = [a.format(cert=cert, missing=tmp_path / "missing.pem") for a in args]
    result = run_cli("--listen", "127.0.0.1:0", *argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"collector-exporter: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stderr


def test_unknown_granularity_is_refused() -> None:
    result = run_cli("--granularity", "trace")
    assert result.returncode == 2
    assert "invalid choice: 'trace'" in result.stderr


@pytest.mark.parametrize("command", list(COMMANDS))
def test_sigterm_flushes_held_runs(start_service: Start, command: str) -> None:
    service = start_service(command=command)
    stub = service.stub()
    # statements whose enclosing span never arrives: held (max age 60s by default)
    stub.Export(request([
        sqlalchemy_statement(0x11, 0xA1, operation="SELECT", read=("books",)),
        sqlalchemy_statement(0x12, 0xA1, operation="INSERT", written=("loans",)),
    ]), timeout=10)
    stub.Export(request([sqlalchemy_statement(0x13, 0xA2, operation="UPDATE",
                                              written=("books",))]), timeout=10)
    assert service.metrics_port is not None
    counters = metrics(service.metrics_port)
    assert counters["collector_exporter_held"] == 3
    assert counters["collector_exporter_events_emitted"] == 0
    assert service.events() == []

    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(60) == 0, service.log_text()
    events = service.events()
    assert sorted({e["job"]["name"] for e in events}) == [
        "library.INSERT loans", "library.SELECT books", "library.UPDATE books"]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 3
    assert {e["run"]["runId"] for e in events} == {
        expected_run_id(TRACE, s) for s in (0x11, 0x12, 0x13)}
    log = service.log_text()
    assert "received SIGTERM: shutting down" in log
    assert "stopped (all held runs flushed)" in log
    assert "'events_emitted': 6" in log and "'delivered': 6" in log


def test_sigint_also_stops_gracefully(start_service: Start) -> None:
    service = start_service()
    service.stub().Export(request([sqlalchemy_statement(0x21, 0xB1, operation="SELECT",
                                                        read=("books",))]), timeout=10)
    service.proc.send_signal(signal.SIGINT)
    assert service.proc.wait(60) == 0, service.log_text()
    assert len(service.events()) == 2
    assert "received SIGINT: shutting down" in service.log_text()


_TGKILL = {"x86_64": 234, "aarch64": 131}


def send_to_thread(pid: int, tid: int, signum: int) -> None:
    """tgkill(2): what the kernel does when it picks a non-main thread for a signal sent to
    the process (any thread that does not block the signal may receive it)."""
    number = _TGKILL.get(platform.machine())
    if sys.platform != "linux" or number is None:
        pytest.skip("tgkill needs Linux on x86_64 or aarch64")
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(number, pid, tid, signum) == 0, os.strerror(ctypes.get_errno())


@pytest.mark.parametrize("stats_interval", ["60", "0"], ids=["default-interval", "no-stats"])
def test_sigterm_delivered_to_a_worker_thread_still_stops_promptly(
    start_service: Start, stats_interval: str
) -> None:
    """Python runs signal handlers in the main thread, but the kernel may deliver SIGTERM
    to any of the process's threads (gRPC's, the delivery worker, the metrics server). The
    main thread must notice within the grace period a Kubernetes pod allows by default
    (30 s), not only when its stats-interval wait ends (60 s; never with 0)."""
    service = start_service("--stats-interval", stats_interval)
    service.stub().Export(request([sqlalchemy_statement(0x71, 0xE1, operation="SELECT",
                                                        read=("books",))]), timeout=10)
    pid = service.proc.pid
    worker = next(int(t) for t in sorted(os.listdir(f"/proc/{pid}/task")) if int(t) != pid)
    send_to_thread(pid, worker, signal.SIGTERM)
    try:
        code = service.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGTERM received by a non-main thread: no shutdown after 30 s\n"
                    + service.log_text()[-1500:], pytrace=False)
    assert code == 0
    assert len(service.events()) == 2


def test_logs_say_what_happened(start_service: Start, tmp_path: Path) -> None:
    service = start_service("--granularity", "statement", "--stats-interval", "0.2")
    log = service.log_text()
    assert "plaintext" in log
    assert f"lineage to file {service.events_file}" in log
    assert "granularity statement" in log
    bad = sqlalchemy_statement(0x31, 0x31, operation="SELECT", read=("books",))
    response = service.stub().Export(request([bad]), timeout=10)
    assert response.partial_success.rejected_spans == 1
    wait_for(lambda: "'spans_rejected': 1" in service.log_text(), 10, "a counters log line")
    log = service.log_text()
    assert "1 span(s) rejected: a span cannot be its own parent" in log
    assert "counters: {" in log


@pytest.mark.parametrize("how", ["file", "environment"])
def test_bearer_token_from_file_or_environment(
    start_service: Start, tmp_path: Path, how: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t0ps3cret\n")
    if how == "file":
        service = start_service("--bearer-token-file", str(token_file))
    else:
        service = start_service(env={"OTEL_SQLA_LINEAGE_COLLECTOR_BEARER_TOKEN": "t0ps3cret"})
    assert "bearer token required" in service.log_text()
    stub = service.stub()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Export(request([sqlalchemy_statement(0x41, None, operation="SELECT",
                                                  read=("books",))]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    stub.Export(request([sqlalchemy_statement(0x42, None, operation="SELECT",
                                              read=("books",))]),
                metadata=[("authorization", "Bearer t0ps3cret")], timeout=10)
    assert wait_for(lambda: len(service.events()) == 2, 10, "two events")
    assert "t0ps3cret" not in service.log_text()


def test_openlineage_transport_from_environment_variables(
    start_service: Start, tmp_path: Path
) -> None:
    target = tmp_path / "ol-transport.jsonl"
    service = start_service(env={
        "OPENLINEAGE__TRANSPORT__TYPE": "file",
        "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH": str(target),
        "OPENLINEAGE__TRANSPORT__APPEND": "true",
    })
    assert "lineage to file transport from OPENLINEAGE__TRANSPORT__* variables" in \
        service.log_text()
    service.stub().Export(request([
        sqlalchemy_statement(0x51, 0xC1, operation="SELECT", read=("books",)),
        span(0xC1, "book_inventory"),
    ]), timeout=10)
    assert stop(service.proc) == 0
    events = read_events(target)
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("library.book_inventory", "START"), ("library.book_inventory", "COMPLETE")]
    assert not service.events_file.exists()


def test_openlineage_config_file_option(start_service: Start, tmp_path: Path) -> None:
    target = tmp_path / "from-yaml.jsonl"
    config = tmp_path / "lineage.yml"
    config.write_text(f"transport:\n  type: file\n  log_file_path: {target}\n  append: true\n")
    service = start_service("--openlineage-config", str(config))
    assert f"file transport from config file {config}" in service.log_text()
    service.stub().Export(request([sqlalchemy_statement(0x61, None, operation="DELETE",
                                                        written=("loans",))]), timeout=10)
    assert stop(service.proc) == 0
    assert [e["job"]["name"] for e in read_events(target)] == ["library.DELETE loans"] * 2


def test_openlineage_api_key_reaches_the_backend_and_never_the_log(
    start_service: Start,
) -> None:
    key = "ol-api-key-collector-81d3"
    with fake_lineage_backend_recording() as (url, received):
        service = start_service("--log-level", "DEBUG", env={
            "OPENLINEAGE_URL": url, "OPENLINEAGE_API_KEY": key})
        service.stub().Export(request([sqlalchemy_statement(0x71, None, operation="SELECT",
                                                            read=("books",))]), timeout=10)
        assert stop(service.proc) == 0
    assert len(received) == 2
    assert {r.headers.get("Authorization") for r in received} == {f"Bearer {key}"}
    log = service.log_text()
    assert "DEBUG" in log and "http transport from OPENLINEAGE_URL" in log
    assert key not in log
