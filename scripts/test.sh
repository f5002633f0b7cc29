#!/usr/bin/env bash
# Every check the project has, from a fresh machine: set-up (idempotent), lint and types,
# then the test suite on SQLAlchemy 2.1, 2.0 and 1.4 against SQLite and a real PostgreSQL
# (started by scripts/provision_postgres.sh). Extra arguments go to every pytest run.
#
#   scripts/test.sh                 everything
#   OSL_SQLA_LINES="2.1" scripts/test.sh -k exporter
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
read -r -a lines <<< "${OSL_SQLA_LINES:-2.1 2.0 1.4}"
"$ROOT/scripts/bootstrap.sh" "${lines[@]}"
"$ROOT/scripts/provision_postgres.sh" start >/dev/null

main="$ROOT/.cache/venv/sqla-${lines[0]}/bin"
echo "== ruff" && "$main/ruff" check otel_sqla_lineage collector_exporter tests benchmarks
echo "== mypy" && "$main/mypy"

status=0
for line in "${lines[@]}"; do
  echo "== pytest on SQLAlchemy $line"
  "$ROOT/.cache/venv/sqla-$line/bin/python" -m pytest -p no:cacheprovider -q "$@" || status=1
done
exit $status
