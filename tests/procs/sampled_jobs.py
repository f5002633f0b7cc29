"""A batch workload of many small jobs, each an enclosing span with SQLAlchemy statements.

Imported by tests/test_sampling.py (in process) and run as a script under
``opentelemetry-instrument`` (no OpenTelemetry set-up code: the environment configures it):

    python sampled_jobs.py <sqlite file> <jobs report file> <job count>

Each job records its own trace id, span id and the ``traceparent`` it would propagate, so
the test can check lineage and traces against the sampler's decisions, not against our
output.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import sqlalchemy as sa
from opentelemetry import propagate, trace

METADATA = sa.MetaData()
ORDERS = sa.Table(
    "orders", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job", sa.Integer, nullable=False),
)
TOTALS = sa.Table(
    "order_totals", METADATA,
    sa.Column("job", sa.Integer, primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)


def run_jobs(engine: sa.engine.Engine, tracer: trace.Tracer, count: int) -> list[dict[str, Any]]:
    """``count`` jobs named ``settle_orders``: each reads orders and writes totals."""
    METADATA.create_all(engine)
    jobs = []
    for number in range(count):
        with tracer.start_as_current_span("settle_orders") as span:
            with engine.begin() as conn:
                conn.execute(sa.insert(ORDERS), [{"job": number}, {"job": number}])
                n = conn.execute(
                    sa.select(sa.func.count()).select_from(ORDERS).where(ORDERS.c.job == number)
                ).scalar_one()
                conn.execute(sa.insert(TOTALS).values(job=number, n=n))
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            context = span.get_span_context()
            jobs.append({"trace_id": f"{context.trace_id:032x}",
                         "span_id": f"{context.span_id:016x}",
                         "traceparent": carrier.get("traceparent")})
    return jobs


if __name__ == "__main__":
    database, report, job_count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    records = run_jobs(sa.create_engine(f"sqlite:///{database}"),
                       trace.get_tracer("sampled_jobs"), job_count)
    with open(report, "w") as out:
        json.dump(records, out)
