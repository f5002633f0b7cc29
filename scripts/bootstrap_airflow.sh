#!/usr/bin/env bash
# Creates .cache/venv/airflow: Apache Airflow (pinned in requirements/airflow.txt, a freeze
# of a working install, since Airflow's own constraint files are not reachable here), the
# project itself (editable) and what the Airflow example and its test need. Idempotent: an
# environment whose inputs did not change is left alone. pip's downloads: .cache/pip.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
PYTHON="${PYTHON:-python3}"
export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { echo "[bootstrap_airflow] $*" >&2; }

venv="$CACHE/venv/airflow"
stamp="$venv/.inputs.sha256"
digest=$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" \
  "$ROOT/requirements/airflow.txt" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && [ -x "$venv/bin/airflow" ]; then
  log "Airflow environment is up to date ($venv)"
  exit 0
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { log "error: Python 3.10+ is needed, $("$PYTHON" --version) found"; exit 1; }
log "building the Airflow environment in $venv"
[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade "pip==25.3" >/dev/null
"$venv/bin/python" -m pip install -q \
  -c "$ROOT/requirements/constraints.txt" -r "$ROOT/requirements/airflow.txt" -e "$ROOT"
echo "$digest" > "$stamp"
log "Airflow environment ready: $("$venv/bin/airflow" version 2>/dev/null | tail -1)," \
  "SQLAlchemy $("$venv/bin/python" -c 'import sqlalchemy; print(sqlalchemy.__version__)')"
