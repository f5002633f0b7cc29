"""Delivery never hurts the host: a failing or hanging backend costs the application
nothing, the queue is bounded, and the destination is chosen the usual OpenLineage way."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fakes import FailingSink, HangingSink, fake_lineage_backend_returning
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_sqla_lineage.delivery import (
    JsonLinesSink,
    OpenLineageTransportSink,
    resolve_transport_config,
    sink_from_environment,
)
from otel_sqla_lineage.errors import ConfigError
from otel_sqla_lineage.exporter import OpenLineageSpanExporter
from otel_sqla_lineage.settings import LineageSettings


def real_spans(exporter: OpenLineageSpanExporter, jobs: int) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    statement = {"db.system": "sqlite", "db.statement": "SELECT * FROM books"}
    for i in range(jobs):
        with tracer.start_as_current_span(f"job{i}"), tracer.start_as_current_span(
            "SELECT", attributes=statement
        ):
            pass


def test_failing_backend_never_raises_into_the_app_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = FailingSink()
    exporter = OpenLineageSpanExporter(sink=sink)
    real_spans(exporter, 3)
    assert exporter.force_flush(5000)
    assert sink.attempts == 6
    assert exporter.stats["failed"] == 6
    assert "fake backend is down" in caplog.text
    exporter.shutdown()


def test_hanging_backend_does_not_block_export_and_the_queue_is_bounded() -> None:
    sink = HangingSink()
    exporter = OpenLineageSpanExporter(sink=sink, queue_max_events=10)
    started = time.monotonic()
    real_spans(exporter, 50)  # 100 events into a queue of 10, behind a backend that hangs
    assert time.monotonic() - started < 10.0  # blocked, it would wait for the release
    stats = exporter.stats
    assert stats["dropped"] == 100 - 10  # queued plus in flight never exceeds the bound
    sink.release.set()
    exporter.shutdown()


def test_http_backend_answering_500_costs_the_app_nothing(tmp_path: Path) -> None:
    with fake_lineage_backend_returning(500) as (url, bodies):
        source, config = resolve_transport_config({"OPENLINEAGE_URL": url})
        assert (source, config) == ("OPENLINEAGE_URL", {
            "type": "http", "url": url, "endpoint": "api/v1/lineage"})
        from openlineage.client.transport import get_default_factory

        config["retry"] = {"total": 1, "backoff_factor": 0.01}
        transport = get_default_factory().create(config)
        exporter = OpenLineageSpanExporter(sink=OpenLineageTransportSink(transport, "http"))
        started = time.monotonic()
        real_spans(exporter, 2)
        assert time.monotonic() - started < 3.0
        assert exporter.force_flush(30_000)
        assert exporter.stats["failed"] == 4
        assert bodies, "the backend was called"
        assert json.loads(bodies[0])["eventType"] == "START"
        exporter.shutdown()


def test_nothing_configured_means_a_json_lines_file_announced_once(
    tmp_cwd: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED",
                 "OTEL_SQLA_LINEAGE_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_cwd))
    sink = sink_from_environment(LineageSettings())
    assert isinstance(sink, JsonLinesSink)
    assert sink.path == tmp_cwd / "openlineage_events.jsonl"
    assert caplog.text.count("no OpenLineage transport configured") == 1


def test_openlineage_yml_and_env_vars_are_read_and_env_is_not_written(
    tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_cwd / "openlineage.yml").write_text(
        "transport:\n  type: file\n  log_file_path: from-yaml.jsonl\n  append: true\n")
    env: dict[str, Any] = {"HOME": str(tmp_cwd)}
    assert resolve_transport_config(env) == (
        "config file openlineage.yml",
        {"type": "file", "log_file_path": "from-yaml.jsonl", "append": True})
    (tmp_cwd / "openlineage.yml").unlink()
    env = {"OPENLINEAGE__TRANSPORT__TYPE": "console",
           "OPENLINEAGE__TRANSPORT__RETRY__TOTAL": "3", "HOME": str(tmp_cwd)}
    before = dict(env)
    assert resolve_transport_config(env) == (
        "OPENLINEAGE__TRANSPORT__* variables", {"type": "console", "retry": {"total": 3}})
    assert env == before
    assert resolve_transport_config({"OPENLINEAGE_DISABLED": "true"})[1] == {"type": "noop"}


def test_configured_file_transport_goes_through_openlineage_python(
    tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(tmp_cwd / "ol.jsonl"))
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__APPEND", "true")
    exporter = OpenLineageSpanExporter()
    assert "file transport" in exporter._pipeline.sink.description
    real_spans(exporter, 1)
    exporter.shutdown()
    lines = (tmp_cwd / "ol.jsonl").read_text().splitlines()
    assert [json.loads(line)["eventType"] for line in lines] == ["START", "COMPLETE"]


def test_bad_settings_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SQLA_LINEAGE_GRANULARITY", "per-row")
    with pytest.raises(ConfigError, match="granularity must be one of job, statement"):
        LineageSettings.from_env()
    monkeypatch.setenv("OTEL_SQLA_LINEAGE_GRANULARITY", "job")
    monkeypatch.setenv("OTEL_SQLA_LINEAGE_BUFFER_MAX_SPANS", "many")
    with pytest.raises(ConfigError, match="OTEL_SQLA_LINEAGE_BUFFER_MAX_SPANS"):
        LineageSettings.from_env()


def test_shutdown_drains_held_statements_and_is_idempotent(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    exporter = OpenLineageSpanExporter(sink=JsonLinesSink(events))
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    job = tracer.start_span("never_ends")
    with tracer.start_as_current_span(
        "SELECT", context=trace.set_span_in_context(job),
        attributes={"db.system": "sqlite", "db.statement": "SELECT * FROM books"},
    ):
        pass
    assert exporter.stats["held"] == 1  # waiting for its job span
    exporter.shutdown()
    exporter.shutdown()
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["eventType"], e["job"]["name"]) for e in lines] == [
        ("START", "unknown_service:python.SELECT books"),
        ("COMPLETE", "unknown_service:python.SELECT books")]


def test_openlineage_yml_that_is_not_a_mapping_is_a_config_error(tmp_cwd: Path) -> None:
    (tmp_cwd / "openlineage.yml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve_transport_config({"HOME": str(tmp_cwd)})


def test_mysql_duplicate_entry_value_is_scrubbed() -> None:
    from otel_sqla_lineage.scrub import scrub_error_message

    message = ("(pymysql.err.IntegrityError) (1062, \"Duplicate entry 'ada@example.org' for "
               "key 'users.email'\")")
    scrubbed = scrub_error_message(message)
    assert "ada@example.org" not in scrubbed
    assert "Duplicate entry '<hidden>' for key 'users.email'" in scrubbed


def test_a_span_that_cannot_be_read_is_skipped_and_the_rest_of_the_batch_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from opentelemetry.sdk.trace.export import SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    class Unreadable:
        name = "broken"

        def get_span_context(self) -> None:
            raise RuntimeError("not a span")

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("job"), tracer.start_as_current_span(
        "SELECT", attributes={"db.system": "sqlite", "db.statement": "SELECT * FROM books"}
    ):
        pass
    events = tmp_path / "e.jsonl"
    exporter = OpenLineageSpanExporter(sink=JsonLinesSink(events))
    batch = [memory.get_finished_spans()[0], Unreadable(), memory.get_finished_spans()[1]]
    assert exporter.export(batch) == SpanExportResult.SUCCESS  # type: ignore[arg-type]
    exporter.shutdown()
    assert "span 'broken' could not be read" in caplog.text
    names = [json.loads(line)["job"]["name"] for line in events.read_text().splitlines()]
    assert names == ["unknown_service:python.job"] * 2


def test_writers_sharing_the_default_file_never_mix_their_lines(tmp_path: Path) -> None:
    """The exporter and the schema-at-start queue (and a forked server's workers) append
    to the same default file: every line must stay one whole event, however large."""
    import threading

    path = tmp_path / "openlineage_events.jsonl"
    sinks = [JsonLinesSink(path), JsonLinesSink(path)]
    per_writer, payload = 150, "x" * 40_000  # far beyond any write buffer

    def write(n: int) -> None:
        for i in range(per_writer):
            sinks[n].emit({"eventType": "COMPLETE", "writer": n, "i": i, "pad": payload})
        sinks[n].close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]  # a mixed line would not parse
    assert sorted((e["writer"], e["i"]) for e in events) == sorted(
        (n, i) for n in range(2) for i in range(per_writer)
    )


def test_batches_written_whole_by_writers_sharing_the_file(tmp_path: Path) -> None:
    """The delivery workers hand JsonLinesSink a batch of lines in one write: two writers'
    batches must not mix either, and every line stays whole."""
    import threading

    path = tmp_path / "openlineage_events.jsonl"
    sinks = [JsonLinesSink(path), JsonLinesSink(path)]
    payload = "x" * 20_000

    def write(n: int) -> None:
        for b in range(20):
            sinks[n].write_json_lines([
                json.dumps({"writer": n, "i": b * 10 + i, "pad": payload}).encode()
                for i in range(10)])
        sinks[n].close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert sorted((e["writer"], e["i"]) for e in events) == sorted(
        (n, i) for n in range(2) for i in range(200))
    for n in range(2):  # each writer's lines in its own order
        assert [e["i"] for e in events if e["writer"] == n] == list(range(200))


def test_a_file_that_cannot_be_written_counts_the_batch_as_failed(tmp_path: Path) -> None:
    """Without a spool the worker writes a batch at a time: if the write fails, every event
    of it is counted as failed (none as delivered), and nothing reaches the app."""
    (tmp_path / "events.jsonl").mkdir()  # a directory where the file should be
    exporter = OpenLineageSpanExporter(sink=JsonLinesSink(tmp_path / "events.jsonl"))
    real_spans(exporter, 3)
    assert exporter.force_flush(10_000)
    stats = exporter.stats
    assert stats["delivered"] == 0 and stats["failed"] == 6
    exporter.shutdown()
