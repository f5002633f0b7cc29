"""The library demo's scenario as an application with no OpenTelemetry set-up of its own:
run it under ``opentelemetry-instrument``, which loads the instrumentors and the exporters
named in ``OTEL_TRACES_EXPORTER``.

    opentelemetry-instrument python library_app.py <sqlite file> steps|cut

``steps``: the whole demo scenario; the tracer provider is flushed after every step, so each
step's spans leave in OTLP requests of their own (batch boundaries never fall inside a job).
``cut``: a span with no SQL ends right before a job, in the same export batch: the OTLP
encoder then lists both application spans before the job's statement spans.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from opentelemetry import trace

from otel_sqla_lineage.demo.__main__ import run_scenario
from otel_sqla_lineage.demo.app import Library

SCOPE = "otel_sqla_lineage.demo"  # the tracer Library uses when given none


def flush() -> None:
    provider: Any = trace.get_tracer_provider()
    assert provider.force_flush(30_000), "the span processors did not flush"


def flushing(method: Callable[..., Any]) -> Callable[..., Any]:
    def step(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        finally:
            flush()

    return step


class FlushingLibrary(Library):
    setup = flushing(Library.setup)
    seed = flushing(Library.seed)
    book_inventory = flushing(Library.book_inventory)
    checkout_book = flushing(Library.checkout_book)
    return_book = flushing(Library.return_book)
    write_post = flushing(Library.write_post)
    reading_report = flushing(Library.reading_report)
    register_duplicate_user = flushing(Library.register_duplicate_user)


def main(database: str, mode: str) -> None:
    engine = sa.create_engine(f"sqlite:///{database}")
    if mode == "steps":
        run_scenario(FlushingLibrary(engine))
    elif mode == "cut":
        library = Library(engine)
        library.setup()
        library.seed()
        flush()
        with trace.get_tracer(SCOPE).start_as_current_span("render_banner"):
            pass
        library.checkout_book("ada@example.org", "Dune")
        flush()
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    engine.dispose()
    print("library app done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
