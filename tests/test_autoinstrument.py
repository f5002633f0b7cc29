"""``opentelemetry-instrument`` with our entry point (``sqlalchemy_lineage``) and upstream's
(``sqlalchemy``): exactly one span per statement, carrying our attributes, whichever loads
first; on SQLAlchemy 2.1, where upstream alone refuses to instrument, ours still traces.

Each test runs a small application in a child process under the venv's
``opentelemetry-instrument`` with ``OTEL_TRACES_EXPORTER=console`` and parses the printed
spans. The load order is forced by a throw-away distribution first on ``PYTHONPATH`` whose
only content is the two entry points in the wanted order (opentelemetry-instrument loads
entry points in distribution order; the real ones that load later find the work done).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from autoinstrument_support import BOOK_APP_MODEL, console_spans
from instrumentor_support import SQLA_VERSION

pytestmark = pytest.mark.subprocess

BIN = Path(sys.executable).parent
OURS = "sqlalchemy_lineage = otel_sqla_lineage.instrumentor:SQLAlchemyLineageInstrumentor"
UPSTREAM = "sqlalchemy = opentelemetry.instrumentation.sqlalchemy:SQLAlchemyInstrumentor"
CONTRACT_KEYS = (
    "db.operation.name",
    "db.collection.name",
    "db.sqlalchemy.mappers",
    "db.sqlalchemy.tables.read",
    "db.sqlalchemy.tables.written",
    "db.sqlalchemy.source",
)

APP = "import json\n" + BOOK_APP_MODEL + textwrap.dedent(
    """
    executed = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: executed.append(statement))
    Base.metadata.create_all(engine)
    first_app_statement = len(executed)
    with Session(engine) as session:
        session.add(Book(id=1, title="Dune"))
        session.commit()
        titles = session.scalars(select(Book.title)).all()
    assert titles == ["Dune"], titles

    from otel_sqla_lineage.instrumentor import SQLAlchemyLineageInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    print("APP-REPORT " + json.dumps({
        "statements": executed,
        "first_app_statement": first_app_statement,
        "ours_instrumented": SQLAlchemyLineageInstrumentor().is_instrumented_by_opentelemetry,
        "ours_instrumented_upstream": getattr(
            SQLAlchemyLineageInstrumentor(), "_instrumented_upstream", None),
        "upstream_instrumented": SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry,
    }), file=sys.stderr)
    """
)

INSERT_BOOK = {
    "db.operation.name": "INSERT",
    "db.collection.name": "books",
    "db.sqlalchemy.mappers": ["__main__.Book"],
    "db.sqlalchemy.tables.written": ["books"],
    "db.sqlalchemy.source": "orm",
}
SELECT_TITLES = {
    "db.operation.name": "SELECT",
    "db.collection.name": "books",
    "db.sqlalchemy.mappers": ["__main__.Book"],
    "db.sqlalchemy.tables.read": ["books"],
    "db.sqlalchemy.source": "orm",
}


def _order_distribution(directory: Path, entry_points: list[str]) -> Path:
    dist = directory / "zz_load_order-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: zz-load-order\nVersion: 0.0.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\n" + "\n".join(entry_points) + "\n"
    )
    return directory


def _run_app(tmp_path: Path, *, disabled: str | None = None,
             first: list[str] | None = None) -> tuple[list[dict], dict]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTHONPATH"))}
    env.update(
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SERVICE_NAME="autoinstrument-test",
    )
    if disabled is not None:
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = disabled
    if first is not None:
        env["PYTHONPATH"] = str(_order_distribution(tmp_path / "order", first))
    proc = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "python"), str(script),
         str(tmp_path / "app.db")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    reports = [line for line in proc.stderr.splitlines() if line.startswith("APP-REPORT ")]
    assert len(reports) == 1, proc.stderr[-4000:]
    return console_spans(proc.stdout), json.loads(reports[0].removeprefix("APP-REPORT "))


def _statement_spans(spans: list[dict], report: dict) -> list[dict]:
    """Spans of the application's statements (the session's, after create_all), having checked
    that the process printed exactly one span per statement the driver ran, in order."""
    statement_spans = sorted(
        (s for s in spans if "db.statement" in s["attributes"]), key=lambda s: s["start_time"]
    )
    assert [s["attributes"]["db.statement"] for s in statement_spans] == report["statements"]
    return statement_spans[report["first_app_statement"]:]


def _lineage(span: dict) -> dict:
    return {k: span["attributes"][k] for k in CONTRACT_KEYS if k in span["attributes"]}


def _assert_one_enriched_span_per_statement(spans: list[dict], report: dict) -> None:
    app_spans = _statement_spans(spans, report)
    # the flush's INSERT, then the SELECT
    assert [_lineage(s) for s in app_spans] == [INSERT_BOOK, SELECT_TITLES]
    for span in app_spans:
        assert span["attributes"]["openlineage.run.id"]


def test_both_entry_points_in_installation_order_give_one_enriched_span_per_statement(
    tmp_path,
):
    spans, report = _run_app(tmp_path)

    _assert_one_enriched_span_per_statement(spans, report)
    assert report["ours_instrumented"] is True


def test_upstream_loaded_first_then_ours_gives_one_enriched_span_per_statement(tmp_path):
    spans, report = _run_app(tmp_path, first=[UPSTREAM, OURS])

    # upstream instrumented itself; ours found it done and only added its listeners
    assert report["ours_instrumented_upstream"] is False
    _assert_one_enriched_span_per_statement(spans, report)


def test_ours_loaded_first_then_upstream_gives_one_enriched_span_per_statement(tmp_path):
    spans, report = _run_app(tmp_path, first=[OURS, UPSTREAM])

    # ours instrumented upstream itself; upstream's own entry point then had nothing to do
    assert report["ours_instrumented_upstream"] is True
    _assert_one_enriched_span_per_statement(spans, report)


def test_ours_alone_with_upstream_entry_point_disabled_gives_one_enriched_span(tmp_path):
    spans, report = _run_app(tmp_path, disabled="sqlalchemy")

    assert report["ours_instrumented"] is True
    _assert_one_enriched_span_per_statement(spans, report)


def test_upstream_alone_gives_spans_without_our_attributes_and_none_on_2_1(tmp_path):
    spans, report = _run_app(tmp_path, disabled="sqlalchemy_lineage")

    assert report["ours_instrumented"] is False
    if SQLA_VERSION >= (2, 1):
        # upstream's dependency check refuses SQLAlchemy 2.1: no statement is traced at all,
        # which is why ours must drive it past that check
        assert report["upstream_instrumented"] is False
        assert [s for s in spans if "db.statement" in s["attributes"]] == []
    else:
        assert report["upstream_instrumented"] is True
        app_spans = _statement_spans(spans, report)
        assert [_lineage(s) for s in app_spans] == [{}, {}]
