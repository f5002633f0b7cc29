"""The public surface, pinned: a rename fails here before it breaks a user."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import otel_sqla_lineage
from otel_sqla_lineage import attributes
from otel_sqla_lineage.package import _instruments

ROOT = Path(__file__).resolve().parent.parent


def test_package_exports() -> None:
    assert sorted(otel_sqla_lineage.__all__) == [
        "ConfigError", "LineageSampler", "LineageSettings", "OpenLineageSpanExporter",
        "OtelSqlaLineageError", "SQLAlchemyLineageInstrumentor", "UnsampledSpanProcessor",
        "__version__", "run_id_for",
    ]


def test_contract_attribute_keys() -> None:
    assert (attributes.DB_OPERATION_NAME, attributes.DB_COLLECTION_NAME,
            attributes.SQLALCHEMY_MAPPERS, attributes.SQLALCHEMY_TABLES_READ,
            attributes.SQLALCHEMY_TABLES_WRITTEN, attributes.SQLALCHEMY_SOURCE,
            attributes.OPENLINEAGE_RUN_ID) == (
        "db.operation.name", "db.collection.name", "db.sqlalchemy.mappers",
        "db.sqlalchemy.tables.read", "db.sqlalchemy.tables.written", "db.sqlalchemy.source",
        "openlineage.run.id")


def test_entry_points_are_registered() -> None:
    eps = importlib.metadata.entry_points()
    instrumentors = {e.name: e.value for e in eps.select(group="opentelemetry_instrumentor")}
    exporters = {e.name: e.value for e in eps.select(group="opentelemetry_traces_exporter")}
    assert instrumentors["sqlalchemy_lineage"] == (
        "otel_sqla_lineage.instrumentor:SQLAlchemyLineageInstrumentor")
    assert exporters["openlineage"] == "otel_sqla_lineage.exporter:OpenLineageSpanExporter"
    samplers = {e.name: e.value for e in eps.select(group="opentelemetry_traces_sampler")}
    assert samplers["lineage_parentbased_traceidratio"] == (
        "otel_sqla_lineage.sampling:lineage_parentbased_traceidratio")
    hooks = {e.name: e.value for e in eps.select(group="opentelemetry_post_instrument")}
    assert hooks["otel_sqla_lineage"] == (
        "otel_sqla_lineage.autoconfig:attach_unsampled_span_processor")


def test_instruments_extra_matches_the_dependency_check() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    extra = re.search(r'instruments = \["([^"]+)"\]', pyproject)
    assert extra is not None
    assert _instruments == (extra.group(1),)


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    commands = [line for line in readme[:6] if line.startswith("./scripts/")]
    assert [c.split()[0] for c in commands] == ["./scripts/demo.sh", "./scripts/test.sh"]
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_run_id_is_the_documented_uuid5() -> None:
    import uuid

    trace_id, span_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    documented = uuid.uuid5(uuid.UUID("5a2cde9c-eb3f-5eae-95e2-86bf67b8a06d"),
                            "4bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b7")
    assert otel_sqla_lineage.run_id_for(trace_id, span_id) == str(documented)
    assert "5a2cde9c-eb3f-5eae-95e2-86bf67b8a06d" in (ROOT / "README.md").read_text()


def test_package_docstring_example_runs_as_written(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys
    import textwrap

    doc = otel_sqla_lineage.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\nEach statement", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(textwrap.dedent(block))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENLINEAGE"))}
    env["HOME"] = str(tmp_path)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line)
              for line in (tmp_path / "openlineage_events.jsonl").read_text().splitlines()]
    assert [(e["eventType"], e["job"]["name"]) for e in events] == [
        ("START", "unknown_service:python.nightly_report"),
        ("COMPLETE", "unknown_service:python.nightly_report")]
    assert [d["name"] for d in events[1]["outputs"]] == ["report"]
