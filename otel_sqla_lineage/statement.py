"""What one SQLAlchemy statement touches: operation, tables read and written, mapped classes.

Everything here is derived from the *compiled* statement, which SQLAlchemy caches and
reuses, so the work is done once per statement shape and cached per compiled object
(:class:`StatementLineageCache`). SQL text is parsed only when SQLAlchemy has no model of
the statement (``text()``, ``exec_driver_sql``). Bound parameter values are never looked at.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.sql import visitors
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.schema import Table
from sqlalchemy.sql.selectable import TableClause

from otel_sqla_lineage import attributes as attr
from otel_sqla_lineage.sqltext import ColumnOrigin, parse_sql

_log = logging.getLogger(__name__)

SOURCE_ORM = "orm"
SOURCE_CORE = "core"
SOURCE_SQL = "sql"

AttributeValue = str | bool | int | float | Sequence[str]


# eq=False: hashed by identity. One object per compiled statement serves as a key on
# every statement executed (attribute and schema caches); hashing its fields would cost
# more than the look-up.
@dataclass(frozen=True, slots=True, eq=False)
class StatementLineage:
    operation: str | None
    tables_read: tuple[str, ...]
    tables_written: tuple[str, ...]
    mappers: tuple[str, ...]
    source: str
    column_lineage: tuple[tuple[str, tuple[ColumnOrigin, ...]], ...] = ()
    # the span attributes, built once so the per-statement path only hands them over
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict, compare=False)
    # (name, Table) of the modelled tables touched, for their schemas
    tables: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    @classmethod
    def build(
        cls,
        operation: str | None,
        tables_read: Iterable[str],
        tables_written: Iterable[str],
        mappers: Iterable[str],
        source: str,
        column_lineage: tuple[tuple[str, tuple[ColumnOrigin, ...]], ...] = (),
        tables: Iterable[TableClause] = (),
    ) -> StatementLineage:
        written = tuple(sorted(set(tables_written)))
        read = tuple(sorted(set(tables_read)))
        mapper_names = tuple(sorted(set(mappers)))
        attrs: dict[str, AttributeValue] = {attr.SQLALCHEMY_SOURCE: source}
        if operation:
            attrs[attr.DB_OPERATION_NAME] = operation
        touched = set(read) | set(written)
        if len(touched) == 1:
            attrs[attr.DB_COLLECTION_NAME] = next(iter(touched))
        if mapper_names:
            attrs[attr.SQLALCHEMY_MAPPERS] = mapper_names
        if read:
            attrs[attr.SQLALCHEMY_TABLES_READ] = read
        if written:
            attrs[attr.SQLALCHEMY_TABLES_WRITTEN] = written
        if column_lineage and len(written) == 1:
            attrs[attr.SQLALCHEMY_COLUMN_LINEAGE] = json.dumps(
                {
                    written[0]: {
                        column: [[o.table, o.column] for o in origins]
                        for column, origins in column_lineage
                    }
                },
                separators=(",", ":"),
                sort_keys=True,
            )
        modelled = {table_name(t): t for t in tables if isinstance(t, Table)}
        return cls(
            operation, read, written, mapper_names, source, column_lineage, attrs,
            tuple(sorted(modelled.items(), key=lambda item: item[0])),
        )


def table_name(table: TableClause) -> str:
    schema = getattr(table, "schema", None)
    return f"{schema}.{table.name}" if schema else str(table.name)


def mapper_name(mapper: Any) -> str:
    cls = mapper.class_
    return f"{cls.__module__}.{cls.__qualname__}"


class _MapperIndex:
    """Table -> classes whose own table it is, for statements the ORM builds without
    annotations (the unit of work's INSERT/UPDATE/DELETE).

    Rebuilt when the number of mappers changes; consulted once per compiled statement.
    """

    def __init__(self) -> None:
        self._count = -1
        self._by_table: dict[TableClause, tuple[str, ...]] = {}

    def _refresh(self) -> None:
        mappers = _all_mappers()
        if len(mappers) == self._count:
            return
        by_table: dict[TableClause, set[str]] = {}
        for mapper in mappers:
            local = getattr(mapper, "local_table", None)
            if isinstance(local, TableClause):
                by_table.setdefault(local, set()).add(mapper_name(mapper))
        self._by_table = {t: tuple(sorted(names)) for t, names in by_table.items()}
        self._count = len(mappers)

    def mappers_of(self, table: TableClause) -> tuple[str, ...]:
        self._refresh()
        return self._by_table.get(table, ())

    def is_mapper_cache(self, cache: object) -> bool:
        # Asked once per compiled statement, so no index: a mapper's cache is memoized
        # lazily and reset when mappers are (re)configured. Peek without creating it.
        return any(
            getattr(mapper.base_mapper, "__dict__", {}).get("_compiled_cache") is cache
            for mapper in _all_mappers()
        )


def _all_mappers() -> list[Any]:
    # SQLAlchemy keeps every registry in a module-level weak dict (1.4, 2.0, 2.1); there is
    # no public enumeration. If it moves, flush statements simply report no mapper.
    try:
        # by module path: in 1.4 ``sqlalchemy.orm.mapper`` is also the legacy function
        mapper_module = importlib.import_module("sqlalchemy.orm.mapper")
        registries = list(mapper_module._mapper_registries)
    except (ImportError, AttributeError):
        return []
    mappers: list[Any] = []
    for registry in registries:
        mappers.extend(getattr(registry, "mappers", ()))
    return mappers


_mapper_index = _MapperIndex()


def _iter_elements(statements: Iterable[Any]) -> Iterator[Any]:
    for statement in statements:
        yield from visitors.iterate(statement)


def _orm_mappers(statements: Sequence[Any]) -> set[str]:
    found: set[str] = set()
    for statement in statements:
        subject = getattr(statement, "_propagate_attrs", {}).get("plugin_subject")
        mapper = getattr(subject, "mapper", None) if subject is not None else None
        if mapper is not None:
            found.add(mapper_name(mapper))
    for element in _iter_elements(statements):
        annotations = getattr(element, "_annotations", None)
        if annotations:
            mapper = annotations.get("parentmapper")
            if mapper is not None:
                found.add(mapper_name(mapper))
    return found


def _tables_in(elements: Iterable[Any]) -> set[TableClause]:
    return {el for el in elements if isinstance(el, TableClause)}


def _ddl_lineage(compiled: Any) -> StatementLineage:
    ddl = compiled.statement
    operation = str(getattr(ddl, "__visit_name__", "ddl")).replace("_", " ").upper()
    target = getattr(ddl, "element", None)
    target_table = target if isinstance(target, TableClause) else getattr(target, "table", None)
    if not isinstance(target_table, TableClause):
        return StatementLineage.build(operation, (), (), (), SOURCE_CORE)
    mappers = _mapper_index.mappers_of(target_table)
    return StatementLineage.build(
        operation, (), [table_name(target_table)], mappers, SOURCE_CORE, tables=[target_table]
    )


def _statements_of(compiled: Any) -> list[Any]:
    statement = compiled.statement
    statements = [statement]
    # The ORM compiles a Core statement of its own (with eager-load joins, inheritance
    # joins) and keeps it on the compile state; the tables the database reads are there.
    compile_state = getattr(compiled, "compile_state", None)
    core = getattr(compile_state, "statement", None)
    if core is not None and core is not statement:
        statements.append(core)
    return statements


def lineage_of_compiled(
    compiled: Any,
    dialect: str | None,
    *,
    orm_flush: bool = False,
) -> StatementLineage:
    """Lineage of a statement SQLAlchemy compiled. ``orm_flush`` marks the unit of work's
    DML, whose statements carry no ORM annotations but whose target table is mapped."""
    statement = compiled.statement
    if isinstance(statement, TextClause):
        return lineage_of_sql(compiled.string, dialect)
    if isinstance(compiled, DDLCompiler):  # (``compiled.is_ddl`` is 2.0+)
        return _ddl_lineage(compiled)

    statements = _statements_of(compiled)
    mappers = _orm_mappers(statements)
    is_dml = compiled.isinsert or compiled.isupdate or compiled.isdelete
    if not is_dml:
        read = _tables_in(_iter_elements(statements))
        source = SOURCE_ORM if mappers else SOURCE_CORE
        return StatementLineage.build(
            "SELECT", map(table_name, read), (), mappers, source, tables=read
        )

    operation = "INSERT" if compiled.isinsert else "UPDATE" if compiled.isupdate else "DELETE"
    read_set: set[TableClause] = set()
    targets: set[TableClause] = set()
    for stmt in statements:
        target = getattr(stmt, "table", None)
        if isinstance(target, TableClause):
            targets.add(target)
            if orm_flush and not mappers:
                mappers.update(_mapper_index.mappers_of(target))
        # Children other than the target itself: INSERT ... SELECT, subqueries in
        # WHERE / VALUES. A column of the target in WHERE does not make it an input
        # (visitors do not walk from a column to its table).
        for child in stmt.get_children():
            if child is target:
                continue
            read_set |= _tables_in(visitors.iterate(child))
    # UPDATE ... FROM / DELETE ... USING: SQLAlchemy derives the other tables from the
    # WHERE clause at compile time and keeps them on the compile state.
    compile_state = getattr(compiled, "compile_state", None)
    for extra in getattr(compile_state, "_extra_froms", None) or ():
        read_set |= _tables_in(visitors.iterate(extra))
    if not compiled.isinsert:
        # the target inside its own WHERE subqueries is correlated, not an input
        target_names = {table_name(t) for t in targets}
        read_set = {t for t in read_set if table_name(t) not in target_names}
    column_lineage: tuple[tuple[str, tuple[ColumnOrigin, ...]], ...] = ()
    if compiled.isinsert and read_set:
        column_lineage = _insert_select_column_lineage(compiled, dialect)
    source = SOURCE_ORM if mappers or orm_flush else SOURCE_CORE
    return StatementLineage.build(
        operation,
        map(table_name, read_set),
        map(table_name, targets),
        mappers,
        source,
        column_lineage,
        tables=read_set | targets,
    )


def _insert_select_column_lineage(
    compiled: Any, dialect: str | None
) -> tuple[tuple[str, tuple[ColumnOrigin, ...]], ...]:
    """Column lineage of INSERT ... SELECT keyed by the *target* columns.

    SQLAlchemy pairs the insert's column list with the SELECT's columns, so each target
    column's inputs are the table columns inside its SELECT expression; no SQL parsing
    (openlineage-sql would name outputs after the SELECT's aliases instead).
    """
    statement = compiled.statement
    names = [str(getattr(n, "key", n)) for n in getattr(statement, "_select_names", None) or ()]
    select = getattr(statement, "select", None)
    if not names or select is None:
        return ()
    out: list[tuple[str, tuple[ColumnOrigin, ...]]] = []
    for target_column, select_column in zip(names, select.selected_columns, strict=False):
        origins = _origins_of_expression(select_column)
        if origins:
            out.append((target_column, origins))
    return tuple(out)


def _base_table(from_clause: Any) -> TableClause | None:
    # aliases (aliased(User), table.alias()) point at the table they rename
    seen = 0
    while from_clause is not None and not isinstance(from_clause, TableClause) and seen < 8:
        from_clause = getattr(from_clause, "element", None)
        seen += 1
    return from_clause if isinstance(from_clause, TableClause) else None


def _origins_of_expression(expression: Any) -> tuple[ColumnOrigin, ...]:
    origins = []
    for element in visitors.iterate(expression):
        table = _base_table(getattr(element, "table", None))
        name = getattr(element, "name", None)
        if table is not None and name and not isinstance(element, TableClause):
            origins.append(ColumnOrigin(table_name(table), str(name)))
    return tuple(dict.fromkeys(origins))


@functools.lru_cache(maxsize=4096)
def lineage_of_sql(sql: str, dialect: str | None) -> StatementLineage:
    """Lineage of SQL text; what the parser cannot read yields the operation alone
    (sqltext logs it once per statement)."""
    parsed = parse_sql(sql, dialect)
    return StatementLineage.build(
        parsed.operation,
        parsed.tables_read,
        parsed.tables_written,
        (),
        SOURCE_SQL,
        parsed.column_lineage,
    )


class StatementLineageCache:
    """Lineage per compiled object (weakly held: SQLAlchemy's LRU decides their lifetime);
    driver-level SQL (``exec_driver_sql``) is cached by ``lineage_of_sql``'s own LRU."""

    def __init__(self) -> None:
        self._by_compiled: weakref.WeakKeyDictionary[Any, StatementLineage] = (
            weakref.WeakKeyDictionary()
        )
        # keyed by the lineage itself, not id(): ids are reused once an object is freed
        self._translated: dict[
            tuple[StatementLineage, tuple[tuple[Any, Any], ...]], StatementLineage
        ] = {}

    def for_execution(self, context: Any, statement: str) -> StatementLineage:
        compiled = context.compiled
        if compiled is None:
            return lineage_of_sql(statement, context.dialect.name)
        lineage = self._by_compiled.get(compiled)
        if lineage is None:
            lineage = lineage_of_compiled(
                compiled, context.dialect.name, orm_flush=_is_orm_flush(context)
            )
            self._by_compiled[compiled] = lineage
        translate = context.execution_options.get("schema_translate_map")
        if translate:
            # one compiled statement serves every map (SQLAlchemy renders the schema at
            # execution), so the translation is applied here, cached per map
            return self._translate(lineage, translate)
        return lineage

    def _translate(self, lineage: StatementLineage, mapping: Any) -> StatementLineage:
        key = (lineage, tuple(sorted(mapping.items(), key=repr)))
        found = self._translated.get(key)
        if found is None:
            if len(self._translated) > 1024:
                self._translated.clear()
            found = self._translated[key] = translate_schemas(lineage, mapping)
        return found


def translate_schemas(lineage: StatementLineage, mapping: Any) -> StatementLineage:
    """The lineage with ``schema_translate_map`` applied to its table names."""

    def rename(name: str) -> str:
        schema, _, table = name.rpartition(".")
        new_schema = mapping.get(schema or None, schema or None)
        return f"{new_schema}.{table}" if new_schema else table

    def rename_column_lineage() -> tuple[tuple[str, tuple[ColumnOrigin, ...]], ...]:
        return tuple(
            (column, tuple(ColumnOrigin(rename(o.table), o.column) for o in origins))
            for column, origins in lineage.column_lineage
        )

    translated = StatementLineage.build(
        lineage.operation,
        map(rename, lineage.tables_read),
        map(rename, lineage.tables_written),
        lineage.mappers,
        lineage.source,
        rename_column_lineage(),
    )
    # schemas of the modelled tables travel under their translated names
    tables = tuple((rename(name), table) for name, table in lineage.tables)
    return StatementLineage(
        translated.operation, translated.tables_read, translated.tables_written,
        translated.mappers, translated.source, translated.column_lineage,
        translated.attributes, tables,
    )


def _is_orm_flush(context: Any) -> bool:
    # The unit of work executes with the base mapper's own compiled cache (persistence.py,
    # SQLAlchemy 1.4-2.1); Core statements use the engine's, or one the user passed.
    options = getattr(context, "execution_options", None) or {}
    cache = options.get("compiled_cache")
    return cache is not None and _mapper_index.is_mapper_cache(cache)


__all__ = [
    "SOURCE_CORE",
    "SOURCE_ORM",
    "SOURCE_SQL",
    "StatementLineage",
    "StatementLineageCache",
    "lineage_of_compiled",
    "lineage_of_sql",
    "table_name",
]
