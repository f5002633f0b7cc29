"""A second process for the cross-process test: an HTTP service that continues the caller's
trace (W3C traceparent) and runs one job. Prints its port, serves one request, flushes."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import sqlalchemy as sa
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_sqla_lineage import OpenLineageSpanExporter, SQLAlchemyLineageInstrumentor

provider = TracerProvider(resource=Resource.create({"service.name": "catalog"}))
exporter = OpenLineageSpanExporter()  # events file from OTEL_SQLA_LINEAGE_FILE
provider.add_span_processor(SimpleSpanProcessor(exporter))
SQLAlchemyLineageInstrumentor().instrument(tracer_provider=provider)
tracer = provider.get_tracer("child")
engine = sa.create_engine(f"sqlite:///{sys.argv[1]}")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        context = propagate.extract(self.headers)  # case-insensitive, like real servers
        with tracer.start_as_current_span("load_books", context=context,
                                          kind=trace.SpanKind.SERVER), engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS books (id INTEGER, title TEXT)")
            conn.exec_driver_sql("INSERT INTO books VALUES (1, 'Dune')")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.handle_request()
provider.shutdown()
