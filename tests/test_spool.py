"""Durable delivery: while the lineage backend is down, hanging or answering 5xx, events
are kept in a bounded on-disk spool and delivered once it is back, each run's START before
its COMPLETE; the spool survives the app stopping (even ``kill -9``); a full spool drops
what does not fit, counted and logged."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_jobs
from fakes import HangingSink, switchable_lineage_backend
from procs.otlp_tools import clean_env, free_port, wait_for

from otel_sqla_lineage import spool as spool_module
from otel_sqla_lineage.delivery import OpenLineageTransportSink
from otel_sqla_lineage.exporter import OpenLineageSpanExporter
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spool import Spool

PROCS = Path(__file__).resolve().parent / "procs"


def http_sink(url: str) -> OpenLineageTransportSink:
    """openlineage-python's own HTTP transport, with short retries and timeout."""
    from openlineage.client.transport import get_default_factory

    transport = get_default_factory().create({
        "type": "http", "url": url, "timeout": 10,
        "retry": {"total": 1, "backoff_factor": 0.01}})
    return OpenLineageTransportSink(transport, f"http {url}")


def job_events(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["job"]["name"].rpartition(".")[2], e["eventType"]) for e in events]


def in_order(names: list[str]) -> list[tuple[str, str]]:
    return [(n, t) for n in names for t in ("START", "COMPLETE")]


def spooled_lines(spool_dir: Path) -> int:
    # complete lines only: the last one may be half written
    return sum(p.read_bytes().count(b"\n") for p in spool_dir.glob("*.jsonl"))


def test_backend_answering_500_keeps_events_and_delivers_them_in_order_once_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"job{i}" for i in range(5)]
    with switchable_lineage_backend(status=503) as backend:
        exporter = OpenLineageSpanExporter(sink=http_sink(backend.url),
                                           spool_dir=str(tmp_path / "spool"))
        run_jobs(exporter, names)
        assert exporter.force_flush(30_000)  # everything on disk, the backend refusing
        assert backend.accepted == []
        assert backend.refused >= 1
        assert exporter.stats["spool_pending"] == 10
        assert "keeping events in the spool" in caplog.text
        backend.status = 200
        wait_for(lambda: len(backend.accepted) == 10, 30, "the spooled events delivered")
        assert job_events(backend.accepted) == in_order(names)
        run_jobs(exporter, ["after"])
        assert exporter.force_flush(30_000)
        assert job_events(backend.accepted) == in_order([*names, "after"])
        stats = exporter.stats
        assert (stats["delivered"], stats["dropped"], stats["spool_pending"]) == (12, 0, 0)
        exporter.shutdown()


def test_spool_survives_a_restart_of_the_app_and_is_delivered_first(tmp_path: Path) -> None:
    spool = str(tmp_path / "spool")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    first = OpenLineageSpanExporter(sink=http_sink(down), spool_dir=spool)
    run_jobs(first, ["before1", "before2"])
    first.shutdown()  # the backend still down: the events stay on disk
    assert spooled_lines(Path(spool)) == 4
    with switchable_lineage_backend() as backend:
        second = OpenLineageSpanExporter(sink=http_sink(backend.url), spool_dir=spool)
        run_jobs(second, ["after"])
        assert second.force_flush(30_000)
        assert job_events(backend.accepted) == in_order(["before1", "before2", "after"])
        second.shutdown()


def test_spool_survives_kill_9_of_the_app(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    down = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, str(PROCS / "spooling_app.py"), "20"], stdout=subprocess.PIPE,
        text=True, cwd=tmp_path,
        env=clean_env(OPENLINEAGE_URL=down, OTEL_SQLA_LINEAGE_SPOOL_DIR=str(spool)))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "exported 20 jobs"
        wait_for(lambda: spooled_lines(spool) == 40, 30, "40 events in the spool")
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -9
    with switchable_lineage_backend() as backend:
        exporter = OpenLineageSpanExporter(sink=http_sink(backend.url), spool_dir=str(spool))
        wait_for(lambda: len(backend.accepted) == 40, 30, "the 40 spooled events delivered")
        exporter.shutdown()
    assert job_events(backend.accepted) == in_order([f"job{i}" for i in range(20)])


def test_full_spool_drops_what_does_not_fit_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with switchable_lineage_backend(status=500) as backend:
        exporter = OpenLineageSpanExporter(sink=http_sink(backend.url),
                                           spool_dir=str(tmp_path / "spool"),
                                           spool_max_bytes=8192)
        run_jobs(exporter, [f"job{i}" for i in range(40)])
        assert exporter.force_flush(30_000)
        stats = exporter.stats
        assert stats["spool_bytes"] <= 8192
        assert stats["dropped"] > 0
        assert stats["dropped"] + stats["spool_pending"] == 80
        assert "spool full or not writable" in caplog.text
        assert f"{stats['dropped']} event(s) dropped so far" in caplog.text or \
            stats["dropped"] not in (1, 10, 100)
        kept = stats["spool_pending"]
        backend.status = 200
        wait_for(lambda: len(backend.accepted) == kept, 30, "the kept events delivered")
        exporter.shutdown()
    # what was kept is the oldest, whole runs first: the first job's START leads
    assert job_events(backend.accepted)[:2] == in_order(["job0"])


