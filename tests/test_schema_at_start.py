"""Emit-at-start (``emit_schema_at_start`` / ``OTEL_SQLA_LINEAGE_EMIT_SCHEMA_AT_START``): the
instrumented app announces every mapped table once per engine, before the engine's first
statement runs, through the same transport resolution as the exporter (here: the default
JSON-lines file). SQLite files; models are declared after ``instrument()``, as they are
under ``opentelemetry-instrument``."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from autoinstrument_support import BOOK_APP_MODEL
from conftest import Traced, make_traced
from olspec import validate_event
from sqlalchemy import Column, ForeignKey, Integer, String, Table, event
from sqlalchemy.orm import Session, configure_mappers, declarative_base

from otel_sqla_lineage import ConfigError, LineageSettings
from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor


@dataclass
class AtStart:
    instrumentor: SQLAlchemyLineageInstrumentor
    traced: Traced
    events_file: Path

    def events(self) -> list[dict[str, Any]]:
        at_start = self.instrumentor._schema_at_start
        assert at_start is not None and at_start.flush(10.0)
        if not self.events_file.exists():
            return []
        return [json.loads(line) for line in self.events_file.read_text().splitlines()]

    def datasets(self, namespace: str) -> dict[str, dict[str, Any]]:
        return {e["dataset"]["name"]: e["dataset"] for e in self.events()
                if e["dataset"]["namespace"] == namespace}


@pytest.fixture
def at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AtStart]:
    monkeypatch.chdir(tmp_path)  # no openlineage.yml around
    for name in ("OPENLINEAGE_URL", "OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED",
                 "OPENLINEAGE__TRANSPORT__TYPE"):
        monkeypatch.delenv(name, raising=False)
    events_file = tmp_path / "schema_events.jsonl"
    monkeypatch.setenv("OTEL_SQLA_LINEAGE_FILE", str(events_file))
    traced = make_traced()
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=traced.provider, emit_schema_at_start=True)
    try:
        yield AtStart(instrumentor, traced, events_file)
    finally:
        instrumentor.uninstrument()


def sqlite_namespace(path: Path) -> str:
    return f"sqlite://{socket.gethostname()}{path.resolve()}"


def declare_models() -> Any:
    """Declared after instrument(): a mapped class, a joined-inheritance child and an
    association table."""
    Base = declarative_base()
    links = Table("ats_links", Base.metadata,
                  Column("a_id", Integer, ForeignKey("ats_authors.id"), primary_key=True),
                  Column("w_id", Integer, ForeignKey("ats_works.id"), primary_key=True))

    class Author(Base):  # type: ignore[valid-type,misc]
        __tablename__ = "ats_authors"
        id = Column(Integer, primary_key=True)
        name = Column(String(80), nullable=False, comment="as printed")

    class Work(Base):  # type: ignore[valid-type,misc]
        __tablename__ = "ats_works"
        id = Column(Integer, primary_key=True)
        kind = Column(String(10), nullable=False)
        __mapper_args__ = {"polymorphic_on": kind, "polymorphic_identity": "work"}  # noqa: RUF012

    class Poem(Work):
        __tablename__ = "ats_poems"
        id = Column(Integer, ForeignKey("ats_works.id"), primary_key=True)
        lines = Column(Integer)
        __mapper_args__ = {"polymorphic_identity": "poem"}  # noqa: RUF012

    assert links is not None
    return Base, Author, Poem


def test_every_mapped_table_is_announced_before_the_first_statement_runs(
    at_start: AtStart, tmp_path: Path
) -> None:
    Base, Author, _ = declare_models()
    db = tmp_path / "app.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    seen_before_first_statement: list[dict[str, dict[str, Any]]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def first(*_: Any) -> None:  # an engine listener: runs after ours
        if not seen_before_first_statement:
            seen_before_first_statement.append(at_start.datasets(sqlite_namespace(db)))

    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Author(name="Szymborska"))
        session.commit()
    announced = seen_before_first_statement[0]
    assert {"ats_authors", "ats_works", "ats_poems", "ats_links"} <= set(announced)
    authors = announced["ats_authors"]["facets"]
    assert authors["schema"]["fields"] == [
        {"fields": [], "name": "id", "type": "INTEGER"},
        {"description": "as printed", "fields": [], "name": "name", "type": "VARCHAR(80)"},
    ]
    assert authors["dataSource"]["name"] == sqlite_namespace(db)
    assert authors["sqlalchemyTable"]["columns"] == [
        {"name": "id", "nullable": False}, {"name": "name", "nullable": False}]
    assert announced["ats_links"]["facets"]["sqlalchemyTable"]["primaryKey"] == [
        "a_id", "w_id"]
    for event_ in at_start.events():
        validate_event(event_)
    engine.dispose()


def test_each_table_is_announced_once_per_engine_and_late_models_at_configuration(
    at_start: AtStart, tmp_path: Path
) -> None:
    Base, Author, _ = declare_models()
    first_db, second_db = tmp_path / "one.db", tmp_path / "two.db"
    one = sa.create_engine(f"sqlite:///{first_db}")
    two = sa.create_engine(f"sqlite:///{second_db}")
    for engine in (one, two, one):
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.query(Author).all()
    LateBase = declarative_base()

    class Late(LateBase):  # type: ignore[valid-type,misc]
        __tablename__ = "ats_late"
        id = Column(Integer, primary_key=True)

    configure_mappers()  # what the first query of Late would do
    names = [(e["dataset"]["namespace"], e["dataset"]["name"]) for e in at_start.events()]
    for db in (first_db, second_db):
        ours = [n for ns, n in names if ns == sqlite_namespace(db) and n.startswith("ats_")]
        assert sorted(ours) == ["ats_authors", "ats_late", "ats_links", "ats_poems",
                                "ats_works"]
    assert len(names) == len(set(names))
    one.dispose()
    two.dispose()


def test_a_transport_that_cannot_be_built_is_logged_and_the_app_runs_on(
    at_start: AtStart, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "no-such-transport")
    Base, Author, _ = declare_models()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with caplog.at_level(logging.WARNING, logger="otel_sqla_lineage.schema_at_start"):
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            assert session.query(Author).all() == []
    assert "schema events at start failed" in caplog.text
    engine.dispose()


def test_off_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTEL_SQLA_LINEAGE_EMIT_SCHEMA_AT_START", raising=False)
    traced = make_traced()
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=traced.provider)
    try:
        Base, _, _ = declare_models()
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
        Base.metadata.create_all(engine)
        assert instrumentor._schema_at_start is None
        assert not (tmp_path / "openlineage_events.jsonl").exists()
        engine.dispose()
    finally:
        instrumentor.uninstrument()


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("No", False)])
def test_the_setting_reads_booleans_from_the_environment(raw: str, expected: bool) -> None:
    settings = LineageSettings.from_env({"OTEL_SQLA_LINEAGE_EMIT_SCHEMA_AT_START": raw})
    assert settings.emit_schema_at_start is expected


def test_a_malformed_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OTEL_SQLA_LINEAGE_EMIT_SCHEMA_AT_START='maybe'"):
        LineageSettings.from_env({"OTEL_SQLA_LINEAGE_EMIT_SCHEMA_AT_START": "maybe"})


def test_announced_datasets_are_the_datasets_of_the_run_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same namespace, name and column types as the runtime path gives the table."""
    from conftest import make_lineage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OTEL_SQLA_LINEAGE_FILE", str(tmp_path / "schema_events.jsonl"))
    lineage = make_lineage(tmp_path)
    instrumentor = SQLAlchemyLineageInstrumentor()
    instrumentor.instrument(tracer_provider=lineage.traced.provider, emit_schema_at_start=True)
    try:
        Base, Author, _ = declare_models()
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
        Base.metadata.create_all(engine)
        with lineage.tracer.start_as_current_span("list_authors"), Session(engine) as session:
            session.query(Author).all()
        run_inputs = {(d["namespace"], d["name"]): d["facets"]
                      for e in lineage.events() for d in e["inputs"]}
        at_start = AtStart(instrumentor, lineage.traced, tmp_path / "schema_events.jsonl")
        announced = {(e["dataset"]["namespace"], e["dataset"]["name"]): e["dataset"]["facets"]
                     for e in at_start.events()}
        key = (sqlite_namespace(tmp_path / "app.db"), "ats_authors")
        assert key in run_inputs and key in announced
        assert announced[key]["dataSource"] == run_inputs[key]["dataSource"]
        assert [(f["name"], f["type"]) for f in announced[key]["schema"]["fields"]] == [
            (f["name"], f["type"]) for f in run_inputs[key]["schema"]["fields"]]
        engine.dispose()
    finally:
        instrumentor.uninstrument()
        lineage.traced.provider.shutdown()


