"""collector_exporter's authentication and transport security beyond the basics in
test_collector_service.py: every malformed ``authorization`` is UNAUTHENTICATED (and the
scheme is case-insensitive), no token reaches the log, a client that does not trust the
server's certificate gets nothing through, and the command line serves TLS for real."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from procs.otlp_tools import (
    read_events,
    request,
    self_signed_certificate,
    sqlalchemy_statement,
    start_collector_exporter,
    stop,
    wait_for,
)

from collector_exporter import ServiceSettings, build_server
from otel_sqla_lineage.delivery import JsonLinesSink
from otel_sqla_lineage.settings import LineageSettings

TOKEN = "c0llect0r-t0ken-9a1f"


class Server:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.events_file = tmp_path / "events.jsonl"
        self.server, self.port, self.service, _ = build_server(
            ServiceSettings(listen="127.0.0.1:0", lineage=LineageSettings(), **settings),
            JsonLinesSink(self.events_file))
        self.server.start()

    def stub(self, credentials: grpc.ChannelCredentials | None = None) -> Any:
        if credentials is None:
            channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        else:
            channel = grpc.secure_channel(f"localhost:{self.port}", credentials)
        return trace_service_pb2_grpc.TraceServiceStub(channel)

    def close(self) -> None:
        self.server.stop(0).wait()
        self.service.close(5)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


def _one_statement() -> Any:
    return request([sqlalchemy_statement(0x91, None, operation="SELECT", read=("books",),
                                         trace_id=0x9A)])


@pytest.mark.parametrize("authorization", [
    f"Basic {TOKEN}", f"Token {TOKEN}", "Bearer", "Bearer ", f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN.upper()}", f"Bearer{TOKEN}", TOKEN, "",
], ids=["basic-scheme", "other-scheme", "scheme-only", "scheme-and-space", "longer",
        "prefix", "case-changed-token", "no-space", "no-scheme", "empty"])
def test_malformed_or_wrong_authorization_is_unauthenticated_and_never_logged(
    authorization: str, servers: list[Server], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = Server(tmp_path, bearer_token=TOKEN)
    servers.append(server)
    with pytest.raises(grpc.RpcError) as caught:
        server.stub().Export(_one_statement(), metadata=[("authorization", authorization)],
                             timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.service.stats()["requests_unauthenticated"] == 1
    assert TOKEN not in caplog.text and TOKEN[:-1] not in caplog.text
    assert TOKEN not in (caught.value.details() or "")


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_scheme_is_case_insensitive(scheme: str, servers: list[Server],
                                           tmp_path: Path) -> None:
    server = Server(tmp_path, bearer_token=TOKEN)
    servers.append(server)
    response = server.stub().Export(_one_statement(),
                                    metadata=[("authorization", f"{scheme} {TOKEN}")],
                                    timeout=10)
    assert not response.HasField("partial_success")
    assert len(wait_for(lambda: read_events(server.events_file), 10, "events")) == 2


def test_client_that_does_not_trust_the_certificate_gets_nothing_through(
    servers: list[Server], tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path, "server")
    other_ca, _ = self_signed_certificate(tmp_path, "other")
    server = Server(tmp_path, tls_cert=cert, tls_key=key, bearer_token=TOKEN)
    servers.append(server)
    metadata = [("authorization", f"Bearer {TOKEN}")]
    untrusting = grpc.ssl_channel_credentials(root_certificates=other_ca.read_bytes())
    with pytest.raises(grpc.RpcError) as caught:
        server.stub(untrusting).Export(_one_statement(), metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as plaintext:
        server.stub().Export(_one_statement(), metadata=metadata, timeout=10)
    assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
    assert server.service.stats()["requests"] == 0, "no request reached the service"
    trusting = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    response = server.stub(trusting).Export(_one_statement(), metadata=metadata, timeout=10)
    assert not response.HasField("partial_success")


@pytest.mark.subprocess
def test_command_line_serves_tls_with_a_bearer_token_file(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path, "cli")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    events = tmp_path / "events.jsonl"
    log = tmp_path / "service.log"
    proc, port = start_collector_exporter(
        ["--listen", "127.0.0.1:0", "--events-file", str(events), "--tls-cert", str(cert),
         "--tls-key", str(key), "--bearer-token-file", str(token_file), "--log-level", "DEBUG"],
        log, tmp_path)
    try:
        trusting = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", trusting) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as caught:
                stub.Export(_one_statement(), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stub.Export(_one_statement(), metadata=[("authorization", f"Bearer {TOKEN}")],
                        timeout=10)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            with pytest.raises(grpc.RpcError) as refused:
                trace_service_pb2_grpc.TraceServiceStub(plain).Export(
                    _one_statement(), metadata=[("authorization", f"Bearer {TOKEN}")],
                    timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        assert stop(proc) == 0
    assert [e["eventType"] for e in read_events(events)] == ["START", "COMPLETE"]
    text = log.read_text()
    assert f"(port {port}, TLS, bearer token required)" in text
    assert TOKEN not in text