def test_hanging_backend_fills_the_spool_not_memory_and_drops_nothing(tmp_path: Path) -> None:
    sink = HangingSink()
    exporter = OpenLineageSpanExporter(sink=sink, queue_max_events=10,
                                       spool_dir=str(tmp_path / "spool"))
    for burst in range(10):  # 100 events behind a hung backend, 10 times the queue
        run_jobs(exporter, [f"job{burst}.{i}" for i in range(5)])
        wait_for(lambda b=burst: exporter.stats["spool_pending"] >= 10 * b + 9, 10,
                 "the burst spooled")
    assert exporter.stats["dropped"] == 0
    sink.release.set()
    assert exporter.force_flush(30_000)
    assert len(sink.received) == 100
    exporter.shutdown()


def test_a_torn_last_line_is_cut_and_an_unreadable_line_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append([json.dumps({"n": 1}), "not json", json.dumps({"n": 2})])
    spool.close()
    segment = next(tmp_path.glob("*.jsonl"))
    with segment.open("ab") as handle:
        handle.write(b'{"n": 3, "half')  # a crash in the middle of a write
    reopened = Spool(tmp_path, 1 << 20)
    assert "cut an unfinished last line" in caplog.text
    events, position = reopened.peek(10)
    assert events == [{"n": 1}, {"n": 2}]
    assert reopened.corrupt == 1
    reopened.commit(position, len(events))
    assert reopened.pending == 0
    reopened.close()
    assert Spool(tmp_path, 1 << 20).peek(10)[0] == []


def test_a_spool_directory_in_use_gives_the_next_process_a_worker_slot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Several processes with one OTEL_SQLA_LINEAGE_SPOOL_DIR (workers of one app): the
    directory goes to the first, the others spool in worker-1, worker-2, ... of it."""
    holder = Spool(tmp_path / "spool", 1 << 20)
    caplog.set_level(logging.INFO, logger="otel_sqla_lineage")
    with switchable_lineage_backend(status=503) as backend:
        exporter = OpenLineageSpanExporter(sink=http_sink(backend.url),
                                           spool_dir=str(tmp_path / "spool"))
        assert f"spools in {tmp_path / 'spool' / 'worker-1'}" in caplog.text
        run_jobs(exporter, ["job"])
        wait_for(lambda: spooled_lines(tmp_path / "spool" / "worker-1") == 2, 30,
                 "the job's events in the worker slot")
        assert spooled_lines(tmp_path / "spool") == 0  # the holder's own spool untouched
        backend.status = 200
        assert exporter.force_flush(30_000)
        wait_for(lambda: len(backend.accepted) == 2, 30, "the spooled events delivered")
        assert job_events(backend.accepted) == in_order(["job"])
        exporter.shutdown()
    holder.close()


def test_with_every_worker_slot_taken_delivery_goes_on_without_a_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "WORKER_SLOTS", 1)
    holders = [Spool(tmp_path / "spool", 1 << 20), Spool(tmp_path / "spool" / "worker-1",
                                                          1 << 20)]
    with switchable_lineage_backend() as backend:
        exporter = OpenLineageSpanExporter(sink=http_sink(backend.url),
                                           spool_dir=str(tmp_path / "spool"))
        assert "its 1 worker slots are all in use by other processes; delivering without " \
            "a spool" in caplog.text
        run_jobs(exporter, ["job"])
        assert exporter.force_flush(30_000)
        assert job_events(backend.accepted) == in_order(["job"])
        exporter.shutdown()
    for holder in holders:
        holder.close()


def test_spool_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = LineageSettings.from_env({"OTEL_SQLA_LINEAGE_SPOOL_DIR": str(tmp_path),
                                         "OTEL_SQLA_LINEAGE_SPOOL_MAX_BYTES": "65536"})
    assert (settings.spool_dir, settings.spool_max_bytes) == (str(tmp_path), 65536)
    assert LineageSettings().spool_dir is None


def test_segments_roll_and_delivered_ones_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 32 * 1024)  # segments of 4 KiB
    line = json.dumps({"pad": "x" * 90})
    assert spool.append([line] * 200) == 200  # ~19 KiB: five segments
    assert len(list(tmp_path.glob("*.jsonl"))) >= 4
    events, position = spool.peek(1000)
    assert len(events) == 200
    spool.commit(position, 200)
    assert len(list(tmp_path.glob("*.jsonl"))) <= 1
    assert spool.append([line] * 10) == 10
    spool.close()




def test_a_json_lines_sink_gets_the_spooled_lines_as_stored_and_bad_ones_are_skipped(
    tmp_path: Path,
) -> None:
    """The sender hands a JSON-lines sink the spool's lines without parsing them: the
    events file must hold exactly the good lines, in order, and nothing of a damaged one
    (not an object, NUL bytes a power loss leaves, bytes that are not UTF-8)."""
    from otel_sqla_lineage.delivery import JsonLinesSink, SpooledDelivery

    spool_dir = tmp_path / "spool"
    good = [json.dumps({"eventType": "START", "n": n, "text": "caf\u00e9"}, sort_keys=True)
            for n in range(3)]
    spool = Spool(spool_dir, 1 << 20)
    assert spool.append([good[0], "not json", good[1]]) == 3
    spool.close()
    segment = next(spool_dir.glob("*.jsonl"))
    with segment.open("ab") as handle:
        handle.write(b'{"n": "\x00\x00\x00"}\n{"n": "\xff\xfe"}\n' + good[2].encode() + b"\n")
    reopened = Spool(spool_dir, 1 << 20)
    out = tmp_path / "events.jsonl"
    delivery = SpooledDelivery(JsonLinesSink(out), reopened, 100)
    assert delivery.flush(10)
    delivery.close(10)
    assert out.read_text(encoding="utf-8").splitlines() == good
    assert reopened.corrupt == 3
    assert delivery.delivered == 3
    assert reopened.pending == 0
