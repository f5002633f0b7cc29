"""Settings shared by the instrumentor, the exporter and collector_exporter.

Precedence: keyword argument > environment variable > default. The environment is read in
one place (:meth:`LineageSettings.from_env`) and never written to. Our own variables share
the prefix ``OTEL_SQLA_LINEAGE_``; OpenLineage's transport configuration stays where the
OpenLineage ecosystem keeps it (``openlineage.yml``, ``OPENLINEAGE_URL``,
``OPENLINEAGE__TRANSPORT__...``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

from otel_sqla_lineage.errors import ConfigError

Granularity = Literal["job", "statement"]
GRANULARITIES: Final = ("job", "statement")

ENV_GRANULARITY: Final = "OTEL_SQLA_LINEAGE_GRANULARITY"
ENV_NAMESPACE: Final = "OTEL_SQLA_LINEAGE_NAMESPACE"
ENV_OPENLINEAGE_NAMESPACE: Final = "OPENLINEAGE_NAMESPACE"
ENV_TRACE_UI_URL: Final = "OTEL_SQLA_LINEAGE_TRACE_UI_URL"
ENV_BUFFER_MAX_SPANS: Final = "OTEL_SQLA_LINEAGE_BUFFER_MAX_SPANS"
ENV_BUFFER_TIMEOUT: Final = "OTEL_SQLA_LINEAGE_BUFFER_TIMEOUT_SECONDS"
ENV_QUEUE_MAX_EVENTS: Final = "OTEL_SQLA_LINEAGE_QUEUE_MAX_EVENTS"
ENV_DEFAULT_FILE: Final = "OTEL_SQLA_LINEAGE_FILE"
ENV_SCHEMA_MAX_COLUMNS: Final = "OTEL_SQLA_LINEAGE_SCHEMA_MAX_COLUMNS"
ENV_EMIT_SCHEMA_AT_START: Final = "OTEL_SQLA_LINEAGE_EMIT_SCHEMA_AT_START"
ENV_SPOOL_DIR: Final = "OTEL_SQLA_LINEAGE_SPOOL_DIR"
ENV_SPOOL_MAX_BYTES: Final = "OTEL_SQLA_LINEAGE_SPOOL_MAX_BYTES"

DEFAULT_FILE: Final = "openlineage_events.jsonl"


@dataclass(frozen=True, slots=True)
class LineageSettings:
    granularity: Granularity = "job"
    # Job namespace; None means the span's service.name.
    namespace: str | None = None
    # Base URL of a Jaeger UI; runs then carry opentelemetry.traceUrl = <base>/trace/<id>.
    trace_ui_url: str | None = None
    # Statement summaries held while their enclosing span has not ended.
    buffer_max_spans: int = 10_000
    buffer_timeout_seconds: float = 60.0
    # Events waiting for the transport thread; beyond it events are dropped and counted.
    queue_max_events: int = 10_000
    # Where events go when no OpenLineage transport is configured at all.
    default_file: str = DEFAULT_FILE
    # Columns per table carried in the db.sqlalchemy.schema span attribute.
    schema_max_columns: int = 200
    # The instrumentor sends a DatasetEvent per mapped table once per engine, at start
    # (otel_sqla_lineage.schema_at_start).
    emit_schema_at_start: bool = False
    # On-disk spool for events the backend has not taken (outage, restart); None: no
    # spool, events the backend refuses are counted and logged as failed.
    spool_dir: str | None = None
    spool_max_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ConfigError(
                f"granularity must be one of {', '.join(GRANULARITIES)}, not {self.granularity!r}"
            )
        for name in ("buffer_max_spans", "queue_max_events", "schema_max_columns"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        if self.spool_max_bytes < 4096:
            raise ConfigError(
                f"spool_max_bytes must be at least 4096, not {self.spool_max_bytes!r}")
        if self.buffer_timeout_seconds <= 0:
            raise ConfigError("buffer_timeout_seconds must be positive")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> LineageSettings:
        """Settings from the environment, then ``overrides`` (None values are ignored)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        _read(env, ENV_GRANULARITY, "granularity", str.lower, values)
        _read(env, ENV_OPENLINEAGE_NAMESPACE, "namespace", str, values)
        _read(env, ENV_NAMESPACE, "namespace", str, values)
        _read(env, ENV_TRACE_UI_URL, "trace_ui_url", lambda v: v.rstrip("/"), values)
        _read(env, ENV_BUFFER_MAX_SPANS, "buffer_max_spans", int, values)
        _read(env, ENV_BUFFER_TIMEOUT, "buffer_timeout_seconds", float, values)
        _read(env, ENV_QUEUE_MAX_EVENTS, "queue_max_events", int, values)
        _read(env, ENV_DEFAULT_FILE, "default_file", str, values)
        _read(env, ENV_SCHEMA_MAX_COLUMNS, "schema_max_columns", int, values)
        _read(env, ENV_EMIT_SCHEMA_AT_START, "emit_schema_at_start", _boolean, values)
        _read(env, ENV_SPOOL_DIR, "spool_dir", str, values)
        _read(env, ENV_SPOOL_MAX_BYTES, "spool_max_bytes", int, values)
        known = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}")
            if value is not None:
                values[key] = value
        return cls(**values)



def _read(
    env: Mapping[str, str], name: str, field: str, parse: Any, into: dict[str, Any]
) -> None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return
    try:
        into[field] = parse(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from exc


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError("expected true or false")
