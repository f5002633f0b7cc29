"""Forked workers (``gunicorn --preload``, multiprocessing): the exporter made in the
parent keeps working in each child, behind the SDK's BatchSpanProcessor (which restarts
its own thread at fork). A child never shares the parent's spool: it claims a worker slot
of the same directory, and what a worker that died left there is delivered by the
process that takes the slot next."""

from __future__ import annotations

import json
import os
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
        # the child spooled in a slot of its own; both spools are drained
        assert sorted(p.name for p in spool.iterdir() if p.is_dir()) == ["worker-1"]
        for directory in (spool, spool / "worker-1"):
            left = Spool(directory, 1 << 20)
            assert left.pending == 0, directory
            left.close()
        assert "without a spool" not in result.stderr, result.stderr[-3000:]
    else:
        assert "spool" not in result.stderr


def run_pool(tmp_path: Path, url: str, generation: str, worker_exit: str) -> str:
    """tests/procs/worker_pool.py: a parent and two forked workers, killed or not. Returns
    their log."""
    result = subprocess.run(
        [sys.executable, str(PROCS / "worker_pool.py")], capture_output=True, text=True,
        timeout=120, cwd=tmp_path,
        env=clean_env(OPENLINEAGE_URL=url, OTEL_SQLA_LINEAGE_SPOOL_DIR=str(tmp_path / "spool"),
                      GENERATION=generation, WORKERS="2", WORKER_EXIT=worker_exit))
    assert result.returncode == 0, result.stderr[-3000:]
    codes = [-9, -9] if worker_exit == "crash" else [0, 0]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"child_exits": codes}
    return result.stderr


def pending(directory: Path) -> int:
    spool = Spool(directory, 1 << 20)
    try:
        return spool.pending
    finally:
        spool.close()


@pytest.mark.subprocess
def test_workers_killed_during_an_outage_leave_their_events_for_the_next_workers(
    tmp_path: Path,
) -> None:
    """One OTEL_SQLA_LINEAGE_SPOOL_DIR for a pre-forked pool: each worker spools in a slot
    of its own. Workers that die while the backend is down keep their events on disk; the
    next pool, backend back, takes the same slots and delivers them, each run in order."""
    spool = tmp_path / "spool"
    with switchable_lineage_backend(status=503) as backend:
        first_log = run_pool(tmp_path, backend.url, "first", worker_exit="crash")
        assert backend.accepted == [] and backend.refused > 0
        slots = sorted(p.name for p in spool.iterdir() if p.is_dir())
        assert slots == ["worker-1", "worker-2"]
        # each worker's run (START, COMPLETE) and the parent's wait on disk
        assert [pending(spool / s) for s in slots] == [2, 2] and pending(spool) == 2

        backend.status = 200
        second_log = run_pool(tmp_path, backend.url, "second", worker_exit="clean")
        accepted = [(e["job"]["name"].rpartition(".")[2], e["eventType"])
                    for e in backend.accepted]
    names = [f"{generation}_{who}" for generation in ("first", "second")
             for who in ("worker0", "worker1", "parent")]
    assert sorted(accepted) == sorted((n, t) for n in names for t in ("START", "COMPLETE")), \
        f"first pool:\n{first_log[-3000:]}\nsecond pool:\n{second_log[-3000:]}"
    for name in names:
        assert accepted.index((name, "START")) < accepted.index((name, "COMPLETE")), accepted
    assert sorted(p.name for p in spool.iterdir() if p.is_dir()) == slots  # the same slots
    assert [pending(d) for d in (spool, spool / "worker-1", spool / "worker-2")] == [0, 0, 0]


@pytest.mark.subprocess
def test_forks_while_the_spool_is_read_never_hang_the_child(tmp_path: Path) -> None:
    """The parent's sender reads its spool all the time while the process forks 60 times:
    every child must get through the fork hooks (which let go of the parent's spool). A
    buffered reader's lock held by the parent's thread at the fork hung about one child in
    60 here, until segments were read with os.pread."""
    result = subprocess.run(
        [sys.executable, str(PROCS / "fork_while_reading.py"), str(tmp_path / "spool")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["forks"] == 60 and report["delivered_meanwhile"] > 0, report
    assert report["hung"] == 0, report


def test_a_fork_that_emits_nothing_takes_no_spool_slot(tmp_path: Path) -> None:
    """A fork that is no worker (``subprocess`` with ``preexec_fn``, a daemonising double
    fork, a ``multiprocessing`` helper) must not claim a slot nor send a dead worker's
    backlog: the slot is claimed at the child's first event."""
    spool = tmp_path / "spool"
    pipeline = LineagePipeline(LineageSettings(spool_dir=str(spool)),
                               JsonLinesSink(tmp_path / "events.out"))
    pid = os.fork()
    if pid == 0:  # the child: close at once, as an exiting helper would
        code = 1
        try:
            code = 0 if pipeline.close(5) and not (spool / "worker-1").exists() else 3
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert [p.name for p in spool.iterdir() if p.is_dir()] == []
    assert pipeline.close(5)


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
