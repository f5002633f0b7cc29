"""A pre-forking server in miniature (``gunicorn --preload``): the exporter is created in
the parent, behind the SDK's BatchSpanProcessor, before the fork. The child exports one
job and exits through the provider's shutdown (which shuts the exporter down); then the
parent exports one more. Settings come from the environment (OPENLINEAGE_URL, maybe
OTEL_SQLA_LINEAGE_SPOOL_DIR). Prints one JSON line: the child's exit code and the
seconds its shutdown took."""

import json
import os
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_sqla_lineage.exporter import OpenLineageSpanExporter

exporter = OpenLineageSpanExporter()
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
tracer = provider.get_tracer("forking_app")


def job(name: str) -> None:
    with tracer.start_as_current_span(name), tracer.start_as_current_span(
        "SELECT", attributes={"db.system": "sqlite", "db.statement": "SELECT * FROM books"}
    ):
        pass


job("parent_before")
provider.force_flush()
pid = os.fork()
if pid == 0:
    job("child_job")
    started = time.monotonic()
    provider.shutdown()
    with open(os.environ["FORK_CHILD_REPORT"], "w") as report:
        report.write(str(time.monotonic() - started))
    os._exit(0)
_, status = os.waitpid(pid, 0)
job("parent_after")
provider.shutdown()
with open(os.environ["FORK_CHILD_REPORT"]) as report:
    child_shutdown = float(report.read())
print(json.dumps({"child_exit": os.waitstatus_to_exitcode(status),
                  "child_shutdown_seconds": child_shutdown}), flush=True)
