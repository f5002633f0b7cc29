"""What several benchmarks share: a span processor that only keeps the spans, a median that
tolerates no values, a free loopback port, a measurement in a fresh child process, and the
script's exit status when a variant's output check fails.

The benchmarks run as scripts (``python benchmarks/bench_x.py``), which puts this folder first
on ``sys.path``: they import this module as ``_common``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor


class KeepSpans(SpanProcessor):
    """Minimal work per span: keep a reference (checked after the timed loop)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values (a variant that was not run prints as such)."""
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def json_from_child(argv: Sequence[str], timeout: float, **env: str) -> dict[str, Any]:
    """Runs ``python argv`` in a fresh process (a measurement of its own, peak RSS included)
    with no OpenTelemetry or OpenLineage settings but ``env``; returns the JSON object of its
    last output line. Exits with its error output when it fails."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENLINEAGE"))}
    clean.update(env)
    result = subprocess.run([sys.executable, *argv], capture_output=True, text=True,
                            env=clean, timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def exit_with(main: Callable[[], int], failed: str = "check failed") -> None:
    """Exits with ``main``'s status, or 1 with one line saying ``failed`` when a variant did
    not produce the output it should (an AssertionError, not a traceback)."""
    try:
        sys.exit(main())
    except AssertionError as exc:
        print(f"{failed}: {exc}", file=sys.stderr)
        sys.exit(1)
