"""Building the gRPC server (apart from running it, so tests use port 0)."""

from __future__ import annotations

from concurrent import futures
from dataclasses import replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from collector_exporter.request_log import RequestLog
from collector_exporter.service import LineageTraceService
from collector_exporter.settings import ServiceSettings
from otel_sqla_lineage.delivery import EventSink, sink_from_environment

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def build_server(
    settings: ServiceSettings, sink: EventSink | None = None
) -> tuple[grpc.Server, int, LineageTraceService, health.HealthServicer]:
    """(server, bound port, trace service, health servicer); the server is not started."""
    lineage = settings.lineage
    if settings.spool_dir is not None and lineage.spool_dir is None:
        # A request log without an event spool would be deleted once events are merely
        # attempted (failed ones included): the events go under the same directory.
        lineage = replace(lineage, spool_dir=str(settings.spool_dir / "events"))
    service = LineageTraceService(
        lineage,
        sink if sink is not None else sink_from_environment(lineage),
        settings.bearer_token,
        RequestLog(settings.spool_dir / "requests") if settings.spool_dir else None,
        settings.request_log_max_bytes,
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.workers,
                                   thread_name_prefix="otlp-export"),
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
        service, server
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if settings.tls_cert is not None and settings.tls_key is not None:
        credentials = grpc.ssl_server_credentials(
            [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())]
        )
        port = server.add_secure_port(settings.listen, credentials)
    else:
        port = server.add_insecure_port(settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}")
    for name in ("", TRACE_SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port, service, health_servicer
