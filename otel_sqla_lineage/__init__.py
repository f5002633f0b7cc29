"""otel-sqla-lineage: one telemetry stream for traces (Jaeger) and lineage (Marquez).

Usage
-----
Instrument SQLAlchemy, and export finished spans as OpenLineage events beside your usual
trace exporter::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    import sqlalchemy as sa

    from otel_sqla_lineage import OpenLineageSpanExporter, SQLAlchemyLineageInstrumentor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OpenLineageSpanExporter()))
    trace.set_tracer_provider(provider)
    SQLAlchemyLineageInstrumentor().instrument()

    engine = sa.create_engine("sqlite://")
    with trace.get_tracer("app").start_as_current_span("nightly_report"):
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE report (n INTEGER)")
            conn.exec_driver_sql("INSERT INTO report VALUES (1)")
    provider.shutdown()  # flushes: the events are now in ./openlineage_events.jsonl

Each statement span carries ``db.operation.name``, ``db.collection.name``,
``db.sqlalchemy.mappers``, ``db.sqlalchemy.tables.read``/``.written``,
``db.sqlalchemy.source`` and ``openlineage.run.id``; the enclosing span
(``nightly_report``) is the OpenLineage run, with the same run ID.

With no code at all::

    OTEL_TRACES_EXPORTER=otlp,openlineage opentelemetry-instrument python app.py

Under head sampling, wrap your sampler in :class:`LineageSampler` and add an
:class:`UnsampledSpanProcessor` for the lineage exporter (or set
``OTEL_TRACES_SAMPLER=lineage_parentbased_traceidratio``): sampled-out traces still give
lineage, and tracing backends still get only the sampled ones.

Configuration
-------------
Our settings: ``OTEL_SQLA_LINEAGE_*`` environment variables or keyword arguments
(:class:`LineageSettings`). Where events go: openlineage-python's usual configuration
(``openlineage.yml``, ``OPENLINEAGE_URL``, ``OPENLINEAGE__TRANSPORT__*``); with none, a
JSON-lines file in the working directory.

API
---
"""

from otel_sqla_lineage.errors import ConfigError, OtelSqlaLineageError
from otel_sqla_lineage.exporter import OpenLineageSpanExporter
from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor
from otel_sqla_lineage.runid import run_id_for
from otel_sqla_lineage.sampling import LineageSampler, UnsampledSpanProcessor
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.version import __version__

__all__ = [
    "ConfigError",
    "LineageSampler",
    "LineageSettings",
    "OpenLineageSpanExporter",
    "OtelSqlaLineageError",
    "SQLAlchemyLineageInstrumentor",
    "UnsampledSpanProcessor",
    "__version__",
    "run_id_for",
]
