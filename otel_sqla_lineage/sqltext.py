"""Lineage of SQL text that SQLAlchemy never modelled: ``text()``, ``exec_driver_sql`` and
spans from other instrumentations that carry only ``db.query.text``.

Parsing costs tens of microseconds (openlineage-sql, a Rust parser), so results are cached
by (dialect, SQL string) in a bounded LRU: applications reuse a small set of statement
shapes, and bound parameters keep literal values out of the text.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

import openlineage_sql

from otel_sqla_lineage.naming import scheme_for
from otel_sqla_lineage.redact import redact_sql

_log = logging.getLogger(__name__)

# naming's scheme (one map of SQLAlchemy dialect / db.system names) -> the dialects
# openlineage-sql knows; any other name would silently parse as "generic" anyway
_PARSER_DIALECTS = frozenset(
    {"postgres", "mysql", "mssql", "sqlite", "snowflake", "bigquery", "redshift", "hive",
     "databricks"}
)

# openlineage-sql reads $1 (every dialect) but not the DB-API "format"/"pyformat" ones
_PYFORMAT = re.compile(r"%\([A-Za-z_][A-Za-z0-9_]*\)s|%s")
_LEADING_COMMENTS = re.compile(r"^\s*(?:(?:/\*.*?\*/|--[^\n]*\n)\s*)*", re.DOTALL)
_TWO_WORD_OPERATIONS = frozenset({"CREATE", "DROP", "ALTER", "TRUNCATE"})
_PARSE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ColumnOrigin:
    """One input column of an output column, as openlineage-sql found it."""

    table: str
    column: str


@dataclass(frozen=True, slots=True)
class SqlLineage:
    operation: str | None
    tables_read: tuple[str, ...]
    tables_written: tuple[str, ...]
    # output column name -> its input columns (INSERT ... SELECT and friends)
    column_lineage: tuple[tuple[str, tuple[ColumnOrigin, ...]], ...] = ()
    error: str | None = None


def parser_dialect(dialect: str | None) -> str:
    """The openlineage-sql dialect for a SQLAlchemy dialect or ``db.system`` value."""
    if not dialect:
        return "generic"
    scheme = scheme_for(dialect)
    return scheme if scheme in _PARSER_DIALECTS else "generic"


def operation_of(sql: str) -> str | None:
    """First keyword(s) of the statement: ``SELECT``, ``INSERT``, ``CREATE TABLE``.

    Semantic conventions forbid the database name here (upstream's ``db.operation`` has it).
    """
    body = _LEADING_COMMENTS.sub("", sql, count=1)
    words = body.split(None, 2)
    if not words:
        return None
    first = words[0].upper().rstrip(";(")
    if first == "WITH":
        # a CTE: the operation is the statement after the WITH clauses; the parser knows
        # whether something is written, so let the caller decide from tables_written.
        return None
    if first in _TWO_WORD_OPERATIONS and len(words) > 1:
        second = words[1].upper()
        if second in {"TABLE", "INDEX", "VIEW", "SCHEMA", "SEQUENCE", "DATABASE"}:
            return f"{first} {second}"
    return first if first.isalpha() else None


def _first_line(exc: Exception) -> str:
    # the Rust side may append a multi-line stack backtrace (RUST_BACKTRACE)
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _parser_error_for_log(sql: str, error: str) -> str:
    """The parser quotes the token it stopped at, which may be a redacted literal."""
    if redact_sql(sql) is not sql:
        return "parser message withheld: the statement holds redacted literals"
    return error[:500]


@functools.lru_cache(maxsize=_PARSE_CACHE_SIZE)
def parse_sql(sql: str, dialect: str | None) -> SqlLineage:
    """Tables read and written by ``sql``; never raises (errors come back in ``error``)."""
    operation = operation_of(sql)
    if not sql.strip():
        return SqlLineage(operation, (), (), (), error="empty statement")
    text = _PYFORMAT.sub("$1", sql).replace("%%", "%") if "%" in sql else sql
    try:
        meta = openlineage_sql.parse([text], dialect=parser_dialect(dialect))
    except Exception as exc:  # the Rust side raises for input it cannot tokenise at all
        _log.warning("otel-sqla-lineage: openlineage-sql failed on %r (%s)",
                     redact_sql(sql)[:200], _parser_error_for_log(sql, _first_line(exc)))
        return SqlLineage(operation, (), (), (), error=f"{type(exc).__name__}: {_first_line(exc)}")
    if meta is None:
        return SqlLineage(operation, (), (), (), error="openlineage-sql returned nothing")
    if meta.errors and not (meta.in_tables or meta.out_tables):
        # JDBC and DB-API "qmark" placeholders (?) do not parse in the postgres/redshift
        # dialects; the generic dialect reads them
        try:
            generic = openlineage_sql.parse([text], dialect="generic")
        except Exception:
            generic = None
        if generic is not None and (generic.in_tables or generic.out_tables):
            meta = generic
    written = tuple(sorted({t.qualified_name for t in meta.out_tables}))
    read = tuple(sorted({t.qualified_name for t in meta.in_tables}))
    if operation is None and (read or written):
        operation = "INSERT" if written else "SELECT"
    error = "; ".join(str(e.message) for e in meta.errors) if meta.errors else None
    if error and not (read or written):
        # parse_sql is cached, so this is logged once per statement text
        _log.warning(
            "otel-sqla-lineage: openlineage-sql cannot read %r (%s); its tables are not "
            "reported", redact_sql(sql)[:200], _parser_error_for_log(sql, error),
        )
    lineage = tuple(
        (
            str(item.descendant.name),
            tuple(
                ColumnOrigin(origin.origin.qualified_name, str(origin.name))
                for origin in item.lineage
                if origin.origin is not None
            ),
        )
        for item in meta.column_lineage
    )
    return SqlLineage(operation, read, written, lineage, error)
