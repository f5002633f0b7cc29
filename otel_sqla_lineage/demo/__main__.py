"""Run the library demo: real SQLite reads and writes inside named spans, each statement
span printed with its lineage attributes, OpenLineage events written, and a summary of the
lineage at the end.

    python -m otel_sqla_lineage.demo                # SQLite + ./demo-output/
    python -m otel_sqla_lineage.demo --database postgresql+psycopg2://...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_sqla_lineage import attributes as attr
from otel_sqla_lineage.delivery import JsonLinesSink, resolve_transport_config
from otel_sqla_lineage.demo.app import BookUnavailable, Library
from otel_sqla_lineage.exporter import OpenLineageSpanExporter
from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor
from otel_sqla_lineage.settings import GRANULARITIES, LineageSettings

_SHOWN = {
    attr.DB_OPERATION_NAME: "operation",
    attr.DB_COLLECTION_NAME: "table",
    attr.SQLALCHEMY_TABLES_READ: "read",
    attr.SQLALCHEMY_TABLES_WRITTEN: "written",
    attr.SQLALCHEMY_MAPPERS: "mappers",
    attr.SQLALCHEMY_SOURCE: "source",
    attr.OPENLINEAGE_RUN_ID: "run",
}


class PrintStatementSpans(SpanProcessor):
    """Prints each statement span and its lineage attributes as it ends."""

    def __init__(self, out: Any = sys.stdout) -> None:
        self.out = out

    def on_end(self, span: ReadableSpan) -> None:
        a = span.attributes or {}
        if attr.SQLALCHEMY_SOURCE not in a:
            return
        parts = []
        for key, label in _SHOWN.items():
            if key in a:
                value = a[key]
                shown = ",".join(value) if isinstance(value, tuple) else value
                parts.append(f"{label}={shown}")
        print("  statement: " + " ".join(parts), file=self.out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m otel_sqla_lineage.demo",
        description="The library demo: SQLAlchemy statements become spans with lineage "
        "attributes and OpenLineage run events.",
    )
    parser.add_argument(
        "--database",
        default=None,
        help="SQLAlchemy URL (default: sqlite:///<output-dir>/library.db)",
    )
    parser.add_argument(
        "--output-dir",
        default="demo-output",
        help="where the SQLite file and, unless an OpenLineage transport is configured, "
        "openlineage_events.jsonl go (default: %(default)s)",
    )
    parser.add_argument("--granularity", choices=GRANULARITIES, default=None,
                        help="one run per enclosing span (job, default) or per statement")
    parser.add_argument("--quiet", action="store_true", help="do not print statement spans")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.output_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    database = args.database or f"sqlite:///{out_dir / 'library.db'}"

    source, _ = resolve_transport_config()
    events_file = out_dir / "openlineage_events.jsonl"
    settings = LineageSettings.from_env(granularity=args.granularity)
    if source == "none":
        events_file.unlink(missing_ok=True)
        exporter = OpenLineageSpanExporter(settings=settings, sink=JsonLinesSink(events_file))
        destination = str(events_file)
    else:
        exporter = OpenLineageSpanExporter(settings=settings)
        destination = f"the OpenLineage transport from {source}"

    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "library")})
    )
    if not args.quiet:
        provider.add_span_processor(PrintStatementSpans())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=provider, granularity=settings.granularity)
    try:
        engine = sa.create_engine(database)
        library = Library(engine, provider.get_tracer("otel_sqla_lineage.demo"))
        print(f"library demo on {engine.url.render_as_string(hide_password=True)}")
        run_scenario(library)
        engine.dispose()
    finally:
        instrumentor.uninstrument()
        provider.shutdown()  # flushes the exporter: every run is now written

    print(f"\nlineage events: {destination}")
    if source == "none":
        print_summary(events_file)
    return 0


def run_scenario(library: Library) -> None:
    steps: list[tuple[str, Any]] = [
        ("setup_schema", library.setup),
        ("seed_catalog", library.seed),
        ("book_inventory", library.book_inventory),
        ("checkout_book Dune", lambda: library.checkout_book("ada@example.org", "Dune")),
        ("checkout_book Solaris", lambda: library.checkout_book("grace@example.org", "Solaris")),
        ("checkout_book Solaris again (no copy left: FAIL)",
         lambda: library.checkout_book("ada@example.org", "Solaris")),
        ("write_post", lambda: library.write_post("ada@example.org", "Dune", "Spice!")),
        ("return_book", lambda: library.return_book("ada@example.org", "Dune")),
        ("reading_report", library.reading_report),
        ("register_user duplicate e-mail (unique violation: FAIL)",
         library.register_duplicate_user),
    ]
    for label, step in steps:
        print(f"\n{label}")
        try:
            step()
        except (BookUnavailable, sa.exc.IntegrityError) as exc:
            first_line = str(exc).splitlines()[0]
            print(f"  -> failed as intended: {type(exc).__name__}: {first_line}")


def print_summary(events_file: Path) -> None:
    runs: dict[str, dict[str, Any]] = {}
    count = 0
    if events_file.exists():
        for line in events_file.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            count += 1
            run = runs.setdefault(event["run"]["runId"], {"job": event["job"]["name"],
                                                          "reads": set(), "writes": set()})
            run["state"] = event["eventType"]
            run["reads"].update(d["name"] for d in event["inputs"])
            run["writes"].update(d["name"] for d in event["outputs"])
    print(f"{count} events, {len(runs)} runs\n")
    print(f"{'job':<28} {'state':<9} {'reads':<34} writes")
    for run in runs.values():
        reads = ", ".join(sorted(run["reads"])) or "-"
        writes = ", ".join(sorted(run["writes"])) or "-"
        print(f"{run['job']:<28} {run['state']:<9} {reads:<34} {writes}")


if __name__ == "__main__":
    raise SystemExit(main())
