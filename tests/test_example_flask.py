"""examples/flask_two_binds end to end, as a user runs it: the bookshop (Flask +
Flask-SQLAlchemy, users in a SQLite file, books and loans in the project's PostgreSQL) in a
child process under the venv's ``opentelemetry-instrument`` with Flask's instrumentation,
real HTTP requests, SIGTERM, then the events file and the app's output.

Only on SQLAlchemy 2.0 and 2.1: Flask-SQLAlchemy 3.1 requires SQLAlchemy >= 2.0.16, so
scripts/bootstrap.sh installs requirements/examples-flask.txt in those environments only. On
2.x a missing Flask fails the tests (the app cannot start), it never skips them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from autoinstrument_support import console_spans
from instrumentor_support import SQLA_VERSION
from procs.otlp_tools import clean_env, stop, wait_for

if SQLA_VERSION < (2, 0):
    pytest.skip("Flask-SQLAlchemy 3.1 requires SQLAlchemy >= 2.0.16: the Flask example is "
                "installed and tested in the SQLAlchemy 2.0 and 2.1 environments only",
                allow_module_level=True)

pytestmark = [pytest.mark.subprocess, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "flask_two_binds"
BIN = Path(sys.executable).parent
SERVICE = "bookshop"
# the README's run-ID scheme, written out here rather than taken from the package
RUN_ID_NAMESPACE = uuid.UUID("5a2cde9c-eb3f-5eae-95e2-86bf67b8a06d")

# (method, path, JSON body, the status the bookshop must answer), in order
REQUESTS: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/health", None, 200),
    ("POST", "/users", {"name": "Ada", "email": "ada@example.org"}, 201),
    ("POST", "/books", {"title": "Dune", "author": "Frank Herbert", "copies": 1}, 201),
    ("GET", "/books", None, 200),
    ("POST", "/loans", {"email": "ada@example.org", "title": "Dune"}, 201),
    ("POST", "/loans", {"email": "ada@example.org", "title": "Dune"}, 500),
    ("POST", "/users", {"name": "Ada again", "email": "ada@example.org"}, 409),
    ("GET", "/loans", None, 200),
]


@dataclass
class Datasets:
    """The datasets the bookshop must report, named by hand from the two database URLs."""

    pg: str
    books: tuple[str, str]
    loans: tuple[str, str]
    users: tuple[str, str]


@dataclass
class BookshopRun:
    statuses: list[int]
    events: list[dict[str, Any]]
    events_text: str
    stdout: str
    stderr: str
    exit_code: int
    password: str
    ds: Datasets

    def runs(self) -> list[list[dict[str, Any]]]:
        """Events grouped by runId, runs in the order they started."""
        by_run: dict[str, list[dict[str, Any]]] = {}
        for event in sorted(self.events, key=lambda e: e["eventTime"]):
            by_run.setdefault(event["run"]["runId"], []).append(event)
        return list(by_run.values())


def _datasets(postgres_url: str, schema: str, users_db: Path) -> Datasets:
    url = sa.make_url(postgres_url)
    pg = f"postgres://{url.host}:{url.port}"
    return Datasets(
        pg=pg,
        books=(pg, f"{url.database}.{schema}.books"),
        loans=(pg, f"{url.database}.{schema}.loans"),
        users=(f"sqlite://{socket.gethostname()}{users_db}", "users"),
    )


def _send(base: str, method: str, path: str, body: dict[str, Any] | None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def _drop_schema(postgres_url: str, schema: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def bookshop(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BookshopRun]:
    """One run of the bookshop under opentelemetry-instrument (console + openlineage
    exporters), REQUESTS sent to it, then SIGTERM; its own PostgreSQL schema, dropped after."""
    tmp = tmp_path_factory.mktemp("bookshop")
    schema = f"bookshop_test_{os.getpid()}"
    users_db = tmp / "users.db"
    events_file = tmp / "events.jsonl"
    env = clean_env(
        BOOKSHOP_BOOKS_DATABASE_URL=postgres_url,
        BOOKSHOP_USERS_DATABASE_URL=f"sqlite:///{users_db}",
        BOOKSHOP_PG_SCHEMA=schema,
        OTEL_SERVICE_NAME=SERVICE,
        OTEL_TRACES_EXPORTER="console,openlineage",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_SQLA_LINEAGE_FILE=str(events_file),
    )
    stdout_file, stderr_file = tmp / "app.out", tmp / "app.err"
    _drop_schema(postgres_url, schema)
    try:
        with stdout_file.open("w") as out, stderr_file.open("w") as err:
            proc = subprocess.Popen(
                [str(BIN / "opentelemetry-instrument"), str(BIN / "python"),
                 str(EXAMPLE / "app.py"), "--port", "0"],
                stdout=out, stderr=err, env=env, cwd=tmp,
            )
        try:
            def listening() -> str | None:
                assert proc.poll() is None, f"the bookshop exited:\n{stderr_file.read_text()}"
                found = re.search(r"listening on (http://\S+)", stderr_file.read_text())
                return found.group(1) if found else None

            base = wait_for(listening, 60, "the bookshop's 'listening on' line")
            statuses = [_send(base, method, path, body) for method, path, body, _ in REQUESTS]
        finally:
            exit_code = stop(proc, timeout=30)
        events_text = events_file.read_text() if events_file.exists() else ""
        result = BookshopRun(
            statuses=statuses,
            events=[json.loads(line) for line in events_text.splitlines()],
            events_text=events_text,
            stdout=stdout_file.read_text(),
            stderr=stderr_file.read_text(),
            exit_code=exit_code,
            password=sa.make_url(postgres_url).password or "",
            ds=_datasets(postgres_url, schema, users_db),
        )
    finally:
        _drop_schema(postgres_url, schema)
    yield result


def _names(datasets: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def _summary(run: list[dict[str, Any]]) -> dict[str, Any]:
    """What a user reads off a run: job, event types, inputs and outputs of its last event."""
    last = run[-1]
    return {
        "job": last["job"]["name"],
        "events": [e["eventType"] for e in run],
        "inputs": _names(last.get("inputs", [])),
        "outputs": _names(last.get("outputs", [])),
    }


def test_the_app_answers_each_request_and_stops_cleanly_on_sigterm(bookshop):
    assert bookshop.statuses == [status for *_, status in REQUESTS], bookshop.stderr[-4000:]
    assert bookshop.exit_code == 0, bookshop.stderr[-4000:]


def test_each_request_that_runs_sql_is_one_run_named_after_its_route(bookshop):
    jobs = [_summary(run)["job"] for run in bookshop.runs()]

    # init_db is the app's start-up span; GET /health runs no SQL, so it is no job
    assert jobs == [
        "bookshop.init_db",
        "bookshop.POST /users",
        "bookshop.POST /books",
        "bookshop.GET /books",
        "bookshop.POST /loans",
        "bookshop.POST /loans",
        "bookshop.POST /users",
        "bookshop.GET /loans",
    ]
    assert {e["job"]["namespace"] for e in bookshop.events} == {SERVICE}


def test_each_dataset_lands_in_its_own_binds_namespace(bookshop):
    ds = bookshop.ds
    runs = [_summary(run) for run in bookshop.runs()]

    assert runs[0]["outputs"] == {ds.books, ds.loans, ds.users}
    assert runs[1:] == [
        {"job": "bookshop.POST /users", "events": ["START", "COMPLETE"],
         "inputs": set(), "outputs": {ds.users}},
        {"job": "bookshop.POST /books", "events": ["START", "COMPLETE"],
         "inputs": set(), "outputs": {ds.books}},
        {"job": "bookshop.GET /books", "events": ["START", "COMPLETE"],
         "inputs": {ds.books}, "outputs": set()},
        # one request, both binds: the user from SQLite, the book and the loan in PostgreSQL
        {"job": "bookshop.POST /loans", "events": ["START", "COMPLETE"],
         "inputs": {ds.users, ds.books}, "outputs": {ds.books, ds.loans}},
        # PostgreSQL refused the UPDATE of the stock: nothing written, the run fails
        {"job": "bookshop.POST /loans", "events": ["START", "FAIL"],
         "inputs": {ds.users, ds.books}, "outputs": set()},
        # the duplicate email's INSERT failed and the app answered 409: a failed statement
        # adds no dataset, and an error the application handled does not fail the run
        {"job": "bookshop.POST /users", "events": ["START", "COMPLETE"],
         "inputs": set(), "outputs": set()},
        {"job": "bookshop.GET /loans", "events": ["START", "COMPLETE"],
         "inputs": {ds.loans, ds.books, ds.users}, "outputs": set()},
    ]


def test_datasets_carry_their_columns_and_their_own_data_source(bookshop, postgres_url):
    datasets = {(d["namespace"], d["name"]): d
                for e in bookshop.events for d in e.get("inputs", []) + e.get("outputs", [])}
    users, books = datasets[bookshop.ds.users], datasets[bookshop.ds.books]

    assert [f["name"] for f in users["facets"]["schema"]["fields"]] == ["id", "name", "email"]
    assert [f["name"] for f in books["facets"]["schema"]["fields"]] == [
        "id", "title", "author", "copies"]
    assert users["facets"]["dataSource"]["uri"] == bookshop.ds.users[0]
    database = sa.make_url(postgres_url).database
    assert books["facets"]["dataSource"]["uri"] == f"{bookshop.ds.pg}/{database}"


def test_the_failed_loan_names_the_constraint_without_the_row(bookshop):
    fail = next(e for e in bookshop.events if e["eventType"] == "FAIL")
    message = fail["run"]["facets"]["errorMessage"]["message"]

    assert 'violates check constraint "books_copies_not_negative"' in message
    # PostgreSQL's DETAIL line quotes the row's values: not in lineage
    assert "Failing row" not in message
    assert "Failing row" not in bookshop.events_text


def test_runs_are_the_request_spans(bookshop):
    """Each request's run ID comes from its Flask server span's trace and span IDs."""
    server_spans = {
        span["name"]: span for span in console_spans(bookshop.stdout)
        if span["kind"] == "SpanKind.SERVER"
    }
    post_books = server_spans["POST /books"]
    trace_id = int(post_books["context"]["trace_id"], 16)
    span_id = int(post_books["context"]["span_id"], 16)
    expected = str(uuid.uuid5(RUN_ID_NAMESPACE, f"{trace_id:032x}{span_id:016x}"))

    run = next(e for e in bookshop.events if e["job"]["name"] == "bookshop.POST /books")
    assert run["run"]["runId"] == expected
    assert "GET /health" in server_spans  # traced, yet no job: it ran no SQL


def test_no_password_in_events_spans_or_logs(bookshop, postgres_url):
    assert bookshop.password
    assert bookshop.events_text
    assert bookshop.password not in bookshop.events_text
    assert bookshop.password not in bookshop.stdout  # the console exporter's spans
    assert bookshop.password not in bookshop.stderr
    # the app says where its databases are, with the password masked
    url = sa.make_url(postgres_url)
    masked = f"{url.drivername}://{url.username}:***@{url.host}:{url.port}/{url.database}"
    assert f"books and loans in {masked} " in bookshop.stderr


def test_run_sh_runs_the_example_and_shows_where_the_lineage_went(postgres_url, tmp_path):
    """The README's command, on this test's SQLAlchemy line."""
    schema = f"bookshop_run_{os.getpid()}"
    env = clean_env(BOOKSHOP_OUTPUT=str(tmp_path), BOOKSHOP_PG_SCHEMA=schema,
                    OSL_SQLA_LINE=f"{SQLA_VERSION[0]}.{SQLA_VERSION[1]}")
    try:
        proc = subprocess.run([str(EXAMPLE / "run.sh")], capture_output=True, text=True,
                              env=env, timeout=300, check=False)
    finally:
        _drop_schema(postgres_url, schema)
    output = proc.stdout + proc.stderr
    password = sa.make_url(postgres_url).password or ""

    assert proc.returncode == 0, output[-4000:]
    events_file = tmp_path / "openlineage_events.jsonl"
    assert f"writing lineage events to {events_file}" in proc.stdout
    assert "FAIL     bookshop.POST /loans" in proc.stdout
    assert "COMPLETE bookshop.GET /loans" in proc.stdout
    assert events_file.stat().st_size > 0
    assert password and password not in output
    assert password not in (tmp_path / "app.log").read_text()
    assert password not in events_file.read_text()
