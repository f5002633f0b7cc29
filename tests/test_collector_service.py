"""collector_exporter in process: ``build_server`` on 127.0.0.1:0, a real gRPC channel, events
to a JSON-lines file. The same spans give the same events as the in-process exporter; runs
are assembled across requests; other instrumentations' database spans get datasets from the
semantic conventions; bad input is rejected without stopping the service; the buffer is
bounded and counted."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from fakes import HangingSink
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from olspec import validate_event
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from procs.otlp_tools import (
    JAVA,
    SAMPLED_REMOTE,
    TRACE,
    read_events,
    request,
    self_signed_certificate,
    semconv_statement,
    span,
    sqlalchemy_statement,
    wait_for,
)
from spanfactory import expected_run_id

from collector_exporter import ServiceSettings, build_server
from collector_exporter.metrics import serve_metrics
from collector_exporter.server import TRACE_SERVICE
from collector_exporter.service import LineageTraceService
from otel_sqla_lineage.delivery import EventSink, JsonLinesSink
from otel_sqla_lineage.demo.__main__ import run_scenario
from otel_sqla_lineage.demo.app import Library
from otel_sqla_lineage.exporter import OpenLineageSpanExporter
from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor
from otel_sqla_lineage.settings import LineageSettings

Request = trace_service_pb2.ExportTraceServiceRequest
Response = trace_service_pb2.ExportTraceServiceResponse


# -- the service under test --------------------------------------------------------------


@dataclass
class Served:
    port: int
    service: LineageTraceService
    health: health.HealthServicer
    server: grpc.Server
    events_file: Path
    channel: grpc.Channel
    stub: Any = field(init=False)

    def __post_init__(self) -> None:
        self.stub = trace_service_pb2_grpc.TraceServiceStub(self.channel)

    def export(self, req: Request, metadata: Sequence[tuple[str, str]] | None = None) -> Response:
        response: Response = self.stub.Export(req, metadata=metadata, timeout=10)
        return response

    def events(self) -> list[dict[str, Any]]:
        """Every event, held runs included (flush emits what still waits, as on SIGTERM)."""
        assert self.service.flush(10)
        return read_events(self.events_file)

    def wait_events(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait for ``count`` events to be written, without flushing held runs."""
        return wait_for(lambda: (e := read_events(self.events_file)) and len(e) >= count and e,
                        timeout, f"{count} events in {self.events_file}")

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0).wait()
        self.service.close(5)


Serve = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Starts collector_exporter's server (``build_server``) on port 0; stops it after."""
    started: list[Served] = []

    def start(*, lineage: LineageSettings | None = None, sink: EventSink | None = None,
              credentials: grpc.ChannelCredentials | None = None,
              target: str = "127.0.0.1", **settings: Any) -> Served:
        events_file = tmp_path / f"service-{len(started)}.jsonl"
        server, port, service, health_servicer = build_server(
            ServiceSettings(listen="127.0.0.1:0", lineage=lineage or LineageSettings(),
                            **settings),
            sink if sink is not None else JsonLinesSink(events_file),
        )
        server.start()
        if credentials is None:
            channel = grpc.insecure_channel(f"{target}:{port}")
        else:
            channel = grpc.secure_channel(f"{target}:{port}", credentials)
        served = Served(port, service, health_servicer, server, events_file, channel)
        started.append(served)
        return served

    yield start
    for served in started:
        served.close()


