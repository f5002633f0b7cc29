"""examples/airflow_dag, run exactly as the README says (examples/airflow_dag/run.sh: Airflow
3 ``airflow dags test`` under ``opentelemetry-instrument``), then read its events files.

Runs with the Airflow environment, not the sqla-* ones (scripts/test.sh runs this file
alone with .cache/venv/airflow/bin/python; the example's run.sh builds that environment).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from olspec import validate_event

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "examples" / "airflow_dag" / "run.sh"
PASSWORD = "osl-test-password"  # of the example's connection (scripts/provision_postgres.sh)
DAG = "library_summary"
DATA = "postgres://127.0.0.1:55432"
SERVICE = "airflow"
PROVIDER_NAMESPACE = "airflow-example"

pytestmark = [pytest.mark.subprocess, pytest.mark.postgres, pytest.mark.airflow]


class Example:
    def __init__(self, out: Path, output: str) -> None:
        self.out = out
        self.output = output
        self.events = _read(out / "openlineage_events.jsonl")
        self.provider_events = _read(out / "airflow_openlineage_events.jsonl")

    def ends(self) -> dict[str, list[dict[str, Any]]]:
        """COMPLETE/FAIL events by job name."""
        out: dict[str, list[dict[str, Any]]] = {}
        for e in self.events:
            if e["eventType"] != "START":
                out.setdefault(e["job"]["name"], []).append(e)
        return out

    def task(self, task_id: str) -> dict[str, Any]:
        [event] = self.ends()[f"{SERVICE}.{DAG}.{task_id}"]
        return event

    def provider_run(self, job: str) -> str:
        ids = {e["run"]["runId"] for e in self.provider_events
               if e["job"]["name"] == job and e["job"]["namespace"] == PROVIDER_NAMESPACE}
        assert len(ids) == 1, (job, ids)
        return ids.pop()


def _read(path: Path) -> list[dict[str, Any]]:
    assert path.exists(), f"{path} was not written"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Example:
    out = tmp_path_factory.mktemp("airflow") / "out"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "OPENLINEAGE", "AIRFLOW"))}
    result = subprocess.run([str(RUN)], env={**env, "OUT": str(out)}, cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return Example(out, output)


def names(datasets: Iterable[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["namespace"], d["name"]) for d in datasets}


def table(name: str) -> tuple[str, str]:
    return (DATA, f"osl_airflow_example.public.{name}")


def test_each_task_is_a_job_with_the_tables_it_read_and_wrote(example: Example) -> None:
    seed = example.task("seed_library")
    assert seed["eventType"] == "COMPLETE"
    assert names(seed["outputs"]) == {table("books"), table("loans")}
    summarize = example.task("summarize_loans")
    assert summarize["eventType"] == "COMPLETE"
    assert names(summarize["inputs"]) == {table("books"), table("loans")}
    assert names(summarize["outputs"]) == {table("loan_summary")}
    report = example.task("report")
    assert names(report["inputs"]) == {table("loan_summary")}
    assert report["outputs"] == []
    fields = summarize["outputs"][0]["facets"]["schema"]["fields"]
    columns = {f["name"]: f["type"] for f in fields}
    assert columns == {"book_id": "INTEGER", "title": "VARCHAR(200)", "loans": "INTEGER"}


def test_failing_task_fails_with_its_error_and_wrote_nothing(example: Example) -> None:
    fees = example.task("load_late_fees")
    assert fees["eventType"] == "FAIL"
    message = fees["run"]["facets"]["errorMessage"]["message"]
    assert "IntegrityError" in message and "late_fees_pkey" in message
    assert names(fees["inputs"]) == {table("loans")}
    assert fees["outputs"] == []  # the failed INSERT adds no output
    [start] = [e for e in example.events if e["eventType"] == "START"
               and e["run"]["runId"] == fees["run"]["runId"]]
    assert start["job"]["name"] == f"{SERVICE}.{DAG}.load_late_fees"


def test_task_runs_name_the_openlineage_provider_s_task_run_as_parent(
    example: Example,
) -> None:
    dag_run = example.provider_run(DAG)
    for task_id in ("seed_library", "summarize_loans", "load_late_fees", "report"):
        parent = example.task(task_id)["run"]["facets"]["parent"]
        assert parent["job"]["namespace"] == PROVIDER_NAMESPACE
        assert parent["job"]["name"] == f"{DAG}.{task_id}"
        assert parent["run"]["runId"] == example.provider_run(f"{DAG}.{task_id}")
        assert parent["root"]["job"]["name"] == DAG
        assert parent["root"]["run"]["runId"] == dag_run
    provider_states = {e["job"]["name"]: e["eventType"] for e in example.provider_events
                       if e["eventType"] != "START"}
    assert provider_states[f"{DAG}.load_late_fees"] == "FAIL"


# the jobs README "Airflow's metadata database" documents, and a table each must write
METADATA_JOBS = {
    "api_fastapi.execution_api.routes.task_instances.ti_run": "task_instance",
    "api_fastapi.execution_api.routes.task_instances.ti_update_state": "task_instance",
    "api_fastapi.execution_api.routes.xcoms.set_xcom": "xcom",
    "dag_processing.dagbag.sync_bag_to_db": "serialized_dag",
    "cli.commands.dag_command.dag_test": "dag_run",
}
# statements Airflow runs outside any transaction of a session: connection set-up and its
# start-up checks of the schema; they stay runs of their own (README says so)
OUTSIDE_SESSIONS = {"sqlite_master", "sqlite_temp_master", "alembic_version"}


def test_airflow_metadata_statements_are_grouped_into_airflow_functions(
    example: Example,
) -> None:
    ends = example.ends()
    metadata = f"sqlite://{socket.gethostname()}{example.out}/airflow_home/airflow.db"
    for job, written in METADATA_JOBS.items():
        runs = ends.get(f"{SERVICE}.{job}")
        assert runs, f"no run of {job}; jobs: {sorted(ends)}"
        outputs = set().union(*(names(r["outputs"]) for r in runs))
        assert (metadata, written) in outputs, (job, outputs)
    # 4 tasks, each started (ti_run) and finished (ti_update_state) through the API
    assert len(ends[f"{SERVICE}.api_fastapi.execution_api.routes.task_instances.ti_run"]) == 4
    # not one job per SQL string: what is left as a statement run touches no Airflow model
    for job, runs in ends.items():
        if job.split(".", 1)[1].split(" ", 1)[0] in {"SELECT", "INSERT", "UPDATE", "DELETE"}:
            touched = {n for r in runs for _, n in names(r["inputs"] + r["outputs"])}
            assert touched <= OUTSIDE_SESSIONS, (job, touched)


def test_metadata_tables_carry_their_schemas(example: Example) -> None:
    schemas: dict[str, set[str]] = {}
    for e in example.events:
        for d in e["inputs"] + e["outputs"]:
            if d["namespace"].startswith("sqlite://") and "schema" in d["facets"]:
                schemas[d["name"]] = {f["name"] for f in d["facets"]["schema"]["fields"]}
    assert {"dag_id", "task_id", "run_id", "state", "try_number"} <= schemas["task_instance"]
    assert {"dag_id", "run_id", "state", "logical_date"} <= schemas["dag_run"]
    assert {"dag_id", "task_id", "run_id", "key", "value"} <= schemas["xcom"]


def test_events_are_valid_openlineage(example: Example) -> None:
    for event in example.events:
        validate_event(event)


def test_no_password_in_any_event_or_log(example: Example) -> None:
    assert PASSWORD not in example.output
    for path in example.out.rglob("*"):
        if path.is_file() and path.suffix in {".jsonl", ".log", ".json", ".txt", ""}:
            assert PASSWORD not in path.read_text(errors="replace"), path