AUTO_APP = BOOK_APP_MODEL + """
Base.metadata.create_all(engine)
with Session(engine) as session:
    session.add(Book(id=1, title="Dune"))
    session.commit()
    assert session.scalars(select(Book.title)).all() == ["Dune"]
"""


@pytest.mark.subprocess
def test_under_opentelemetry_instrument_the_tables_come_before_the_runs(tmp_path: Path) -> None:
    """The usual deployment: instrumentation first, the app's models imported after."""
    import os
    import subprocess
    import sys

    (tmp_path / "app.py").write_text(AUTO_APP)
    events_file = tmp_path / "lineage.jsonl"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENLINEAGE", "OTEL_"))}
    env.update(OTEL_SQLA_LINEAGE_EMIT_SCHEMA_AT_START="true",
               OTEL_SQLA_LINEAGE_FILE=str(events_file), OTEL_TRACES_EXPORTER="openlineage",
               OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none",
               OTEL_SERVICE_NAME="library")
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    proc = subprocess.run([str(instrument), sys.executable, "app.py", str(tmp_path / "l.db")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    kinds = ["dataset" if "dataset" in e else "run" for e in events]
    assert kinds[0] == "dataset" and "run" in kinds
    first_run = kinds.index("run")
    assert "dataset" not in kinds[first_run:]
    (books,) = [e["dataset"] for e in events[:first_run] if e["dataset"]["name"] == "books"]
    assert books["namespace"] == sqlite_namespace(tmp_path / "l.db")
    assert books["facets"]["sqlalchemyTable"]["mappedClasses"] == ["__main__.Book"]
