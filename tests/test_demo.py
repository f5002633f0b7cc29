"""The main job as the README runs it: the demo prints statement spans with their lineage,
writes lineage a user can read, and ends with a readable summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess


def test_demo_writes_lineage_and_prints_a_summary(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENLINEAGE"))}
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "otel_sqla_lineage.demo", "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "statement: operation=INSERT table=book_history written=book_history " \
           "mappers=otel_sqla_lineage.demo.models.BookHistory source=orm run=" in out
    assert "failed as intended: BookUnavailable" in out
    assert "20 events, 10 runs" in out
    summary = {line.split()[0]: line.split()[1] for line in out.splitlines()
               if line.startswith("library.")}
    assert summary["library.register_user"] == "FAIL"
    assert summary["library.reading_report"] == "COMPLETE"
    events = [json.loads(line) for line in
              (tmp_path / "out" / "openlineage_events.jsonl").read_text().splitlines()]
    states = [(e["job"]["name"], e["eventType"]) for e in events
              if e["job"]["name"] == "library.checkout_book"]
    assert [state for _, state in states] == ["START", "COMPLETE"] * 2 + ["START", "FAIL"]


def test_demo_help_describes_its_options() -> None:
    result = subprocess.run([sys.executable, "-m", "otel_sqla_lineage.demo", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--database", "--output-dir", "--granularity", "--quiet"):
        assert option in result.stdout
