"""Prints the runs in an OpenLineage JSON-lines file, one line per run: its final state, job,
and the datasets it read and wrote, each as ``namespace / name``.

    python summary.py demo-output/flask_two_binds/openlineage_events.jsonl

Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def datasets(event: dict[str, Any], key: str) -> list[str]:
    return [f"{d['namespace']} / {d['name']}" for d in event.get(key, [])]


def main(path: Path) -> int:
    final: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event["eventType"] != "START" or event["run"]["runId"] not in final:
            final[event["run"]["runId"]] = event
    for event in final.values():
        print(f"{event['eventType']:8} {event['job']['name']}")
        for label, key in (("read ", "inputs"), ("wrote", "outputs")):
            for dataset in datasets(event, key):
                print(f"           {label}  {dataset}")
        error = event["run"]["facets"].get("errorMessage")
        if error:
            print(f"           error  {error['message'].splitlines()[0]}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
