#!/usr/bin/env bash
# Runs the library_summary DAG with `airflow dags test` under `opentelemetry-instrument`,
# lineage to $OUT/openlineage_events.jsonl (ours: tasks and Airflow's metadata database) and
# $OUT/airflow_openlineage_events.jsonl (Airflow's OpenLineage provider: task and DAG runs).
#
#   examples/airflow_dag/run.sh     OUT=demo-output/airflow (its previous results replaced)
#
# Set-up is idempotent: the Airflow environment (scripts/bootstrap_airflow.sh), PostgreSQL
# with the example's database (scripts/provision_postgres.sh), the tables, a fresh
# metadata database (SQLite in $OUT/airflow_home). The DAG's load_late_fees task fails on
# purpose; the DAG run still succeeds (its last task runs whatever happened upstream).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
EXAMPLE="$ROOT/examples/airflow_dag"
OUT="${OUT:-$ROOT/demo-output/airflow}"
VENV="$ROOT/.cache/venv/airflow"

"$ROOT/scripts/bootstrap_airflow.sh"
"$ROOT/scripts/provision_postgres.sh" start >/dev/null
PG="osl:osl-test-password@127.0.0.1:${OSL_PG_PORT:-55432}/osl_airflow_example"

# only what this script writes there: OUT may be a folder of the caller's
rm -rf "$OUT/airflow_home" "$OUT"/openlineage_events.jsonl "$OUT"/airflow_openlineage_events.jsonl \
  "$OUT"/airflow_db_migrate.log "$OUT"/airflow_dags_test.log
mkdir -p "$OUT/airflow_home"
export AIRFLOW_HOME="$OUT/airflow_home"
export AIRFLOW__CORE__DAGS_FOLDER="$EXAMPLE/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$AIRFLOW_HOME/airflow.db"
# the task's connection, in Airflow's URI form (the password stays out of the lineage)
export AIRFLOW_CONN_LIBRARY_DB="postgres://$PG"
# operator, models and airflow_local_settings.py (Airflow's metadata spans)
export PYTHONPATH="$EXAMPLE${PYTHONPATH:+:$PYTHONPATH}"
# Airflow's OpenLineage provider: its own file, its own namespace
export AIRFLOW__OPENLINEAGE__NAMESPACE=airflow-example
export AIRFLOW__OPENLINEAGE__TRANSPORT="{\"type\": \"file\", \"log_file_path\": \"$OUT/airflow_openlineage_events.jsonl\", \"append\": true}"

"$VENV/bin/python" "$EXAMPLE/library_db.py" setup "postgresql+psycopg2://$PG"
"$VENV/bin/airflow" db migrate >"$OUT/airflow_db_migrate.log" 2>&1 \
  || { tail -20 "$OUT/airflow_db_migrate.log" >&2; exit 1; }

# ours: every span through OpenLineageSpanExporter; add otlp to see the traces in Jaeger
export OTEL_SERVICE_NAME=airflow
export OTEL_TRACES_EXPORTER="${OTEL_TRACES_EXPORTER:-openlineage}"
export OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none
export OTEL_SQLA_LINEAGE_FILE="$OUT/openlineage_events.jsonl"
set +e
"$VENV/bin/opentelemetry-instrument" "$VENV/bin/airflow" dags test library_summary \
  >"$OUT/airflow_dags_test.log" 2>&1
status=$?
set -e
grep -E "DagRun Finished|Marking run" "$OUT/airflow_dags_test.log" >&2 || true
if [ $status -ne 0 ]; then
  tail -40 "$OUT/airflow_dags_test.log" >&2
  echo "airflow dags test failed (exit $status); log: $OUT/airflow_dags_test.log" >&2
  exit $status
fi
echo "lineage: $OUT/openlineage_events.jsonl ($(wc -l <"$OUT/openlineage_events.jsonl") events)" >&2
