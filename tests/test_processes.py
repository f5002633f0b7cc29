"""Lineage across process boundaries: a child continuing the caller's trace names the
caller's run as its parent; an unmodified app under opentelemetry-instrument gets lineage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Lineage
from opentelemetry import propagate
from spanfactory import expected_run_id

pytestmark = pytest.mark.subprocess

PROCS = Path(__file__).parent / "procs"
BIN = Path(sys.executable).parent


def read_events(path: Path) -> list[dict[str, Any]]:
    assert path.exists(), f"no lineage file at {path}"
    return [json.loads(line) for line in path.read_text().splitlines()]


def child_env(events: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "OPENLINEAGE"))}
    env["OTEL_SQLA_LINEAGE_FILE"] = str(events)
    return env


def test_child_process_run_names_the_parent_process_run(lineage: Lineage, tmp_path: Path) -> None:
    child_events = tmp_path / "child.jsonl"
    child = subprocess.Popen(
        [sys.executable, str(PROCS / "child_service.py"), str(tmp_path / "child.db")],
        stdout=subprocess.PIPE, text=True, env=child_env(child_events),
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'parent.db'}")
        with lineage.tracer.start_as_current_span("sync_catalog") as span:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE orders (id INTEGER)")
            headers: dict[str, str] = {}
            propagate.inject(headers)
            request = urllib.request.Request(f"http://127.0.0.1:{port}/load", data=b"",
                                             headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
    parent_run = expected_run_id(span.get_span_context().trace_id,
                                 span.get_span_context().span_id)
    parent_events = lineage.runs()["library.sync_catalog"]
    assert {e["run"]["runId"] for e in parent_events} == {parent_run}

    children = [e for e in read_events(child_events) if e["job"]["name"] == "catalog.load_books"]
    assert [e["eventType"] for e in children] == ["START", "COMPLETE"]
    facets = children[1]["run"]["facets"]
    assert facets["parent"]["run"]["runId"] == parent_run
    assert facets["opentelemetry"]["traceId"] == f"{span.get_span_context().trace_id:032x}"
    assert facets["opentelemetry"]["parentSpanId"] == f"{span.get_span_context().span_id:016x}"
    assert [d["name"] for d in children[1]["outputs"]] == ["books"]


def test_unmodified_app_under_opentelemetry_instrument_produces_lineage(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    env = child_env(events_file)
    env.update(
        OTEL_SERVICE_NAME="plain-app",
        OTEL_TRACES_EXPORTER="console,openlineage",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
    )
    result = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(PROCS / "plain_app.py"),
         str(tmp_path / "plain.db")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "pages: ['/home']" in result.stdout
    completes = {e["job"]["name"]: e for e in read_events(events_file)
                 if e["eventType"] == "COMPLETE"}
    assert set(completes) >= {"plain-app.CREATE TABLE visits", "plain-app.INSERT visits",
                              "plain-app.SELECT visits"}
    assert [d["name"] for d in completes["plain-app.INSERT visits"]["outputs"]] == ["visits"]
    assert [d["name"] for d in completes["plain-app.SELECT visits"]["inputs"]] == ["visits"]
    assert "/home" not in events_file.read_text()  # a bound value
    # the console exporter printed the same spans, with our attributes on them
    assert '"db.sqlalchemy.tables.written"' in result.stdout
