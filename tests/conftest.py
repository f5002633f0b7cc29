"""Shared fixtures: an isolated TracerProvider per test, the instrumentor, real PostgreSQL.

The global tracer provider can be set only once per process, so tests hand their own
provider to ``instrument(tracer_provider=...)`` and start their enclosing spans from it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Traced:
    provider: TracerProvider
    tracer: Tracer
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def statement_spans(self) -> list[ReadableSpan]:
        """Spans of SQL statements (upstream's or ours), not connects or app spans."""
        return [
            s
            for s in self.spans()
            if s.attributes
            and ("db.statement" in s.attributes or "db.query.text" in s.attributes)
        ]

    def clear(self) -> None:
        self.exporter.clear()


def make_traced() -> Traced:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Traced(provider, provider.get_tracer("tests"), exporter)


@pytest.fixture
def traced() -> Iterator[Traced]:
    """A provider of our own, and the instrumentor on it; removed after the test."""
    t = make_traced()
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=t.provider)
    try:
        yield t
    finally:
        instrumentor.uninstrument()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A real PostgreSQL, started by the project's own script. Fails (never skips) when it
    cannot be started, with the script's output as the reason."""
    script = ROOT / "scripts" / "provision_postgres.sh"
    proc = subprocess.run(
        ["bash", str(script), "start"], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        pytest.fail(
            f"PostgreSQL could not be started by {script}:\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def otelcol_binary() -> Path:
    """The project's OpenTelemetry Collector build; fails (never skips) with the script's
    output."""
    script = ROOT / "scripts" / "provision_otelcol.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.fail(f"the OpenTelemetry Collector could not be built by {script}:\n"
                    f"{proc.stderr[-4000:]}", pytrace=False)
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def postgres_url2(postgres_url: str) -> str:
    """The second database of the same server (a pipeline with two binds)."""
    return postgres_url.rsplit("/", 1)[0] + "/osl_test2"


@pytest.fixture
def tmp_cwd(tmp_path: Path) -> Iterator[Path]:
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.fixture
def library(traced: Traced, tmp_path: Path) -> Iterator[Any]:
    """The instrumentor tests' library database (tests/models.py) on a SQLite file created
    after ``instrument()``, seeded; see tests/instrumentor_support.py."""
    from instrumentor_support import open_library

    lib = open_library(traced, tmp_path)
    try:
        yield lib
    finally:
        lib.close()


@dataclass
class Lineage:
    """A provider exporting to both an in-memory span list and our exporter (JSON lines)."""

    traced: Traced
    exporter: Any
    events_file: Path

    @property
    def tracer(self) -> Tracer:
        return self.traced.tracer

    def events(self) -> list[dict[str, Any]]:
        # SimpleSpanProcessor.force_flush does not reach the exporter: flush it directly
        assert self.exporter.force_flush(10_000)
        if not self.events_file.exists():
            return []
        return [json.loads(line) for line in self.events_file.read_text().splitlines()]

    def runs(self) -> dict[str, list[dict[str, Any]]]:
        """Events by job name, in order."""
        out: dict[str, list[dict[str, Any]]] = {}
        for event in self.events():
            out.setdefault(event["job"]["name"], []).append(event)
        return out


def make_lineage(tmp_path: Path, **settings: Any) -> Lineage:
    from opentelemetry.sdk.resources import Resource

    from otel_sqla_lineage.delivery import JsonLinesSink
    from otel_sqla_lineage.exporter import OpenLineageSpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "library"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    events_file = tmp_path / "events.jsonl"
    exporter = OpenLineageSpanExporter(sink=JsonLinesSink(events_file), **settings)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced = Traced(provider, provider.get_tracer("tests"), memory)
    return Lineage(traced, exporter, events_file)


@pytest.fixture
def lineage(tmp_path: Path) -> Iterator[Lineage]:
    """Instrumented SQLAlchemy + our exporter writing JSON lines to a temporary file."""
    result = make_lineage(tmp_path)
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=result.traced.provider)
    try:
        yield result
    finally:
        instrumentor.uninstrument()
        result.traced.provider.shutdown()


def run_jobs(exporter: Any, names: list[str]) -> None:
    """One job span per name, each enclosing one SELECT statement span, through ``exporter``
    (a SimpleSpanProcessor: every span reaches it as it ends)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for name in names:
        with tracer.start_as_current_span(name), tracer.start_as_current_span(
            "SELECT", attributes={"db.system": "sqlite", "db.statement": "SELECT * FROM books"}
        ):
            pass
