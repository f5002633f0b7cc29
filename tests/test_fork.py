"""Forked workers (``gunicorn --preload``, multiprocessing): the exporter made in the
parent keeps working in each child, behind the SDK's BatchSpanProcessor (which restarts
its own thread at fork). A child never shares the parent's spool; it says so once and
delivers without one."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import switchable_lineage_backend
from procs.otlp_tools import clean_env
from spanfactory import sqlite_statement

from otel_sqla_lineage.delivery import JsonLinesSink
from otel_sqla_lineage.pipeline import LineagePipeline
from otel_sqla_lineage.settings import LineageSettings
from otel_sqla_lineage.spans import SpanView
from otel_sqla_lineage.spool import Spool

PROCS = Path(__file__).resolve().parent / "procs"


@pytest.mark.subprocess
@pytest.mark.parametrize("spooled", [False, True], ids=["queue", "spool"])
def test_a_forked_child_delivers_its_own_events(tmp_path: Path, spooled: bool) -> None:
    spool = tmp_path / "spool"
    with switchable_lineage_backend() as backend:
        env = clean_env(OPENLINEAGE_URL=backend.url,
                        FORK_CHILD_REPORT=str(tmp_path / "child.txt"))
        if spooled:
            env["OTEL_SQLA_LINEAGE_SPOOL_DIR"] = str(spool)
        result = subprocess.run([sys.executable, str(PROCS / "forking_app.py")],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path,
                                env=env)
        accepted = list(backend.accepted)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["child_exit"] == 0
    # delivered, not waited for until the exporter's 30 s close timeout
    assert report["child_shutdown_seconds"] < 10, report
    jobs = [(e["job"]["name"].rpartition(".")[2], e["eventType"]) for e in accepted]
    assert sorted(jobs) == sorted((name, kind)
                                  for name in ("parent_before", "child_job", "parent_after")
                                  for kind in ("START", "COMPLETE")), jobs
    assert jobs.index(("child_job", "START")) < jobs.index(("child_job", "COMPLETE"))
    if spooled:
        warnings = [line for line in result.stderr.splitlines()
                    if "delivering without a spool here" in line]
        assert len(warnings) == 1, result.stderr[-3000:]
        assert "OTEL_SQLA_LINEAGE_SPOOL_DIR" in warnings[0]
        # the parent's spool is intact and drained: the child did not touch it
        left = Spool(spool, 1 << 20)
        assert left.pending == 0
        left.close()
    else:
        assert "spool" not in result.stderr


def test_the_apps_thread_does_not_wait_for_a_whole_export_batch(tmp_path: Path) -> None:
    """While the export thread converts a batch of 512 spans, a span ended on the app's
    thread (the light path for sampled-out statements) goes in between, not after."""
    pipeline = LineagePipeline(LineageSettings(), JsonLinesSink(tmp_path / "events.out"))
    app_done = threading.Event()
    waited: list[bool] = []

    def app_thread() -> None:
        pipeline.add([sqlite_statement(9999, None, sql="SELECT 1", operation="SELECT",
                                       trace_id=0x99)])
        app_done.set()

    def export_batch() -> Iterator[SpanView]:
        for i in range(1, 513):
            if i == 10:
                threading.Thread(target=app_thread).start()
                waited.append(app_done.wait(5))
            yield sqlite_statement(i, None, sql="SELECT * FROM books", operation="SELECT",
                                   read=("books",))

    assert pipeline.add(export_batch()) == 0
    assert waited == [True], "the app's span waited for the whole batch"
    assert pipeline.flush(10)
    pipeline.close(10)
