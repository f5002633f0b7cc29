"""The spool under disk faults: a full disk, too many open files, a power loss, a cursor
that cannot be read. Every fault here is INJECTED by monkeypatching an ``os`` (or
``pathlib``) function for the duration of the fault (fault injection only; the files and
the rest of the delivery are real). What a user expects: no event is written anywhere but
the spool, nothing raises into the application, delivery goes on once the fault is over,
and no thread spins at 100% CPU meanwhile."""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import run_jobs
from fakes import FailingSink
from procs.otlp_tools import wait_for

from otel_sqla_lineage.delivery import CLOSE_RETRIES, JsonLinesSink, SpooledDelivery
from otel_sqla_lineage.errors import ConfigError
from otel_sqla_lineage.exporter import OpenLineageSpanExporter
from otel_sqla_lineage.spool import Spool

LINE_BYTES = 128  # every test line, with its newline: sizes and cuts are easy to place


def numbered(n: int, start: int = 0) -> list[str]:
    lines = [json.dumps({"n": i, "pad": "x" * (109 - len(str(i)))})
             for i in range(start, start + n)]
    assert all(len(line) + 1 == LINE_BYTES for line in lines)
    return lines


def read_all(spool: Spool) -> list[dict[str, Any]]:
    """Everything the spool hands out, committing as a sender does."""
    out: list[dict[str, Any]] = []
    for _ in range(100):
        events, position = spool.peek(1000)
        spool.commit(position, len(events))
        if not events and not spool.last_skipped:
            break
        out.extend(events)
    return out


def oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def delivered_jobs(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [(e["job"]["name"].rpartition(".")[2], e["eventType"]) for e in events]


def test_emfile_opening_the_next_segment_never_writes_into_the_apps_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: os.open raising EMFILE (too many open files) for the next segment.
    The closed segment's descriptor number is then reused by the application's own file:
    the spool must not write its events there."""
    spool = Spool(tmp_path / "spool", 64 * 1024)  # segments of 8 KiB
    assert spool.append(numbered(64)) == 64  # exactly 8 KiB: the next append rolls
    real_open = os.open

    def emfile_for_segments(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".jsonl"):
            raise oserror(errno.EMFILE)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", emfile_for_segments)
    with pytest.raises(OSError):
        spool.append(numbered(1, start=90))  # the delivery counts it as dropped
    monkeypatch.undo()
    with (tmp_path / "app.log").open("wb", buffering=0):  # takes the lowest free fd
        assert spool.append(numbered(5, start=91)) == 5
    assert (tmp_path / "app.log").read_bytes() == b""
    assert [e["n"] for e in read_all(spool)] == list(range(64)) + list(range(91, 96))
    spool.close()


def test_short_write_on_a_full_disk_is_completed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: os.write taking only half of the bytes once (as on a nearly full
    disk); the rest must follow, not be counted and lost."""
    spool = Spool(tmp_path, 1 << 20)
    real_write = os.write
    calls = {"n": 0}

    def half_once(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[: len(data) // 2 + 7])  # mid-line
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_once)
    assert spool.append(numbered(10)) == 10
    monkeypatch.undo()
    assert spool.append(numbered(2, start=10)) == 2
    assert [e["n"] for e in read_all(spool)] == list(range(12))
    assert spool.corrupt == 0
    assert spool.pending == 0
    spool.close()


def test_enospc_after_a_short_write_cuts_back_to_the_last_whole_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: os.write takes half the bytes, then raises ENOSPC (disk full). The
    half line must go (the next event would otherwise be glued to it and lost as
    corrupt), the refused events are reported as not taken, and counts stay exact."""
    spool = Spool(tmp_path, 1 << 20)
    assert spool.append(numbered(3)) == 3
    before = spool.bytes
    real_write = os.write
    calls = {"n": 0}

    def half_then_enospc(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[: len(data) // 2 + 7])  # mid-line
        raise oserror(errno.ENOSPC)

    monkeypatch.setattr(os, "write", half_then_enospc)
    assert spool.append(numbered(4, start=3)) == 0  # none taken: the caller drops them
    monkeypatch.undo()
    assert "cannot write" in caplog.text and "dropped" in caplog.text
    assert spool.bytes == before == sum(p.stat().st_size for p in tmp_path.glob("*.jsonl"))
    assert spool.pending == 3
    assert spool.append(numbered(2, start=7)) == 2
    assert [e["n"] for e in read_all(spool)] == [0, 1, 2, 7, 8]
    assert spool.corrupt == 0
    spool.close()


def test_a_segment_shorter_than_counted_does_not_stop_reading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A segment file that ends before the bytes counted for it (its tail lost) is read
    to its end, then the next segment: the events after it are not stuck forever."""
    spool = Spool(tmp_path, 64 * 1024)  # segments of 8 KiB
    assert spool.append(numbered(200)) == 200  # segments of 64, 64, 64 and 8 lines
    first = min(tmp_path.glob("*.jsonl"))
    os.truncate(first, 10 * LINE_BYTES)  # its first ten lines survive
    assert [e["n"] for e in read_all(spool)] == list(range(10)) + list(range(64, 200))
    assert "going on with the next segment" in caplog.text
    spool.close()


def test_sender_sleeps_when_counted_events_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool counts events its file no longer holds (lost tail): the sender finds
    nothing to read and must sleep, not spin at 100% CPU against the application."""
    spool = Spool(tmp_path / "spool", 1 << 20)
    assert spool.append(numbered(5)) == 5
    os.truncate(next((tmp_path / "spool").glob("*.jsonl")), 0)
    peeks = {"n": 0}
    real_peek, real_peek_lines = spool.peek, spool.peek_lines

    def counting_peek(limit: int) -> Any:
        peeks["n"] += 1
        return real_peek(limit)

    def counting_peek_lines(limit: int) -> Any:  # what a JSON-lines sink is fed from
        peeks["n"] += 1
        return real_peek_lines(limit)

    monkeypatch.setattr(spool, "peek", counting_peek)
    monkeypatch.setattr(spool, "peek_lines", counting_peek_lines)
    delivery = SpooledDelivery(JsonLinesSink(tmp_path / "events.jsonl"), spool, 100)
    time.sleep(1.0)
    looked = peeks["n"]
    delivery.close(2.0)
    assert looked <= 10, f"the sender looked at the spool {looked} times in one second"


def test_full_disk_writing_the_cursor_keeps_the_events_and_delivery_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: os.replace raising ENOSPC while the cursor file is replaced (disk
    full) for a while. The sender thread must survive (log, back off, go on) and
    deliver every event once the disk has room again: at least once, in order."""
    real_replace = os.replace
    failures = {"left": 3}

    def enospc_for_cursor(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if str(dst).endswith("cursor") and failures["left"] > 0:
            failures["left"] -= 1
            raise oserror(errno.ENOSPC)
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", enospc_for_cursor)
    events = tmp_path / "events.jsonl"
    exporter = OpenLineageSpanExporter(sink=JsonLinesSink(events),
                                       spool_dir=str(tmp_path / "spool"))
    run_jobs(exporter, ["job0", "job1"])
    wait_for(lambda: failures["left"] == 0, 30, "the cursor write failing three times")
    run_jobs(exporter, ["job2"])
    wait_for(lambda: exporter.stats["spool_pending"] == 0, 30, "the spool emptied")
    assert exporter.force_flush(10_000)
    jobs = delivered_jobs(events)
    firsts = list(dict.fromkeys(jobs))  # at least once: repeats allowed, order kept
    assert firsts == [(j, t) for j in ("job0", "job1", "job2") for t in ("START", "COMPLETE")]
    assert "cannot deliver from the spool" in caplog.text
    assert "ENOSPC" in caplog.text or "No space left" in caplog.text
    assert exporter.stats["spool_errors"] == 3
    exporter.shutdown()


def test_a_cursor_file_that_cannot_be_written_leaves_the_cursor_where_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: os.replace raising ENOSPC. The events stay the next ones to send
    (in memory as on disk), rather than being skipped by this process."""
    spool = Spool(tmp_path, 1 << 20)
    spool.append(numbered(3))
    events, position = spool.peek(10)

    def enospc(*args: Any, **kwargs: Any) -> None:
        raise oserror(errno.ENOSPC)

    monkeypatch.setattr(os, "replace", enospc)
    with pytest.raises(OSError):
        spool.commit(position, len(events))
    monkeypatch.undo()
    assert spool.pending == 3
    assert spool.peek(10)[0] == events
    spool.close()


@pytest.mark.parametrize("failures", [1, 2])
def test_close_retries_a_transient_failure_at_once_instead_of_leaving_the_events(
    tmp_path: Path, failures: int
) -> None:
    """A short-lived process (a job, a recycled worker) closes right after its last
    events while the backend had a transient fault: close retries at once (not after the
    0.5 s, 1 s, ... backoff), within its grace, and the events reach the backend."""
    sink = FailingSink(failures=failures)
    delivery = SpooledDelivery(sink, Spool(tmp_path / "spool", 1 << 20), 100,
                               retry_initial_seconds=30.0)  # a backoff close cannot wait out
    delivery.put_many([{"n": 1}, {"n": 2}])
    started = time.monotonic()
    assert delivery.close(10)
    took = time.monotonic() - started
    assert sink.received == [{"n": 1}, {"n": 2}]
    assert sink.attempts == failures + 2 and took < 10, (sink.attempts, took)
    left = Spool(tmp_path / "spool", 1 << 20)
    assert left.pending == 0
    left.close()


def test_close_gives_up_after_its_retries_and_keeps_the_events_spooled(tmp_path: Path) -> None:
    sink = FailingSink()  # down for good
    delivery = SpooledDelivery(sink, Spool(tmp_path / "spool", 1 << 20), 100,
                               retry_initial_seconds=30.0)
    delivery.put_many([{"n": 1}])
    started = time.monotonic()
    assert delivery.close(10)
    assert time.monotonic() - started < 5  # the retries, not the grace nor the backoff
    assert sink.attempts == 1 + CLOSE_RETRIES
    left = Spool(tmp_path / "spool", 1 << 20)
    assert left.pending == 1  # kept for the next start
    left.close()


def test_emfile_opening_a_segment_for_reading_does_not_stop_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: os.open raising EMFILE (too many open files) when the sender
    opens a segment for reading, twice. The sender survives and delivers afterwards."""
    real_os_open = os.open
    failures = {"left": 2}

    def emfile_for_reading(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".jsonl") and flags == os.O_RDONLY and failures["left"] > 0:
            failures["left"] -= 1
            raise oserror(errno.EMFILE)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", emfile_for_reading)
    events = tmp_path / "events.out"
    exporter = OpenLineageSpanExporter(sink=JsonLinesSink(events),
                                       spool_dir=str(tmp_path / "spool"))
    run_jobs(exporter, ["job0"])
    wait_for(lambda: len(delivered_jobs(events)) == 2, 30, "the job delivered")
    assert failures["left"] == 0
    assert "Too many open files" in caplog.text
    exporter.shutdown()


def test_an_unusable_spool_is_a_config_error_and_releases_its_lock(tmp_path: Path) -> None:
    """The cursor is a directory (say, a mistaken ``mkdir``): opening the spool is a
    ConfigError (the exporter logs it and runs without a spool), not a raw OSError in the
    application, and the directory is not left locked."""
    spool_dir = tmp_path / "spool"
    Spool(spool_dir, 1 << 20).close()
    (spool_dir / "cursor").mkdir()
    with pytest.raises(ConfigError, match="cannot use spool directory"):
        Spool(spool_dir, 1 << 20)
    (spool_dir / "cursor").rmdir()
    Spool(spool_dir, 1 << 20).close()  # not "in use by another process"


def test_an_unusable_spool_never_raises_into_the_app_at_exporter_construction(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "cursor").mkdir()
    events = tmp_path / "events.jsonl"
    exporter = OpenLineageSpanExporter(sink=JsonLinesSink(events), spool_dir=str(spool_dir))
    assert "delivering without a spool" in caplog.text
    run_jobs(exporter, ["job"])
    assert exporter.force_flush(10_000)
    assert delivered_jobs(events) == [("job", "START"), ("job", "COMPLETE")]
    exporter.shutdown()


def test_a_cursor_past_the_end_of_its_segment_after_a_power_loss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A power loss kept the cursor file but not the segment's tail it points behind.
    New events must not be written under the cursor (skipped, or read from mid-line)."""
    spool = Spool(tmp_path, 1 << 20)
    spool.append(numbered(3))
    _, position = spool.peek(10)
    spool.commit(position, 3)
    spool.close()
    os.truncate(next(tmp_path.glob("*.jsonl")), LINE_BYTES)  # one line survived the power loss
    reopened = Spool(tmp_path, 1 << 20)
    assert "points past the end of its segment" in caplog.text
    assert reopened.pending == 0
    reopened.append(numbered(2, start=3))
    assert [e["n"] for e in read_all(reopened)] == [3, 4]
    assert reopened.corrupt == 0
    reopened.close()


def test_stats_do_not_wait_for_a_slow_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: os.fsync taking 2 s (a slow disk) while a segment is closed. The
    application reading ``exporter.stats`` (a metrics endpoint) must not wait for it."""
    in_fsync = threading.Event()
    real_fsync: Callable[[int], None] = os.fsync

    def slow_fsync(fd: int) -> None:
        in_fsync.set()
        time.sleep(2.0)
        real_fsync(fd)

    exporter = OpenLineageSpanExporter(sink=JsonLinesSink(tmp_path / "events.jsonl"),
                                       spool_dir=str(tmp_path / "spool"),
                                       spool_max_bytes=32 * 1024)  # segments of 4 KiB
    monkeypatch.setattr(os, "fsync", slow_fsync)
    run_jobs(exporter, [f"job{i}" for i in range(20)])  # ~20 KiB of events: rolls
    assert in_fsync.wait(10)
    started = time.monotonic()
    stats = exporter.stats
    took = time.monotonic() - started
    assert took < 1.5, f"stats waited {took:.1f}s for the disk"
    assert stats["spool_bytes"] > 0
    monkeypatch.undo()
    exporter.shutdown()
