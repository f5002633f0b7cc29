"""An instrumented job runner whose lineage backend is unreachable: it exports N jobs
(START + COMPLETE each) with the spool from OTEL_SQLA_LINEAGE_SPOOL_DIR, says so, and
waits to be killed (the test sends SIGKILL)."""

import sys
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_sqla_lineage.exporter import OpenLineageSpanExporter

jobs = int(sys.argv[1])
exporter = OpenLineageSpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("spooling_app")
for i in range(jobs):
    with tracer.start_as_current_span(f"job{i}"), tracer.start_as_current_span(
        "SELECT", attributes={"db.system": "sqlite", "db.statement": "SELECT * FROM books"}
    ):
        pass
print(f"exported {jobs} jobs", flush=True)
time.sleep(600)
