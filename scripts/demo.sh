#!/usr/bin/env bash
# The main job: set up (idempotent) and run the library demo on SQLite; lineage events go
# to demo-output/openlineage_events.jsonl unless an OpenLineage transport is configured.
# Extra arguments go to the demo (see --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh" 2.1
cd "$ROOT"
exec "$ROOT/.cache/venv/sqla-2.1/bin/python" -m otel_sqla_lineage.demo "$@"
