#!/usr/bin/env bash
# The Flask example end to end: set-up (idempotent: the project's venv and PostgreSQL), the
# bookshop (app.py) under opentelemetry-instrument, the scenario's requests (client.py), a
# SIGTERM that flushes the lineage, then where the lineage went and a summary of the runs.
#
#   examples/flask_two_binds/run.sh
#
# Environment (all optional):
#   BOOKSHOP_OUTPUT        where the SQLite users database, app.log and the events file go
#                          (default: demo-output/flask_two_binds)
#   BOOKSHOP_PORT          the app's port (default 0: a free one, read from its log)
#   BOOKSHOP_PG_SCHEMA     PostgreSQL schema of books and loans, dropped and re-created
#                          (default bookshop)
#   OSL_SQLA_LINE          the SQLAlchemy line's environment to use: 2.1 (default) or 2.0
#   OTEL_TRACES_EXPORTER   default openlineage; console,openlineage also prints the spans
#                          (into app.log), otlp,openlineage sends them to your Collector
#   OPENLINEAGE_URL / openlineage.yml / OPENLINEAGE__TRANSPORT__*   send the events there
#                          instead of the events file
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
line="${OSL_SQLA_LINE:-2.1}"
case "$line" in
  2.0|2.1) ;;
  *) echo "run.sh: OSL_SQLA_LINE=$line: the example needs SQLAlchemy 2.0 or 2.1 (Flask-SQLAlchemy 3.1)" >&2
     exit 2 ;;
esac

"$ROOT/scripts/bootstrap.sh" "$line"
"$ROOT/scripts/provision_postgres.sh" start >/dev/null
BIN="$ROOT/.cache/venv/sqla-$line/bin"
OUT="$(mkdir -p "${BOOKSHOP_OUTPUT:-$ROOT/demo-output/flask_two_binds}" && cd "${BOOKSHOP_OUTPUT:-$ROOT/demo-output/flask_two_binds}" && pwd)"
rm -f "$OUT/openlineage_events.jsonl" "$OUT/app.log"

# the URL (with its password) goes to the app through its environment only
BOOKSHOP_BOOKS_DATABASE_URL="$("$ROOT/scripts/provision_postgres.sh" url)"
export BOOKSHOP_BOOKS_DATABASE_URL
export BOOKSHOP_USERS_DATABASE_URL="sqlite:///$OUT/users.db"
export OTEL_SERVICE_NAME="${OTEL_SERVICE_NAME:-bookshop}"
export OTEL_TRACES_EXPORTER="${OTEL_TRACES_EXPORTER:-openlineage}"
export OTEL_METRICS_EXPORTER="${OTEL_METRICS_EXPORTER:-none}"
export OTEL_LOGS_EXPORTER="${OTEL_LOGS_EXPORTER:-none}"
export OTEL_SQLA_LINEAGE_FILE="$OUT/openlineage_events.jsonl"

echo "== the bookshop under opentelemetry-instrument (log: $OUT/app.log)"
"$BIN/opentelemetry-instrument" "$BIN/python" "$HERE/app.py" \
  --port "${BOOKSHOP_PORT:-0}" --reset >"$OUT/app.log" 2>&1 &
app=$!
trap 'kill -TERM "$app" 2>/dev/null || true' EXIT

echo "== requests"
"$BIN/python" "$HERE/client.py" --log "$OUT/app.log" --pid "$app" || status=$?

echo "== stopping the bookshop (SIGTERM: the last runs are emitted and delivered)"
kill -TERM "$app"
wait "$app" || { echo "the bookshop exited with status $?; its log: $OUT/app.log" >&2; exit 1; }
trap - EXIT

echo "== where the lineage went"
grep -h "otel-sqla-lineage:" "$OUT/app.log" || echo "(the exporter said nothing: is openlineage in OTEL_TRACES_EXPORTER?)"
if [ -s "$OUT/openlineage_events.jsonl" ]; then
  echo "== runs in $OUT/openlineage_events.jsonl"
  "$BIN/python" "$HERE/summary.py" "$OUT/openlineage_events.jsonl"
fi
exit "${status:-0}"
