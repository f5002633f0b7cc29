"""The tables that model code declares, as plain data: a snapshot that needs no database.

Why a snapshot (frozen dataclasses that round-trip through JSON) rather than SQLAlchemy's
``Table`` objects: ``schema-diff`` compares two versions of the same module, which cannot
live in one process, so each side is read in a child process and handed over as JSON; the
static ``DatasetEvent`` builder and the instrumentor's emit-at-start read the same snapshot,
so all three agree on names, types and keys.

What counts as a table: every ``Table`` of every ``MetaData`` reachable from the objects
given (declarative bases and mapped classes via their registry, ``registry`` objects,
``MetaData`` and ``Table`` objects) — so association tables and plain ``Table`` objects
that share a mapped ``MetaData`` count too, and an inheritance hierarchy gives each of its
tables once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from sqlalchemy import MetaData, Table, inspect
from sqlalchemy import types as sqltypes
from sqlalchemy.orm import Mapper, registry

from otel_sqla_lineage.schema import render_type

SNAPSHOT_FORMAT: Final = 1

# Size rank of integer types: a move to a lower rank narrows the column.
_INTEGER_SIZES: Final[tuple[tuple[type[Any], int], ...]] = (
    (sqltypes.SmallInteger, 2), (sqltypes.BigInteger, 8), (sqltypes.Integer, 4),
)


@dataclass(frozen=True, slots=True)
class ColumnSnapshot:
    name: str
    type: str  # as the dialect renders it: VARCHAR(200), INTEGER, NUMERIC(10, 2)
    # what type comparisons need, independent of the rendering
    family: str  # integer, numeric, float, string, binary, boolean, date, datetime, ...
    nullable: bool
    primary_key: bool
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    size: int | None = None  # integers: 2, 4 or 8 bytes
    values: tuple[str, ...] | None = None  # enums
    comment: str | None = None
    # a value comes when an INSERT leaves the column out: default=, server_default= (also
    # Identity(), Computed()) or the table's autoincrement integer primary key. Snapshots
    # written before this field: False (an added NOT NULL column then counts as breaking)
    has_default: bool = False


@dataclass(frozen=True, slots=True)
class ForeignKeySnapshot:
    columns: tuple[str, ...]
    referred_table: str  # [schema.]table
    referred_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TableSnapshot:
    name: str
    schema: str | None
    columns: tuple[ColumnSnapshot, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKeySnapshot, ...] = ()
    mapped_classes: tuple[str, ...] = ()
    comment: str | None = None

    @property
    def key(self) -> str:
        """``schema.table`` or ``table``: how the runtime path names a table."""
        return f"{self.schema}.{self.name}" if self.schema else self.name

    def column(self, name: str) -> ColumnSnapshot | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    tables: tuple[TableSnapshot, ...]
    source: str = ""  # what was read (module name, path, revision)
    dialect: str = "default"
    format: int = field(default=SNAPSHOT_FORMAT)

    def table(self, key: str) -> TableSnapshot | None:
        for t in self.tables:
            if t.key == key:
                return t
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelSnapshot:
        if raw.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported snapshot format {raw.get('format')!r}")
        tables = []
        for t in raw["tables"]:
            columns = tuple(
                ColumnSnapshot(**{**c, "values": tuple(c["values"])
                                  if c.get("values") is not None else None})
                for c in t["columns"]
            )
            fks = tuple(
                ForeignKeySnapshot(tuple(f["columns"]), f["referred_table"],
                                   tuple(f["referred_columns"]))
                for f in t["foreign_keys"]
            )
            tables.append(TableSnapshot(
                name=t["name"], schema=t["schema"], columns=columns,
                primary_key=tuple(t["primary_key"]), foreign_keys=fks,
                mapped_classes=tuple(t["mapped_classes"]), comment=t.get("comment"),
            ))
        return cls(tuple(tables), raw.get("source", ""), raw.get("dialect", "default"))


# -- finding tables ----------------------------------------------------------------------


@dataclass
class FoundModels:
    """MetaData collections and registries reachable from some objects, in first-seen order."""

    metadatas: list[MetaData] = field(default_factory=list)
    registries: list[registry] = field(default_factory=list)

    def add_metadata(self, metadata: Any) -> None:
        if isinstance(metadata, MetaData) and not any(m is metadata for m in self.metadatas):
            self.metadatas.append(metadata)

    def add_registry(self, reg: Any) -> None:
        if isinstance(reg, registry) and not any(r is reg for r in self.registries):
            self.registries.append(reg)
            self.add_metadata(reg.metadata)

    def add(self, obj: Any) -> None:
        """Whatever model object ``obj`` is (or nothing, if it is none)."""
        if isinstance(obj, MetaData):
            self.add_metadata(obj)
        elif isinstance(obj, registry):
            self.add_registry(obj)
        elif isinstance(obj, Table):
            self.add_metadata(obj.metadata)
        elif isinstance(obj, Mapper):
            self.add_registry(obj.registry)
        elif isinstance(obj, type):
            mapper: Any = inspect(obj, raiseerr=False)
            if isinstance(mapper, Mapper):
                self.add_registry(mapper.registry)
            else:  # a declarative base: not mapped itself, but it holds the registry
                self.add_registry(_class_attribute(obj, "registry"))
                self.add_metadata(_class_attribute(obj, "metadata"))

    def tables(self) -> list[Table]:
        seen: dict[int, Table] = {}
        for metadata in self.metadatas:
            for table in metadata.tables.values():
                seen.setdefault(id(table), table)
        for reg in self.registries:
            for mapper in reg.mappers:
                local = mapper.local_table
                if isinstance(local, Table):  # mapped to a Table of another MetaData
                    seen.setdefault(id(local), local)
        return sorted(seen.values(), key=lambda t: (t.schema or "", t.name))

    def mapped_classes(self) -> dict[int, list[str]]:
        """id(table) -> mapped class names (``module.QualName``), as the runtime names them."""
        out: dict[int, list[str]] = {}
        for reg in self.registries:
            for mapper in reg.mappers:
                cls = mapper.class_
                out.setdefault(id(mapper.local_table), []).append(
                    f"{cls.__module__}.{cls.__qualname__}"
                )
        return {k: sorted(set(v)) for k, v in out.items()}


def _class_attribute(cls: type, name: str) -> Any:
    try:
        return getattr(cls, name, None)
    except Exception:  # a descriptor of user code
        return None


def find_models(objects: Iterable[Any]) -> FoundModels:
    found = FoundModels()
    for obj in objects:
        try:
            found.add(obj)
        except Exception:  # an object whose attribute access raises: not a model object
            continue
    return found


# -- snapshots -----------------------------------------------------------------------------


def snapshot(found: FoundModels, dialect: Any = None, source: str = "") -> ModelSnapshot:
    """Every table ``found`` holds, types rendered for ``dialect`` (None: SQLAlchemy's
    default rendering, which is what ``str(column.type)`` prints)."""
    classes = found.mapped_classes()
    tables = tuple(
        table_snapshot(t, dialect, classes.get(id(t), ())) for t in found.tables()
    )
    return ModelSnapshot(tables, source, getattr(dialect, "name", None) or "default")


def table_snapshot(table: Table, dialect: Any, mapped_classes: Sequence[str] = ()) -> TableSnapshot:
    primary_key = tuple(str(c.name) for c in table.primary_key.columns)
    autoincrement = _autoincrement_column(table)
    columns = tuple(_column(c, dialect, c.name in primary_key, c is autoincrement)
                    for c in table.columns)
    fks = []
    for constraint in sorted(table.foreign_key_constraints, key=lambda c: list(c.column_keys)):
        elements = list(constraint.elements)
        fks.append(ForeignKeySnapshot(
            columns=tuple(str(e.parent.name) for e in elements),
            referred_table=_referred_table(elements[0]) if elements else "",
            referred_columns=tuple(_referred_column(e) for e in elements),
        ))
    return TableSnapshot(
        name=str(table.name),
        schema=table.schema,
        columns=columns,
        primary_key=primary_key,
        foreign_keys=tuple(fks),
        mapped_classes=tuple(mapped_classes),
        comment=table.comment,
    )


def _referred_table(element: Any) -> str:
    try:
        return str(element.column.table.fullname)
    except Exception:  # the referred table is not in this MetaData: its spec says it
        spec = str(element.target_fullname)
        return spec.rsplit(".", 1)[0]


def _referred_column(element: Any) -> str:
    try:
        return str(element.column.name)
    except Exception:
        return str(element.target_fullname).rsplit(".", 1)[-1]


def _autoincrement_column(table: Table) -> Any:
    """The integer primary key the database numbers itself (SERIAL, AUTOINCREMENT, IDENTITY),
    as SQLAlchemy decides it for CREATE TABLE; None when there is none."""
    try:
        if hasattr(type(table), "autoincrement_column"):  # public since SQLAlchemy 2.0
            return table.autoincrement_column
        return table._autoincrement_column
    except Exception:  # undecidable (autoincrement=True on a string key raises): none
        return None


def _column(
    column: Any, dialect: Any, primary_key: bool, autoincrement: bool = False
) -> ColumnSnapshot:
    type_ = column.type
    base = _base_type(type_)
    family, size = _family(base)
    length = getattr(base, "length", None)
    precision = getattr(base, "precision", None) if family in ("numeric", "float") else None
    scale = getattr(base, "scale", None) if family == "numeric" else None
    values = tuple(str(v) for v in base.enums) if isinstance(base, sqltypes.Enum) else None
    return ColumnSnapshot(
        name=str(column.name),
        type=render_type(type_, dialect),
        family=family,
        nullable=bool(column.nullable),
        primary_key=primary_key,
        length=length if isinstance(length, int) else None,
        precision=precision if isinstance(precision, int) else None,
        scale=scale if isinstance(scale, int) else None,
        size=size,
        values=values,
        comment=column.comment,
        has_default=autoincrement or column.default is not None
        or column.server_default is not None,
    )


def _base_type(type_: Any) -> Any:
    """The type a ``TypeDecorator`` stores as (its ``impl``)."""
    for _ in range(8):
        if not isinstance(type_, sqltypes.TypeDecorator):
            break
        impl = getattr(type_, "impl_instance", None) or type_.impl
        type_ = impl() if isinstance(impl, type) else impl
    return type_


_FAMILIES: Final[tuple[tuple[type[Any], str], ...]] = (
    (sqltypes.Enum, "enum"),  # before String: Enum is one
    (sqltypes.Boolean, "boolean"),
    (sqltypes.Float, "float"),  # before Numeric: Float is one
    (sqltypes.Numeric, "numeric"),
    (sqltypes.String, "string"),
    (sqltypes.LargeBinary, "binary"),
    (sqltypes.DateTime, "datetime"),
    (sqltypes.Date, "date"),
    (sqltypes.Time, "time"),
    (sqltypes.Interval, "interval"),
    (sqltypes.JSON, "json"),
)


def _family(type_: Any) -> tuple[str, int | None]:
    for cls, size in _INTEGER_SIZES:
        if isinstance(type_, cls):
            return "integer", size
    for cls, family in _FAMILIES:
        if isinstance(type_, cls):
            return family, None
    return type(type_).__name__.lower(), None
