#!/usr/bin/env bash
# Creates the project's Python environments under .cache/venv/, one per supported
# SQLAlchemy line (1.4, 2.0, 2.1), with pinned versions and pip's downloads cached in
# .cache/pip. Idempotent: an environment whose inputs did not change is left alone.
#
#   scripts/bootstrap.sh            all three environments
#   scripts/bootstrap.sh 2.1        just one (the default one the demo uses)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
PYTHON="${PYTHON:-python3}"
export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { echo "[bootstrap] $*" >&2; }

command -v "$PYTHON" >/dev/null || { log "error: $PYTHON not found (Python 3.10+ is needed)"; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { log "error: Python 3.10+ is needed, $("$PYTHON" --version) found"; exit 1; }
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || {
  log "python3-venv is missing; installing it with apt-get"
  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
}

lines=("$@")
[ ${#lines[@]} -gt 0 ] || lines=(2.1 2.0 1.4)

for line in "${lines[@]}"; do
  pins="$ROOT/requirements/sqlalchemy-$line.txt"
  [ -f "$pins" ] || { log "error: no pins for SQLAlchemy $line ($pins)"; exit 1; }
  venv="$CACHE/venv/sqla-$line"
  stamp="$venv/.inputs.sha256"
  # the Flask example's packages: Flask-SQLAlchemy 3.1 needs SQLAlchemy 2.0.16 or later
  extras=()
  case "$line" in 2.*) extras=("$ROOT/requirements/examples-flask.txt") ;; esac
  digest=$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" \
    "$ROOT/requirements/test.txt" "$pins" "${extras[@]}" | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] && [ -x "$venv/bin/python" ]; then
    log "SQLAlchemy $line environment is up to date ($venv)"
    continue
  fi
  log "building the SQLAlchemy $line environment in $venv"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade "pip==25.3" >/dev/null
  "$venv/bin/python" -m pip install -q \
    -c "$ROOT/requirements/constraints.txt" \
    -r "$ROOT/requirements/test.txt" -r "$pins" "${extras[@]/#/--requirement=}" -e "$ROOT"
  echo "$digest" > "$stamp"
  log "SQLAlchemy $line environment ready: $("$venv/bin/python" -c 'import sqlalchemy; print(sqlalchemy.__version__)')"
done
