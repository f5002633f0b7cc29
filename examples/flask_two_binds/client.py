"""Sends the bookshop's scenario to a running app.py and prints each request with its answer:
two users, two books, loans until the stock runs out (the last one is refused by
PostgreSQL: 500), a duplicate user (409) and the loans report.

    python client.py --log app.log [--pid PID]     # waits for app.py's "listening on" line

Standard library only, so it runs in any Python.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# (method, path, JSON body, the status the bookshop answers)
SCENARIO: list[tuple[str, str, dict[str, Any] | None, int]] = [
    ("GET", "/health", None, 200),
    ("POST", "/users", {"name": "Ada", "email": "ada@example.org"}, 201),
    ("POST", "/users", {"name": "Grace", "email": "grace@example.org"}, 201),
    ("POST", "/books", {"title": "Dune", "author": "Frank Herbert", "copies": 1}, 201),
    ("POST", "/books", {"title": "Emma", "author": "Jane Austen", "copies": 2}, 201),
    ("GET", "/books", None, 200),
    ("POST", "/loans", {"email": "ada@example.org", "title": "Dune"}, 201),
    ("POST", "/loans", {"email": "grace@example.org", "title": "Dune"}, 500),
    ("POST", "/users", {"name": "Ada again", "email": "ada@example.org"}, 409),
    ("GET", "/loans", None, 200),
]


def send(base: str, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for_url(log: Path, pid: int | None, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = re.search(r"listening on (http://\S+)", text)
        if found:
            return found.group(1)
        if pid is not None and not _alive(pid):
            raise SystemExit(f"the bookshop stopped before listening; its log:\n{text[-3000:]}")
        time.sleep(0.1)
    raise SystemExit(f"the bookshop did not start listening within {timeout:.0f}s (see {log})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the bookshop's base URL")
    where.add_argument("--log", type=Path, help="app.py's log: wait for its 'listening on' line")
    parser.add_argument("--pid", type=int, help="app.py's process: fail early if it exits")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    base = args.url or wait_for_url(args.log, args.pid, args.timeout)
    unexpected = 0
    for method, path, body, expected in SCENARIO:
        status, answer = send(base, method, path, body)
        shown = json.dumps(body) if body is not None else ""
        first_line = answer.strip().splitlines()[0] if answer.strip() else ""
        note = "" if status == expected else f"   (expected {expected})"
        unexpected += status != expected
        print(f"{method:4} {path:8} {shown:58} -> {status} {first_line[:70]}{note}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
