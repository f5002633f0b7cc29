"""Table schemas (columns and SQL types from SQLAlchemy ``Table`` metadata) handed from the
instrumentor to the converter through the span itself.

Why span attributes and not a process-local registry: collector_exporter sees only what the
spans carry, and both paths must give the same events. To keep spans lean, a table's schema
rides on the first statement span that touches it (per database), and again after
``REANNOUNCE_SECONDS`` so a restarted collector_exporter learns it back; the converter
remembers what it saw (bounded).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

REANNOUNCE_SECONDS: Final = 300.0
_MAX_REMEMBERED: Final = 4096

Columns = tuple[tuple[str, str], ...]


def columns_of(table: Any, dialect: Any, max_columns: int) -> Columns:
    """(name, SQL type) per column, types rendered for the engine's dialect."""
    return tuple(
        (str(column.name), render_type(column.type, dialect))
        for column in list(table.columns)[:max_columns]
    )


def render_type(type_: Any, dialect: Any) -> str:
    """A column type as the dialect writes it in DDL (``VARCHAR(200)``); with no dialect,
    as SQLAlchemy's default compiler does. Shared by the span attribute and the static
    schema events, so both name a type the same way."""
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:  # types without a compile rule for this dialect
        return type(type_).__name__.upper()


def encode_schemas(schemas: dict[str, Columns]) -> str:
    return json.dumps(
        {table: [list(col) for col in cols] for table, cols in schemas.items()},
        separators=(",", ":"),
        sort_keys=True,
    )


def decode_schemas(value: object) -> dict[str, Columns]:
    """The attribute back into tables; anything malformed yields nothing (never raises)."""
    if not isinstance(value, str):
        return {}
    try:
        raw = json.loads(value)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    out: dict[str, Columns] = {}
    for table, cols in raw.items():
        if not isinstance(cols, list):
            continue
        parsed = tuple(
            (str(c[0]), str(c[1]))
            for c in cols
            if isinstance(c, list) and len(c) == 2
        )
        if parsed:
            out[str(table)] = parsed
    return out


class SchemaAnnouncer:
    """Decides, per statement, which of its tables' schemas to put on the span."""

    def __init__(
        self, max_columns: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_columns = max_columns
        self._clock = clock
        self._announced: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._quiet_until: dict[tuple[str, Any], float] = {}
        self._lock = threading.Lock()

    def describe(self, database_key: str, lineage: Any, context: Any) -> str | None:
        tables = lineage.tables
        if not tables:
            return None
        now = self._clock()
        # fast path, no lock: this statement shape's tables were all described recently
        shape_key = (database_key, lineage)
        if now < self._quiet_until.get(shape_key, 0.0):
            return None
        if len(self._quiet_until) > _MAX_REMEMBERED:
            self._quiet_until.clear()
        due: dict[str, Columns] = {}
        next_due = now + REANNOUNCE_SECONDS
        with self._lock:
            for name, table in tables:
                key = (database_key, name)
                last = self._announced.get(key)
                if last is not None and now - last < REANNOUNCE_SECONDS:
                    # described with another statement: quiet until that one is due
                    next_due = min(next_due, last + REANNOUNCE_SECONDS)
                    continue
                self._announced[key] = now
                self._announced.move_to_end(key)
                due[name] = columns_of(table, context.dialect, self.max_columns)
            while len(self._announced) > _MAX_REMEMBERED:
                self._announced.popitem(last=False)
            self._quiet_until[shape_key] = next_due
        return encode_schemas(due) if due else None