def runs(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        out.setdefault(event["job"]["name"], []).append(event)
    return out


def names(datasets: list[dict[str, Any]]) -> list[str]:
    return [d["name"] for d in datasets]


# -- real SDK spans from an instrumented SQLAlchemy run -----------------------------------


@pytest.fixture(scope="module")
def demo_spans(tmp_path_factory: pytest.TempPathFactory) -> list[ReadableSpan]:
    """The library demo's scenario (jobs that read, write, fail) on SQLite, instrumented by
    upstream + ours; its finished spans in the order they ended."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "library"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('demo') / 'library.db'}")
        run_scenario(Library(engine, provider.get_tracer("otel_sqla_lineage.demo")))
        engine.dispose()
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    spans = list(memory.get_finished_spans())
    assert any(s.name == "checkout_book" for s in spans)
    return spans


def in_process_events(spans: Sequence[ReadableSpan], batches: Sequence[Sequence[int]],
                      granularity: str, path: Path) -> list[dict[str, Any]]:
    """What OpenLineageSpanExporter writes when its span processor hands it ``batches``."""
    exporter = OpenLineageSpanExporter(settings=LineageSettings(granularity=granularity),
                                       sink=JsonLinesSink(path))
    for batch in batches:
        exporter.export([spans[i] for i in batch])
    exporter.shutdown()
    return read_events(path)


def one_per_span(spans: Sequence[Any]) -> list[list[int]]:
    return [[i] for i in range(len(spans))]


def all_in_one(spans: Sequence[Any]) -> list[list[int]]:
    return [list(range(len(spans)))]


@pytest.mark.parametrize("granularity", ["job", "statement"])
@pytest.mark.parametrize("batching", [one_per_span, all_in_one])
def test_same_spans_give_the_same_events_on_both_paths(
    serve: Serve, demo_spans: list[ReadableSpan], tmp_path: Path, granularity: str,
    batching: Callable[[Sequence[Any]], list[list[int]]],
) -> None:
    batches = batching(demo_spans)
    expected = in_process_events(demo_spans, batches, granularity, tmp_path / "in.jsonl")
    served = serve(lineage=LineageSettings(granularity=granularity))
    for batch in batches:
        response = served.export(encode_spans([demo_spans[i] for i in batch]))
        assert not response.HasField("partial_success"), response
    got = served.events()
    assert got == expected
    by_job = runs(got)
    if granularity == "job":
        assert len(got) == 20
        assert [e["eventType"] for e in by_job["library.checkout_book"]] == \
            ["START", "COMPLETE"] * 2 + ["START", "FAIL"]
        # the run IDs are the ones the spans carry (openlineage.run.id)
        span_run_ids = {s.attributes["openlineage.run.id"] for s in demo_spans
                        if s.name == "checkout_book" and s.attributes}
        assert {e["run"]["runId"] for e in by_job["library.checkout_book"]} == span_run_ids
        inventory = by_job["library.book_inventory"][-1]
        assert names(inventory["inputs"]) == ["books"]
        assert "schema" in inventory["inputs"][0]["facets"]
    else:
        assert "library.INSERT book_history" in by_job
    stats = served.service.stats()
    assert stats["spans_received"] == len(demo_spans)
    assert stats["spans_rejected"] == 0 and stats["held"] == 0
    for event in got[:6]:
        validate_event(event)


def test_enclosing_span_listed_before_its_statements_in_one_request_still_is_one_run(
    serve: Serve, demo_spans: list[ReadableSpan], tmp_path: Path
) -> None:
    """The SDK's OTLP encoder groups a batch's spans by instrumentation scope: a batch that
    opens with an application span (the previous job ended just before the batch was cut)
    puts every application span -- the enclosing span included -- before the statement
    spans of the SQLAlchemy scope. The service must still see the statements first."""
    cut = next(i for i, s in enumerate(demo_spans) if s.name == "setup_schema")
    batches = [list(range(cut)), list(range(cut, len(demo_spans)))]
    second = encode_spans([demo_spans[i] for i in batches[1]])
    scopes = [ss.scope.name for rs in second.resource_spans for ss in rs.scope_spans]
    assert scopes[0] == "otel_sqla_lineage.demo"  # application spans first in the request
    expected = in_process_events(demo_spans, batches, "job", tmp_path / "in.jsonl")
    served = serve()
    served.export(encode_spans([demo_spans[i] for i in batches[0]]))
    served.export(second)
    time.sleep(0.3)
    assert served.service.stats()["held"] == 0, "statements wait for a parent that has ended"
    got = served.events()
    assert sorted(e["job"]["name"] for e in got) == sorted(e["job"]["name"] for e in expected)
    assert got == expected


# -- runs across requests --------------------------------------------------------------


def test_spans_of_one_trace_split_across_requests_form_one_job_run(serve: Serve) -> None:
    served = serve()
    served.export(request([sqlalchemy_statement(0x11, 0xA1, operation="SELECT",
                                                read=("users",), start=10, end=20)]))
    served.export(request([sqlalchemy_statement(0x12, 0xA1, operation="INSERT",
                                                written=("book_history",), start=30, end=40)]))
    assert served.service.stats()["held"] == 2
    assert read_events(served.events_file) == []
    served.export(request([span(0xA1, "checkout_book", start=0, end=50)]))
    events = served.wait_events(2)
    assert [(e["job"]["name"], e["eventType"]) for e in events] == [
        ("library.checkout_book", "START"), ("library.checkout_book", "COMPLETE")]
    assert {e["run"]["runId"] for e in events} == {expected_run_id(TRACE, 0xA1)}
    assert names(events[1]["inputs"]) == ["users"]
    assert names(events[1]["outputs"]) == ["book_history"]
    stats = served.service.stats()
    assert stats["held"] == 0 and stats["runs_emitted"] == 1 and stats["statements_seen"] == 2


@pytest.mark.parametrize(("flags", "marked"), [
    (0x102, True),   # W3C flags "random trace id" without "sampled" (+ has-is-remote)
    (0x101, False),  # sampled, as the Java and Go SDKs write it
    (0x100, False),  # the Python SDK writes no W3C flags: exported, so sampled
])
def test_runs_of_spans_whose_otlp_flags_say_not_sampled_carry_the_marker(
    serve: Serve, flags: int, marked: bool
) -> None:
    served = serve()
    statement = sqlalchemy_statement(0x11, 0xA1, operation="INSERT", written=("audit",))
    statement.flags = flags
    served.export(request([statement, span(0xA1, "audit_job", start=0, end=50, flags=flags)]))
    events = served.wait_events(2)
    otel = events[1]["run"]["facets"]["opentelemetry"]
    assert ("sampled" in otel) is marked
    if marked:
        assert otel["sampled"] is False
    assert {e["run"]["runId"] for e in events} == {expected_run_id(TRACE, 0xA1)}


def test_nested_runs_across_requests_name_their_parent_and_root(serve: Serve) -> None:
    served = serve()
    served.export(request([sqlalchemy_statement(0x11, 0xB2, operation="SELECT", read=("books",))]))
    served.export(request([span(0xB2, "load_books", parent=0xB1, start=5, end=25)]))
    served.export(request([sqlalchemy_statement(0x12, 0xB1, operation="INSERT",
                                                written=("loans",), start=30, end=40)]))
    assert served.service.stats()["held"] == 3  # a statement, a run, a statement
    served.export(request([span(0xB1, "nightly", start=0, end=50)]))
    by_job = runs(served.wait_events(4))
    inner = by_job["library.load_books"][-1]
    assert inner["run"]["facets"]["parent"]["run"]["runId"] == expected_run_id(TRACE, 0xB1)
    assert inner["run"]["facets"]["parent"]["root"]["run"]["runId"] == \
        expected_run_id(TRACE, 0xB1)
    assert names(by_job["library.nightly"][-1]["outputs"]) == ["loans"]


def test_remote_parent_settles_at_once_and_is_named_by_run_id(serve: Serve) -> None:
    served = serve()
    statement = sqlalchemy_statement(0x11, 0xC2, operation="SELECT", read=("books",))
    handler = span(0xC2, "GET /books", parent=0xC1, flags=SAMPLED_REMOTE, start=0, end=30)
    served.export(request([statement, handler]))
    events = served.wait_events(2)
    assert events[1]["job"]["name"] == "library.GET /books"
    parent = events[1]["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == expected_run_id(TRACE, 0xC1)
    assert parent["job"]["name"] == "remote-parent"


# -- spans from other instrumentations: semantic conventions only --------------------------


SEMCONV_CASES = {
    "postgresql-stable-names": (
        {"db.system.name": "postgresql", "db.namespace": "shop",
         "server.address": "db.internal", "server.port": 5433,
         "db.query.text": "INSERT INTO orders (id, cart_id) SELECT id, cart_id FROM carts "
                          "WHERE status = ?",
         "db.operation.name": "INSERT"},
        "postgres://db.internal:5433", ["shop.public.carts"], ["shop.public.orders"],
    ),
    "mysql-old-names": (
        {"db.system": "mysql", "db.name": "shop", "net.peer.name": "mysql.internal",
         "net.peer.port": 3307,
         "db.statement": "SELECT c.name, o.total FROM customers c JOIN orders o "
                         "ON o.customer_id = c.id WHERE c.id = ?"},
        "mysql://mysql.internal:3307", ["shop.customers", "shop.orders"], [],
    ),
    "sqlserver-database-and-schema": (
        {"db.system.name": "microsoft.sql_server", "db.namespace": "erp|sales",
         "server.address": "sql.internal", "db.query.text": "UPDATE invoices SET paid = 1 "
                                                            "WHERE id = @p0"},
        "mssql://sql.internal:1433", [], ["erp.sales.invoices"],
    ),
    "postgresql-schema-qualified": (
        {"db.system.name": "postgresql", "db.namespace": "shop",
         "server.address": "db.internal",
         "db.query.text": "DELETE FROM archive.orders WHERE created < $1"},
        "postgres://db.internal:5432", [], ["shop.archive.orders"],
    ),
}


@pytest.mark.parametrize("case", SEMCONV_CASES.values(), ids=list(SEMCONV_CASES))
def test_java_style_semconv_span_gives_the_right_datasets(
    serve: Serve, case: tuple[dict[str, Any], str, list[str], list[str]]
) -> None:
    attributes, namespace, inputs, outputs = case
    served = serve()
    response = served.export(request(
        [semconv_statement(0x21, 0xD1, attributes=attributes),
         span(0xD1, "POST /checkout", kind=Span.SPAN_KIND_SERVER, start=0, end=50)],
        resource=JAVA, scope="io.opentelemetry.jdbc",
    ))
    assert not response.HasField("partial_success")
    events = served.wait_events(2)
    complete = events[1]
    assert complete["job"]["namespace"] == "checkout-java"
    assert complete["job"]["name"] == "checkout-java.POST /checkout"
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == \
        [(namespace, n) for n in inputs]
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == \
        [(namespace, n) for n in outputs]
    for dataset in complete["inputs"] + complete["outputs"]:
        source = dataset["facets"]["dataSource"]
        assert source["name"] == namespace
        assert source["uri"].startswith(namespace)
    job_type = complete["job"]["facets"]["jobType"]
    assert job_type["integration"] == "OPENTELEMETRY" and job_type["jobType"] == "TASK"
    assert complete["job"]["facets"]["sql"]["query"] == (
        attributes.get("db.query.text") or attributes["db.statement"])
    assert complete["run"]["facets"]["opentelemetry"]["serviceName"] == "checkout-java"
    for event in events:
        validate_event(event)


# -- bad input --------------------------------------------------------------------------


def _good() -> Any:
    return sqlalchemy_statement(0x31, None, operation="SELECT", read=("books",), trace_id=0xEE)


def _zero_trace() -> Any:
    bad = _good()
    bad.trace_id = bytes(16)
    return bad


def _short_trace() -> Any:
    bad = _good()
    bad.trace_id = b"\x01" * 8
    return bad


def _zero_span() -> Any:
    bad = _good()
    bad.span_id = bytes(8)
    return bad


def _own_parent() -> Any:
    return sqlalchemy_statement(0x32, 0x32, operation="SELECT", read=("books",), trace_id=0xEE)


def _ends_before_start() -> Any:
    return sqlalchemy_statement(0x33, None, operation="SELECT", read=("books",),
                                trace_id=0xEE, start=50, end=10)


MALFORMED = {
    "zero-trace-id": (_zero_trace, "trace_id"),
    "short-trace-id": (_short_trace, "trace_id"),
    "zero-span-id": (_zero_span, "span_id"),
    "own-parent": (_own_parent, "own parent"),
    "ends-before-start": (_ends_before_start, "ends before it starts"),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_span_is_rejected_as_partial_success_and_the_rest_is_kept(
    serve: Serve, case: tuple[Callable[[], Any], str]
) -> None:
    make_bad, reason = case
    served = serve()
    good = sqlalchemy_statement(0x34, None, operation="INSERT", written=("loans",),
                                trace_id=0xEF)
    response = served.export(request([make_bad(), good]))
    assert response.partial_success.rejected_spans == 1
    assert "1 span(s) rejected" in response.partial_success.error_message
    assert reason in response.partial_success.error_message
    assert [e["job"]["name"] for e in served.wait_events(2)] == ["library.INSERT loans"] * 2
    # the service keeps serving
    response = served.export(request([_good()]))
    assert not response.HasField("partial_success")
    assert len(served.wait_events(4)) == 4
    stats = served.service.stats()
    assert stats["spans_rejected"] == 1 and stats["spans_received"] == 3


def test_undecodable_request_gets_an_error_status_and_the_next_request_works(
    serve: Serve,
) -> None:
    served = serve()
    raw = served.channel.unary_unary(f"/{TRACE_SERVICE}/Export")
    with pytest.raises(grpc.RpcError) as caught:
        raw(b"\xff\xff\xff\xff not protobuf", timeout=10)
    # not OK, and not a code OTLP clients retry: the payload will never decode
    assert caught.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)
    response = served.export(request([_good()]))
    assert not response.HasField("partial_success")
    assert len(served.wait_events(2)) == 2


def test_oversized_request_gets_resource_exhausted_and_the_next_request_works(
    serve: Serve,
) -> None:
    served = serve(max_message_bytes=64 * 1024)
    big = sqlalchemy_statement(0x35, None, operation="SELECT", read=("books",),
                               sql="SELECT " + "x, " * 40_000 + "1 FROM books", trace_id=0xEA)
    with pytest.raises(grpc.RpcError) as caught:
        served.export(request([big]))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    response = served.export(request([_good()]))
    assert not response.HasField("partial_success")
    assert [e["job"]["name"] for e in served.wait_events(2)] == ["library.SELECT books"] * 2


def test_empty_request_is_accepted(serve: Serve) -> None:
    served = serve()
    assert not served.export(Request()).HasField("partial_success")


# -- authentication and transport security ---------------------------------------------


def test_bearer_token_is_required_when_configured(serve: Serve) -> None:
    served = serve(bearer_token="s3cr3t-t0ken")
    for metadata in (None, [("authorization", "Bearer wrong")],
                     [("authorization", "s3cr3t-t0ken")], [("x-api-key", "s3cr3t-t0ken")]):
        with pytest.raises(grpc.RpcError) as caught:
            served.export(request([_good()]), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
    assert read_events(served.events_file) == []
    response = served.export(request([_good()]),
                             metadata=[("authorization", "Bearer s3cr3t-t0ken")])
    assert not response.HasField("partial_success")
    assert len(served.wait_events(2)) == 2
    stats = served.service.stats()
    assert stats["requests_unauthenticated"] == 4
    assert stats["spans_received"] == 1  # refused requests were not read


def test_tls_with_a_self_signed_certificate(serve: Serve, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    served = serve(tls_cert=cert, tls_key=key, credentials=credentials, target="localhost")
    response = served.export(request([_good()]))
    assert not response.HasField("partial_success")
    assert len(served.wait_events(2)) == 2
    # plaintext to a TLS port does not get through
    with grpc.insecure_channel(f"127.0.0.1:{served.port}") as plain:
        with pytest.raises(grpc.RpcError) as caught:
            trace_service_pb2_grpc.TraceServiceStub(plain).Export(request([_good()]), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_and_bearer_token_together(serve: Serve, tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    served = serve(tls_cert=cert, tls_key=key, bearer_token="tok", credentials=credentials,
                   target="localhost")
    with pytest.raises(grpc.RpcError) as caught:
        served.export(request([_good()]))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    served.export(request([_good()]), metadata=[("authorization", "Bearer tok")])
    assert len(served.wait_events(2)) == 2


# -- health and counters ----------------------------------------------------------------


def test_health_service_answers_serving_then_not_serving_on_shutdown(serve: Serve) -> None:
    served = serve()
    stub = health_pb2_grpc.HealthStub(served.channel)
    for service in ("", TRACE_SERVICE):
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    served.health.enter_graceful_shutdown()
    answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_metrics_endpoint_shows_counters_after_traffic(serve: Serve) -> None:
    served = serve()
    served.export(request([_good(), _own_parent()]))
    served.export(request([sqlalchemy_statement(0x41, 0xF1, operation="SELECT",
                                                read=("books",))]))
    # the sink writes the file first and counts the delivery after: wait on the counter
    wait_for(lambda: served.service.stats()["delivered"] == 2, 30, "2 events delivered")
    endpoint = serve_metrics("127.0.0.1:0", served.service.stats)
    try:
        port = endpoint.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain")
            text = answer.read().decode()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert caught.value.code == 404
    finally:
        endpoint.shutdown()
        endpoint.server_close()
    values = {line.split()[0]: int(line.split()[1]) for line in text.splitlines()
              if not line.startswith("#")}
    assert values["collector_exporter_requests"] == 2
    assert values["collector_exporter_spans_received"] == 3
    assert values["collector_exporter_spans_rejected"] == 1
    assert values["collector_exporter_held"] == 1
    assert values["collector_exporter_runs_emitted"] == 1
    assert values["collector_exporter_events_emitted"] == 2
    assert values["collector_exporter_delivered"] == 2
    assert "# TYPE collector_exporter_held gauge" in text
    assert "# TYPE collector_exporter_events_emitted counter" in text


# -- the buffer's bounds ----------------------------------------------------------------


def test_max_spans_evicts_the_oldest_held_statements_as_runs_of_their_own(
    serve: Serve,
) -> None:
    served = serve(lineage=LineageSettings(buffer_max_spans=2))
    for i in range(5):  # five statements, each waiting for a parent that never comes
        served.export(request([sqlalchemy_statement(0x50 + i, 0xA0 + i, operation="SELECT",
                                                    read=(f"table_{i}",))]))
    events = served.wait_events(6)
    stats = served.service.stats()
    assert stats["evicted"] == 3 and stats["held"] == 2
    assert [e["job"]["name"] for e in events] == [
        f"library.SELECT table_{i}" for i in range(3) for _ in range(2)]
    assert all("parent" not in e["run"]["facets"] for e in events)
    assert {e["run"]["runId"] for e in events} == {expected_run_id(TRACE, 0x50 + i)
                                                    for i in range(3)}


def test_max_age_emits_held_statements_without_their_parent(serve: Serve) -> None:
    # long enough that a stalled machine cannot expire them before the first check
    served = serve(lineage=LineageSettings(buffer_timeout_seconds=2))
    served.export(request([
        sqlalchemy_statement(0x61, 0xAA, operation="SELECT", read=("books",)),
        sqlalchemy_statement(0x62, 0xAA, operation="UPDATE", written=("books",)),
    ]))
    assert served.service.stats()["held"] == 2
    # no further request: the delivery worker's periodic tick expires them
    events = served.wait_events(4, timeout=30)
    assert sorted({e["job"]["name"] for e in events}) == [
        "library.SELECT books", "library.UPDATE books"]
    assert all("parent" not in e["run"]["facets"] for e in events)
    stats = served.service.stats()
    assert stats["expired"] == 2 and stats["held"] == 0 and stats["runs_emitted"] == 2


def test_hung_lineage_backend_never_blocks_export_and_drops_are_counted(serve: Serve) -> None:
    sink = HangingSink()
    served = serve(lineage=LineageSettings(queue_max_events=4), sink=sink)
    try:
        started = time.monotonic()
        for i in range(10):
            served.export(request([sqlalchemy_statement(0x70 + i, None, operation="SELECT",
                                                        read=("books",), trace_id=0xE0 + i)]))
        # a blocked Export would take the hang (until released) per request
        assert time.monotonic() - started < 30
        stats = served.service.stats()
        assert stats["dropped"] >= 10 and stats["events_emitted"] == 20
    finally:
        sink.release.set()


def test_concurrent_requests_are_all_counted(serve: Serve) -> None:
    served = serve()

    def send(k: int) -> None:
        for i in range(20):
            served.export(request([sqlalchemy_statement(
                0x1000 * (k + 1) + i, None, operation="SELECT", read=("books",),
                trace_id=0x9000 + k)]))

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    events = served.wait_events(160)
    assert len({e["run"]["runId"] for e in events}) == 80
    assert served.service.stats()["spans_received"] == 80
    # START before COMPLETE for every run, in the file
    seen: dict[str, str] = {}
    for event in events:
        run_id = event["run"]["runId"]
        assert (seen.get(run_id), event["eventType"]) in ((None, "START"),
                                                           ("START", "COMPLETE"))
        seen[run_id] = event["eventType"]
