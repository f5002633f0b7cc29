"""Never hurt the host: whatever the lineage backend or the spool does, the instrumented
application's requests succeed, without waiting on it; and memory stays bounded by the
settings under a burst of spans (a child process, peak RSS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fakes import (
    FailingSink,
    HangingSink,
    SwitchableBackend,
    fake_lineage_backend_returning,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from procs.otlp_tools import clean_env, free_port

from otel_sqla_lineage import SQLAlchemyLineageInstrumentor
from otel_sqla_lineage.delivery import EventSink, OpenLineageTransportSink
from otel_sqla_lineage.exporter import OpenLineageSpanExporter

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def http_sink(url: str) -> OpenLineageTransportSink:
    from openlineage.client.transport import get_default_factory

    return OpenLineageTransportSink(
        get_default_factory().create({"type": "http", "url": url, "timeout": 1}), url)


@contextmanager
def fault(name: str, tmp_path: Path) -> Iterator[tuple[EventSink, dict[str, Any]]]:
    """(sink, exporter settings) for one fault."""
    spool = {"spool_dir": str(tmp_path / "spool")}
    with ExitStack() as stack:
        if name == "sink-raises":
            yield FailingSink(), {}
        elif name == "sink-raises-spooled":
            yield FailingSink(), spool
        elif name == "sink-hangs":
            sink = HangingSink()
            stack.callback(sink.release.set)
            yield sink, {"queue_max_events": 20}
        elif name == "sink-hangs-spooled":
            sink = HangingSink()
            stack.callback(sink.release.set)
            yield sink, {**spool, "queue_max_events": 20}
        elif name == "http-500":
            url, _ = stack.enter_context(fake_lineage_backend_returning(500))
            yield http_sink(url), spool
        elif name == "http-refused":
            yield http_sink(f"http://127.0.0.1:{free_port()}"), spool
        elif name == "http-hangs":
            backend = SwitchableBackend()
            backend.hang = True
            stack.callback(backend.close)
            yield http_sink(backend.url), spool
        elif name == "spool-full":
            yield FailingSink(), {**spool, "spool_max_bytes": 4096}
        elif name == "spool-dir-is-a-file":
            (tmp_path / "not-a-dir").write_text("")
            yield FailingSink(), {"spool_dir": str(tmp_path / "not-a-dir")}
        else:  # pragma: no cover
            raise AssertionError(name)


FAULTS = ["sink-raises", "sink-raises-spooled", "sink-hangs", "sink-hangs-spooled",
          "http-500", "http-refused", "http-hangs", "spool-full", "spool-dir-is-a-file"]


@pytest.mark.parametrize("name", FAULTS)
def test_no_fault_reaches_the_application_or_blocks_it(tmp_path: Path, name: str) -> None:
    with fault(name, tmp_path) as (sink, settings):
        exporter = OpenLineageSpanExporter(sink=sink, **settings)
        provider = TracerProvider()
        # the exporter runs on the application's thread: the worst case for the app
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        instrumentor = SQLAlchemyLineageInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
            tracer = provider.get_tracer("app")
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE books (id INTEGER PRIMARY KEY, t TEXT)"))
            started = time.monotonic()
            answers = []
            for i in range(100):
                with tracer.start_as_current_span(f"request{i}"), engine.begin() as conn:
                    conn.execute(sa.text("INSERT INTO books (t) VALUES (:t)"), {"t": str(i)})
                    answers.append(conn.execute(sa.text("SELECT count(*) FROM books")).scalar())
            elapsed = time.monotonic() - started
        finally:
            instrumentor.uninstrument()
        assert answers == list(range(1, 101))
        # generous for fsyncs on a shared disk; a blocking exporter costs >= 1 s per event
        # (HTTP hang) or 30 s (hanging sink), far past it
        assert elapsed < 30.0, f"100 requests took {elapsed:.1f}s behind a faulty backend"
        time.sleep(0.5)
        stats = exporter.stats
        # the fault was met, and counted (failed attempts, drops, or kept in the spool)
        assert stats["failed"] + stats["dropped"] + stats.get("spool_pending", 0) > 0, stats
        exporter.force_flush(2000)  # bounded wait; returns whatever the backend does
        started = time.monotonic()
        provider.shutdown()  # never raises; a hung backend costs the app the close timeout
        assert time.monotonic() - started < 40  # the exporter's 30 s close timeout


def burst_peak_rss_mib(spans: int, spool: Path) -> tuple[float, dict[str, int]]:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_memory_burst.py"), "--child", str(spans)],
        capture_output=True, text=True, timeout=600,
        env=clean_env(OPENLINEAGE_URL=f"http://127.0.0.1:{free_port()}",
                      OTEL_SQLA_LINEAGE_SPOOL_DIR=str(spool)))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    return float(out["maxrss_mib"]), out["stats"]


@pytest.mark.subprocess
def test_memory_stays_bounded_under_a_burst_of_spans_with_the_backend_down(
    tmp_path: Path
) -> None:
    small, _ = burst_peak_rss_mib(20_000, tmp_path / "small")
    large, stats = burst_peak_rss_mib(150_000, tmp_path / "large")
    assert stats["events_emitted"] > 140_000
    # 7.5 times the spans, the same memory: what is not delivered is on disk
    assert large - small < 16, (small, large)
    assert os.path.isdir(tmp_path / "large")


